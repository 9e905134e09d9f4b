package bpf

import (
	"fmt"
	"strings"
)

// RoutePrefix is what the kernel can check cheaply of a route: its method
// (empty for any) and the literal path prefix before the first wildcard.
type RoutePrefix struct {
	Method string
	Prefix string
}

// anyMethods stand in for a route without a method: the filter is a
// prefix trie over "METHOD /path", so "any" is every common method.
var anyMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// PrefixOf returns the literal part of a route path pattern, up to the
// first "*" or "{".
func PrefixOf(path string) string {
	if i := strings.IndexAny(path, "*{"); i >= 0 {
		return path[:i]
	}
	return path
}

func routeKeys(routes []RoutePrefix) ([]authprobeRouteKey, error) {
	var keys []authprobeRouteKey
	for _, r := range routes {
		methods := []string{r.Method}
		if r.Method == "" {
			methods = anyMethods
		}
		for _, m := range methods {
			line := m + " " + r.Prefix
			var k authprobeRouteKey
			// A prefix longer than the key still filters well on its
			// first bytes; user space matches the whole route.
			n := copy(k.Data[:], line)
			if n < len("GET /") {
				return nil, fmt.Errorf("route prefix %q too short", line)
			}
			k.Prefixlen = uint32(n * 8)
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no route prefixes: nothing would be captured")
	}
	return keys, nil
}

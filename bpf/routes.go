package bpf

import (
	"fmt"
	"strings"
)

// PrefixOf returns the literal part of a route path pattern, up to the
// first "*" or "{": what the kernel can check of a route.
func PrefixOf(path string) string {
	if i := strings.IndexAny(path, "*{"); i >= 0 {
		return path[:i]
	}
	return path
}

// routeKeys turns route path prefixes into the kernel's trie keys:
// lower-cased (the kernel lower-cases request paths before the lookup, so
// case never hides a route) and cut to the key size (a shorter prefix
// only matches more). Methods are not in the key: user space applies
// them.
func routeKeys(prefixes []string) ([]lifecycleRouteKey, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("no route prefixes: nothing would be captured")
	}
	seen := map[string]bool{}
	var keys []lifecycleRouteKey
	for _, p := range prefixes {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("route prefix %q: must start with /", p)
		}
		p = strings.ToLower(p)
		var k lifecycleRouteKey
		n := copy(k.Data[:], p)
		if seen[p[:n]] {
			continue
		}
		seen[p[:n]] = true
		k.Prefixlen = uint32(n * 8)
		keys = append(keys, k)
	}
	return keys, nil
}

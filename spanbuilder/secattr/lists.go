package secattr

import (
	"strings"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"

	"github.com/authprobe/authprobe/spanbuilder/internal/strcache"
)

// listCache remembers the attribute values of the string lists tokens
// repeat from one request to the next (roles, audiences), so a span does
// not allocate them again: a string slice value is an array of its own.
// Its keys are the cleaned values, each ended by a NUL (clean drops
// NULs). It is safe for concurrent use.
type listCache struct {
	values *strcache.Cache[string, attribute.Value]
}

func newListCache() *listCache {
	return &listCache{values: strcache.NewOwning(listValue, strings.Clone)}
}

// listValue is the string slice value of key's NUL-ended values.
func listValue(key string) attribute.Value {
	if key == "" {
		return attribute.StringSliceValue(nil)
	}
	return attribute.StringSliceValue(strings.Split(strings.TrimSuffix(key, "\x00"), "\x00"))
}

// of reads the strings of node n as a claim list: a string (split on
// white space with split, as an OAuth2 scope), or an array's string
// elements (others skipped). found is how many there were, kept how many
// the value holds: each cleaned to at most max bytes, empty ones dropped,
// at most most of them.
func (c *listCache) of(sc *scratch, n int32, split bool, max, most int) (v attribute.Value, found, kept int) {
	key := sc.key[:0]
	add := func(s string) {
		found++
		if kept == most {
			return
		}
		k := len(key)
		key = appendClean(key, s, max)
		if len(key) == k {
			return
		}
		key = append(key, 0)
		kept++
	}
	switch sc.nodes[n].tok {
	case jsonString:
		if !split {
			add(sc.str(n))
			break
		}
		for f := range strings.FieldsSeq(sc.str(n)) {
			add(f)
		}
	case jsonBeginArray:
		for i := n + 1; i < sc.nodes[n].end; i = sc.nextSibling(i) {
			if sc.nodes[i].tok == jsonString {
				add(sc.str(i))
			}
		}
	}
	sc.key = key[:0]
	if found == 0 {
		return attribute.Value{}, 0, 0
	}
	// The key aliases the scratch: the cache copies it on a miss only.
	return c.values.Get(unsafe.String(unsafe.SliceData(key), len(key))), found, kept
}

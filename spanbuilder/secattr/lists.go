package secattr

import (
	"hash/maphash"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
)

// listSlots is the size of a listCache: direct-mapped, a miss replaces
// the slot.
const listSlots = 64

// listCache remembers the attribute values of the string lists tokens
// repeat from one request to the next (roles, audiences), so a span does
// not allocate them again: a string slice value is an array of its own.
// It is safe for concurrent use.
type listCache struct {
	seed maphash.Seed
	mu   sync.Mutex
	slot [listSlots]struct {
		key string // the cleaned values, each ended by a NUL (clean drops NULs)
		v   attribute.Value
		ok  bool
	}
}

func newListCache() *listCache { return &listCache{seed: maphash.MakeSeed()} }

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
	return c.value(key), found, kept
}

// value returns the string slice value of key's NUL-ended values.
func (c *listCache) value(key []byte) attribute.Value {
	i := maphash.Bytes(c.seed, key) % listSlots
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.slot[i]
	if !e.ok || e.key != string(key) {
		e.key = string(key)
		vals := strings.Split(strings.TrimSuffix(e.key, "\x00"), "\x00")
		if e.key == "" {
			vals = nil
		}
		e.v, e.ok = attribute.StringSliceValue(vals), true
	}
	return e.v
}

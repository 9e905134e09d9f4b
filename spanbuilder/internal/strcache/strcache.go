// Package strcache remembers the strings of values that repeat from one
// exchange to the next (client addresses, their subnets), so a span does
// not allocate them again.
package strcache

import (
	"hash/maphash"
	"sync"
)

// slots is the cache's size: direct-mapped, a miss replaces the slot.
const slots = 256

// Cache maps values to their strings. The zero value is not ready: use
// New. It is safe for concurrent use.
type Cache[T comparable] struct {
	str func(T) string
	// own copies what a value points to before the cache keeps it; nil
	// when values point to nothing that changes.
	own  func(T) T
	seed maphash.Seed
	mu   sync.Mutex
	slot [slots]struct {
		v  T
		s  string
		ok bool
	}
}

// New returns a cache of str's results.
func New[T comparable](str func(T) string) *Cache[T] {
	return &Cache[T]{str: str, seed: maphash.MakeSeed()}
}

// NewOwning returns a cache of str's results for values that point into
// memory that is reused (strings cut from a recycled buffer): a value is
// kept as own copies it, on a miss only.
func NewOwning[T comparable](str func(T) string, own func(T) T) *Cache[T] {
	return &Cache[T]{str: str, own: own, seed: maphash.MakeSeed()}
}

// String returns str(v), from the cache when v was seen last in its slot.
func (c *Cache[T]) String(v T) string {
	i := maphash.Comparable(c.seed, v) % slots
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.slot[i]
	if !e.ok || e.v != v {
		if c.own != nil {
			v = c.own(v)
		}
		e.v, e.s, e.ok = v, c.str(v), true
	}
	return e.s
}

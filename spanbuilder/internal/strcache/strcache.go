// Package strcache remembers what is made of values that repeat from one
// exchange to the next (the strings of client addresses and their
// subnets, the attribute values of a token's role lists), so a span does
// not allocate them again.
package strcache

import (
	"hash/maphash"
	"sync"
)

// slots is the cache's size: direct-mapped, a miss replaces the slot.
const slots = 256

// Cache maps values to what build makes of them (strings, mostly). The
// zero value is not ready: use New. It is safe for concurrent use.
type Cache[T comparable, V any] struct {
	build func(T) V
	// own copies what a value points to before the cache keeps it; nil
	// when values point to nothing that changes.
	own  func(T) T
	seed maphash.Seed
	mu   sync.Mutex
	slot [slots]struct {
		v  T
		s  V
		ok bool
	}
}

// New returns a cache of build's results.
func New[T comparable, V any](build func(T) V) *Cache[T, V] {
	return &Cache[T, V]{build: build, seed: maphash.MakeSeed()}
}

// NewOwning returns a cache of build's results for values that point into
// memory that is reused (strings cut from a recycled buffer): a value is
// kept as own copies it, on a miss only.
func NewOwning[T comparable, V any](build func(T) V, own func(T) T) *Cache[T, V] {
	return &Cache[T, V]{build: build, own: own, seed: maphash.MakeSeed()}
}

// Get returns build(v), from the cache when v was seen last in its slot.
func (c *Cache[T, V]) Get(v T) V {
	i := maphash.Comparable(c.seed, v) % slots
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.slot[i]
	if !e.ok || e.v != v {
		if c.own != nil {
			v = c.own(v)
		}
		e.v, e.s, e.ok = v, c.build(v), true
	}
	return e.s
}

package export

import (
	"slices"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"
)

// maxAttributes is how many distinct attribute keys a span keeps, as the
// SDK's default span limit; the rest are counted in the OTLP span's
// dropped_attributes_count.
const maxAttributes = 128

// layout is how one sequence of attribute keys is written: which positions
// survive (the last value of a repeated key, the first maxAttributes
// distinct keys, no empty key), in key order, each key encoded once for
// JSON and for OTLP. Spans of one route repeat the same key sequence, so
// the sorting, deduplication and key encoding are done once per sequence,
// not once per span.
type layout struct {
	// keys is the sequence the layout was built for. Holding the strings
	// keeps their memory alive, so a key's address can identify it.
	keys    []attribute.Key
	order   []uint16 // positions to write, sorted by key
	dropped uint32   // distinct keys beyond maxAttributes, and empty keys

	jsonKeys []byte   // `"key":` for each entry of order, concatenated
	jsonOff  []uint32 // entry i is jsonKeys[jsonOff[i]:jsonOff[i+1]]
	otlpKeys []byte   // KeyValue field 1 (the key) for each entry of order
	otlpOff  []uint32
}

func (l *layout) jsonKey(i int) []byte { return l.jsonKeys[l.jsonOff[i]:l.jsonOff[i+1]] }
func (l *layout) otlpKey(i int) []byte { return l.otlpKeys[l.otlpOff[i]:l.otlpOff[i+1]] }

// maxLayouts bounds the cache; a few per route is the norm. Keys built at
// run time (new strings every span) miss every time and only cost the
// slow path, never memory beyond this bound.
const maxLayouts = 256

// layouts caches layouts by key sequence. It is used under the exporter's
// lock only.
type layouts struct {
	byHash map[uint64]*layout
}

func newLayouts() *layouts { return &layouts{byHash: map[uint64]*layout{}} }

// get returns the layout of kvs' keys.
func (c *layouts) get(kvs []attribute.KeyValue) *layout {
	h := keysHash(kvs)
	if l, ok := c.byHash[h]; ok && sameKeys(l.keys, kvs) {
		return l
	}
	l := newLayout(kvs)
	if len(c.byHash) >= maxLayouts {
		clear(c.byHash)
	}
	c.byHash[h] = l
	return l
}

// keysHash mixes the address and length of every key: constant keys (the
// norm) have one address for the life of the process. A collision only
// costs the comparison in sameKeys.
func keysHash(kvs []attribute.KeyValue) uint64 {
	h := uint64(len(kvs)) * 0x9e3779b97f4a7c15
	for i := range kvs {
		k := string(kvs[i].Key)
		h ^= uint64(uintptr(unsafe.Pointer(unsafe.StringData(k)))) + uint64(len(k))<<48
		h *= 0xff51afd7ed558ccd
		h ^= h >> 29
	}
	return h
}

func sameKeys(keys []attribute.Key, kvs []attribute.KeyValue) bool {
	if len(keys) != len(kvs) {
		return false
	}
	for i := range keys {
		// Equal addresses compare without reading the bytes.
		if keys[i] != kvs[i].Key {
			return false
		}
	}
	return true
}

func newLayout(kvs []attribute.KeyValue) *layout {
	if len(kvs) > 1<<16-1 {
		kvs = kvs[:1<<16-1] // positions are uint16; far beyond maxAttributes
	}
	l := &layout{keys: make([]attribute.Key, len(kvs))}
	for i := range kvs {
		l.keys[i] = kvs[i].Key
	}
	// The last position of each distinct key, in order of first
	// appearance; the first maxAttributes keys are kept, as the SDK does.
	last := make(map[attribute.Key]int, len(kvs))
	var first []attribute.Key
	for i, kv := range kvs {
		if kv.Key == "" {
			l.dropped++ // invalid; the SDK counts it as dropped too
			continue
		}
		if _, seen := last[kv.Key]; !seen {
			first = append(first, kv.Key)
		}
		last[kv.Key] = i
	}
	if len(first) > maxAttributes {
		l.dropped += uint32(len(first) - maxAttributes)
		first = first[:maxAttributes]
	}
	slices.Sort(first)
	l.order = make([]uint16, len(first))
	l.jsonOff = make([]uint32, 1, len(first)+1)
	l.otlpOff = make([]uint32, 1, len(first)+1)
	for i, k := range first {
		l.order[i] = uint16(last[k])
		l.jsonKeys = appendString(l.jsonKeys, string(k))
		l.jsonKeys = append(l.jsonKeys, ':')
		l.jsonOff = append(l.jsonOff, uint32(len(l.jsonKeys)))
		l.otlpKeys = protowire.AppendTag(l.otlpKeys, 1, protowire.BytesType)
		l.otlpKeys = protowire.AppendString(l.otlpKeys, validUTF8(string(k)))
		l.otlpOff = append(l.otlpOff, uint32(len(l.otlpKeys)))
	}
	return l
}

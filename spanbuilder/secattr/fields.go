package secattr

import (
	"hash/maphash"
	"iter"
	"sync"
)

// field is one value found in a body: a form field, a multipart part or a
// JSON value at a dotted path.
type field struct {
	val    string // scalar value (number text, true/false; "" for null, objects and arrays)
	scalar bool   // false for JSON objects and arrays
	// conflict: the name came again with another value (a repeated form
	// field or part, a JSON key twice), or only some servers' reading of
	// the body has it. Servers disagree on which value counts: Go's
	// FormValue and Python's parse_qs take the first, PHP, Django and
	// every JSON parser the last, Express an array of all. val is the
	// first.
	conflict bool
}

// fields are the form field names, multipart part names and dotted JSON
// paths ("user.email", "roles.0") of one body with their values, in the
// order first seen. Names and values are slices of one string, made once
// per body (in the Extract's Memory when it has one); the entries live in
// a scratch that the Extract call that parsed the body owns. The zero
// value has no fields.
type fields struct {
	text string
	ents []entry
}

// entry is a field as offsets into fields.text (or, while parsing, into
// scratch.buf).
type entry struct {
	k0, k1, v0, v1   int32
	scalar, conflict bool
}

func (f fields) len() int { return len(f.ents) }

func (f fields) at(i int) (string, field) {
	e := &f.ents[i]
	return f.text[e.k0:e.k1], field{val: f.text[e.v0:e.v1], scalar: e.scalar, conflict: e.conflict}
}

// get returns the field named exactly name.
func (f fields) get(name string) (field, bool) {
	for i := range f.ents {
		e := &f.ents[i]
		if int(e.k1-e.k0) == len(name) && f.text[e.k0:e.k1] == name {
			_, v := f.at(i)
			return v, true
		}
	}
	return field{}, false
}

// str returns the scalar value at name.
func (f fields) str(name string) (string, bool) {
	v, ok := f.get(name)
	if !ok || !v.scalar {
		return "", false
	}
	return v.val, true
}

// all yields every field with its name.
func (f fields) all() iter.Seq2[string, field] {
	return func(yield func(string, field) bool) {
		for i := range f.ents {
			if !yield(f.at(i)) {
				return
			}
		}
	}
}

// indexSlots is the size of scratch's open-addressing index: a power of
// two at least twice maxFields, so a probe ends quickly.
const indexSlots = 1024

// scratch is what parsing one body reuses: the bytes of names and values
// as they are decoded, the entries, an index of the names for finding
// repeats, and the JSON walk's stacks. Scratches come from a scratchPool.
type scratch struct {
	buf   []byte
	ents  []entry
	index [indexSlots]uint16 // entry number + 1 by name hash; 0 is empty
	used  []uint16           // slots of index in use, to clear them
	seed  maphash.Seed
	// the JSON walk's open containers and the keys of its objects so far
	frames []jsonFrame
	keys   []span
	states []jsonState
	// a token's decoded segment, its document's nodes and open
	// containers, and the key of a claim list (jsondoc.go, lists.go)
	raw   []byte
	nodes []docNode
	open  []int32
	key   []byte
	// out keeps the text of the fields made (nil: a string of their own).
	out *Memory
}

// span is a byte range of scratch.buf.
type span struct{ from, to int32 }

func (s *scratch) reset() {
	s.buf = s.buf[:0]
	s.ents = s.ents[:0]
	for _, i := range s.used {
		s.index[i] = 0
	}
	s.used = s.used[:0]
	s.frames = s.frames[:0]
	s.keys = s.keys[:0]
	s.states = s.states[:0]
	s.nodes = s.nodes[:0]
	s.open = s.open[:0]
}

// wipe clears the bytes s decoded (a token's claims, a body's fields).
func (s *scratch) wipe() {
	clear(s.buf)
	clear(s.raw)
}

// find returns the entry named by buf[k0:k1] and the index slot that
// holds it or would.
func (s *scratch) find(k0, k1 int32) (ent int, slot uint32) {
	key := s.buf[k0:k1]
	slot = uint32(maphash.Bytes(s.seed, key)) & (indexSlots - 1)
	for {
		n := s.index[slot]
		if n == 0 {
			return -1, slot
		}
		e := &s.ents[n-1]
		if string(s.buf[e.k0:e.k1]) == string(key) {
			return int(n - 1), slot
		}
		slot = (slot + 1) & (indexSlots - 1)
	}
}

// insert adds an entry in slot (from find).
func (s *scratch) insert(slot uint32, e entry) {
	s.ents = append(s.ents, e)
	s.index[slot] = uint16(len(s.ents))
	s.used = append(s.used, uint16(slot))
}

// add records the value buf[v0:v1] under the name buf[k0:k1]; a repeat
// keeps the first value and marks a conflict when the values differ. It
// reports whether the entry was stored (else its bytes may be reused).
func (s *scratch) add(k0, k1, v0, v1 int32, scalar bool) (stored bool) {
	i, slot := s.find(k0, k1)
	if i < 0 {
		if len(s.ents) < maxFields {
			s.insert(slot, entry{k0: k0, k1: k1, v0: v0, v1: v1, scalar: scalar})
			return true
		}
		return false
	}
	old := &s.ents[i]
	if string(s.buf[old.v0:old.v1]) != string(s.buf[v0:v1]) || old.scalar != scalar {
		old.conflict = true
	}
	return false
}

// has reports whether buf[k0:k1] names an entry.
func (s *scratch) has(k0, k1 int32) bool {
	i, _ := s.find(k0, k1)
	return i >= 0
}

// fields makes the parse's result: one string for all names and values.
func (s *scratch) fields() fields {
	if len(s.ents) == 0 {
		return fields{}
	}
	return fields{text: s.out.string(s.buf), ents: s.ents}
}

// scratchPool hands out scratches; an Extractor has one.
type scratchPool struct {
	seed maphash.Seed
	pool sync.Pool
}

func newScratchPool() *scratchPool {
	p := &scratchPool{seed: maphash.MakeSeed()}
	p.pool.New = func() any { return &scratch{seed: p.seed} }
	return p
}

// get returns a reset scratch whose fields keep their text in out.
func (p *scratchPool) get(out *Memory) *scratch {
	s := p.pool.Get().(*scratch)
	s.reset()
	s.out = out
	return s
}

// put returns s; one that grew past what ordinary bodies need is left to
// the collector, so a hostile body does not pin its memory.
func (p *scratchPool) put(s *scratch) {
	s.out = nil
	if cap(s.buf) > 2*maxBodyScan || cap(s.ents) > maxFields || cap(s.keys) > maxFields ||
		cap(s.raw) > 2*maxBodyScan || cap(s.nodes) > 4*maxFields || cap(s.key) > 2*maxBodyScan {
		return
	}
	p.pool.Put(s)
}

package export

import (
	"sync"
	"sync/atomic"
)

// record is one sealed batch waiting for delivery, in memory, in a spill
// file, or both while it is being spilled.
type record struct {
	seq   uint64
	spans int
	size  int
	data  []byte // nil once only the spill file holds it

	file     bool // a spill file holds it
	spilling bool // being written to its spill file
	sending  bool // the sender has it
	removed  bool // delivered or given up; its file goes too
}

// queue is the buffer of sealed batches, oldest first. The emitter pushes,
// the sender takes from the front, the spiller moves batches from memory to
// disk. memBytes is read without the lock by Emit to bound memory.
type queue struct {
	mu        sync.Mutex
	recs      []*record
	nextSeq   uint64
	closed    bool // no more pushes
	diskBytes int64

	memBytes atomic.Int64

	wakeSender  chan struct{}
	wakeSpiller chan struct{}
}

func newQueue() *queue {
	return &queue{wakeSender: make(chan struct{}, 1), wakeSpiller: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push adds a sealed in-memory batch.
func (q *queue) push(data []byte, spans int) *record {
	q.mu.Lock()
	r := &record{seq: q.nextSeq, spans: spans, size: len(data), data: data}
	q.nextSeq++
	q.recs = append(q.recs, r)
	q.mu.Unlock()
	q.memBytes.Add(int64(r.size))
	signal(q.wakeSender)
	return r
}

// len is how many batches wait (one being sent among them).
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs)
}

// pushSpilled adds a batch an earlier run left on disk.
func (q *queue) pushSpilled(b spilled) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recs = append(q.recs, &record{seq: b.seq, spans: b.spans, size: b.size, file: true})
	q.diskBytes += int64(spillHeader + b.size)
	q.nextSeq = max(q.nextSeq, b.seq+1)
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wakeSender)
}

// front returns the oldest batch for the sender, marked as sending; ok is
// false when the queue is empty and closed.
func (q *queue) front() (r *record, data []byte, ok, empty bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) == 0 {
		return nil, nil, !q.closed, true
	}
	r = q.recs[0]
	r.sending = true
	return r, r.data, true, false
}

// release hands a batch back after a failed attempt that will be retried.
func (q *queue) release(r *record) {
	q.mu.Lock()
	r.sending = false
	q.mu.Unlock()
}

// remove takes a delivered (or abandoned) batch out; fileGone tells the
// caller to delete its spill file, reuse that its memory may be recycled
// (no spill is reading it).
func (q *queue) remove(r *record) (fileGone, reuse bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.recs {
		if x == r {
			q.recs = append(q.recs[:i], q.recs[i+1:]...)
			break
		}
	}
	if len(q.recs) == 0 {
		q.recs = nil // let a burst's backing array go
	}
	r.removed, r.sending = true, false
	reuse = !r.spilling
	if r.data != nil {
		q.memBytes.Add(-int64(r.size))
		r.data = nil
	}
	if r.file {
		q.diskBytes -= int64(spillHeader + r.size)
		signal(q.wakeSpiller) // room on disk again
		return true, reuse
	}
	return false, reuse
}

// toSpill picks the oldest batch held only in memory that the sender is not
// about to send, if memory is over the threshold and it fits on disk.
func (q *queue) toSpill(threshold, diskMax int64) *record {
	if q.memBytes.Load() <= threshold {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, r := range q.recs {
		if i == 0 || r.data == nil || r.file || r.spilling || r.sending {
			continue // the front is the sender's next
		}
		if q.diskBytes+int64(spillHeader+r.size) > diskMax {
			return nil
		}
		r.spilling = true
		q.diskBytes += int64(spillHeader + r.size)
		return r
	}
	return nil
}

// spilled records the end of a spill; fileGone tells the caller to delete
// the file it wrote (the batch was delivered meanwhile, or the write
// failed).
func (q *queue) spilled(r *record, ok bool) (fileGone bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r.spilling = false
	if !ok || r.removed {
		q.diskBytes -= int64(spillHeader + r.size)
		return ok
	}
	r.file = true
	if r.data != nil {
		q.memBytes.Add(-int64(r.size))
		r.data = nil
	}
	return false
}

// drain takes every remaining batch out, at shutdown.
func (q *queue) drain() []*record {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.recs
	q.recs = nil
	for _, r := range out {
		if r.data != nil {
			q.memBytes.Add(-int64(r.size))
		}
	}
	return out
}

func (q *queue) usage() (batches int, disk int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs), q.diskBytes
}

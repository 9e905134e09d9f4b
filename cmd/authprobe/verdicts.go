package main

import "github.com/authprobe/authprobe/decoder"

// verdictBatch gathers the decoder's verdicts while one batch of events is
// read, one per socket, for the kernel at the batch's end. The kernel keeps
// one pending verdict per socket and applies it at the connection's next
// I/O: of several written for a socket within one batch, every one but the
// last was overwritten unread (at 1 % logins, 134,000 of 143,000 map
// updates in 12 s, a third of the agent's CPU), and a resume computed from
// an event that later events of its connection follow is stale anyway.
// Merged, a socket's verdicts keep what each said: OFF, the furthest
// skip, and the latest resume's offsets, which the kernel applies in that
// order (bpf/capture/state.h apply_verdict) as it would have applied them
// one by one.
type verdictBatch struct {
	index map[uint64]int // socket → its verdict in list
	list  []decoder.Verdict
	// merged counts the verdicts folded into an earlier one of their
	// socket: the map updates saved.
	merged uint64
}

func newVerdictBatch() *verdictBatch {
	return &verdictBatch{index: map[uint64]int{}}
}

func (b *verdictBatch) add(v decoder.Verdict) {
	i, ok := b.index[v.Key.Sock]
	if !ok {
		b.index[v.Key.Sock] = len(b.list)
		b.list = append(b.list, v)
		return
	}
	b.merged++
	old := &b.list[i]
	if old.Key.Gen != v.Key.Gen {
		*old = v // a new connection on the socket: the old one's is moot
		return
	}
	*old = mergeVerdicts(*old, v)
}

// mergeVerdicts is what verdict a then verdict b of one connection say
// together.
func mergeVerdicts(a, b decoder.Verdict) decoder.Verdict {
	out := b
	out.Kind = a.Kind | b.Kind
	out.SkipTo = max(a.SkipTo, b.SkipTo)
	if b.Kind&decoder.VerdictResume == 0 {
		out.InOff, out.OutOff = a.InOff, a.OutOff
	}
	return out
}

// take returns the batch's verdicts, in the order their sockets first
// had one, and how many were merged into them, and starts a new batch;
// the slice is valid until the next add.
func (b *verdictBatch) take() (vs []decoder.Verdict, merged uint64) {
	if len(b.list) == 0 {
		return nil, 0
	}
	vs, merged = b.list, b.merged
	b.list, b.merged = b.list[:0], 0
	clear(b.index)
	return vs, merged
}

package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

func TestVerdictBatchMerge(t *testing.T) {
	key := func(sock, gen uint64) decoder.ConnKey { return decoder.ConnKey{Sock: sock, Gen: gen} }
	resume := func(k decoder.ConnKey, in, out uint64) decoder.Verdict {
		return decoder.Verdict{Key: k, Kind: decoder.VerdictResume, InOff: in, OutOff: out}
	}
	skip := func(k decoder.ConnKey, to uint64) decoder.Verdict {
		return decoder.Verdict{Key: k, Kind: decoder.VerdictSkip, SkipTo: to}
	}
	off := func(k decoder.ConnKey) decoder.Verdict { return decoder.Verdict{Key: k, Kind: decoder.VerdictOff} }
	a, b := key(1, 10), key(2, 20)
	for _, tc := range []struct {
		name   string
		in     []decoder.Verdict
		want   []decoder.Verdict
		merged uint64
	}{
		{"one per socket, in order", []decoder.Verdict{resume(b, 5, 6), resume(a, 1, 2)},
			[]decoder.Verdict{resume(b, 5, 6), resume(a, 1, 2)}, 0},
		{"the latest resume's offsets", []decoder.Verdict{resume(a, 1, 2), resume(b, 5, 6), resume(a, 3, 4), resume(a, 7, 8)},
			[]decoder.Verdict{resume(a, 7, 8), resume(b, 5, 6)}, 2},
		{"a skip then a resume: both", []decoder.Verdict{skip(a, 100), resume(a, 120, 30)},
			[]decoder.Verdict{{Key: a, Kind: decoder.VerdictSkip | decoder.VerdictResume, SkipTo: 100, InOff: 120, OutOff: 30}}, 1},
		{"a resume then a skip: the resume's offsets kept", []decoder.Verdict{resume(a, 120, 30), skip(a, 300)},
			[]decoder.Verdict{{Key: a, Kind: decoder.VerdictSkip | decoder.VerdictResume, SkipTo: 300, InOff: 120, OutOff: 30}}, 1},
		{"the furthest skip", []decoder.Verdict{skip(a, 300), skip(a, 200)}, []decoder.Verdict{skip(a, 300)}, 1},
		{"off stays off", []decoder.Verdict{resume(a, 1, 2), off(a)},
			[]decoder.Verdict{{Key: a, Kind: decoder.VerdictResume | decoder.VerdictOff, InOff: 1, OutOff: 2}}, 1},
		{"a new connection on the socket replaces the old one's", []decoder.Verdict{off(a), resume(key(1, 11), 9, 9)},
			[]decoder.Verdict{resume(key(1, 11), 9, 9)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vb := newVerdictBatch()
			for _, v := range tc.in {
				vb.add(v)
			}
			vs, merged := vb.take()
			require.Equal(t, tc.merged, merged)
			require.Equal(t, tc.want, vs)
			vs, merged = vb.take()
			require.Empty(t, vs, "take starts a new batch")
			require.Zero(t, merged)
		})
	}
}

// verdictLog records the verdicts the pipeline writes to the kernel.
type verdictLog struct {
	nopWatcher
	socks []uint64
	got   []bpf.Verdict
}

func (w *verdictLog) SetVerdict(sock, _ uint64, v bpf.Verdict) error {
	w.socks = append(w.socks, sock)
	w.got = append(w.got, v)
	return nil
}

// TestPipelineVerdictPerBatch: a login and the requests after it on a
// keep-alive connection each leave it quiescent, and the decoder resumes
// after each; read in one batch, the kernel gets one resume, at the end of the batch, at
// the last offsets (the earlier ones would have been overwritten unread),
// and the saved map updates are counted.
func TestPipelineVerdictPerBatch(t *testing.T) {
	w := newWholePathOf(t, config.ExporterStdout, io.Discard, false)
	log := &verdictLog{}
	w.pipe.watcher = log
	const health, ok = "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	w.sample(t, bpf.Ingress, w.exchanges[0][0]) // a failed login
	w.sample(t, bpf.Egress, w.exchanges[0][1])
	for range 5 {
		w.sample(t, bpf.Ingress, []byte(health))
		w.sample(t, bpf.Egress, []byte(ok))
	}
	require.Empty(t, log.got, "nothing written before the batch is drained")
	w.pipe.Drained()
	require.Equal(t, []uint64{w.conn.Sock}, log.socks)
	require.Equal(t, bpf.Verdict{Kind: bpf.VerdictResume, InOff: w.inOff, OutOff: w.outOff}, log.got[0])
	st := w.pipe.stats()
	require.EqualValues(t, 1, st.VerdictsSent)
	require.EqualValues(t, 5, st.VerdictsMerged, "six resumes (this decoder holds none back after the login), one written")
	w.pipe.Drained()
	require.Len(t, log.got, 1, "an empty batch writes nothing")
}

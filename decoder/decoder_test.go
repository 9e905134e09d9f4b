package decoder

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func fixturePaths(tb testing.TB) []string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "exchanges", "*.txt"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no fixtures: %v", err)
	}
	return paths
}

// TestExchanges plays every fixture of testdata/exchanges and compares the
// exchanges, verdicts and counters with its want and stats sections.
func TestExchanges(t *testing.T) {
	for _, path := range fixturePaths(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			sc := mustLoadScript(t, path)
			d := New(sc.cfg)
			got := run(d, sc.steps)
			stats := formatStats(d.Stats())
			if *update {
				sc.rewrite(t, got, stats)
				return
			}
			if !slices.Equal(got, sc.want) {
				t.Errorf("got:\n     %s\nwant:\n     %s", strings.Join(got, "\n     "), strings.Join(sc.want, "\n     "))
			}
			if stats != sc.stats {
				t.Errorf("stats:\n got %s\nwant %s", stats, sc.stats)
			}
			mustHoldNothingAfterClose(t, d, sc.steps)
		})
	}
}

// mustHoldNothingAfterClose closes every connection of the script and
// checks that the decoder then holds nothing of them.
func mustHoldNothingAfterClose(tb testing.TB, d *Decoder, steps []step) {
	tb.Helper()
	for _, st := range steps {
		d.Close(st.chunk.Conn.Key, st.t)
	}
	if len(d.conns) != 0 {
		tb.Errorf("%d connections left after closing all", len(d.conns))
	}
	if n := d.sink.Bytes(); n != 0 {
		tb.Errorf("%d pending bytes left after closing all", n)
	}
}

// TestSplitAnywhere re-cuts each chunk of the fixtures marked split at every
// byte (both halves keep the chunk's time; the kernel's notes stay with
// the first): the exchanges must not change.
func TestSplitAnywhere(t *testing.T) {
	for _, path := range fixturePaths(t) {
		sc := mustLoadScript(t, path)
		if !sc.split {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			want := exchangesOnly(run(New(sc.cfg), sc.steps))
			for i, st := range sc.steps {
				for k := 1; k < len(st.chunk.Data); k++ {
					split := resplit(sc.steps, i, k)
					if got := exchangesOnly(run(New(sc.cfg), split)); !slices.Equal(got, want) {
						t.Fatalf("chunk %d split at %d:\n got %q\nwant %q", i, k, got, want)
					}
				}
			}
		})
	}
}

func exchangesOnly(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.HasPrefix(l, "verdict ") })
}

// resplit cuts chunk i of steps at byte k and renumbers the sequence of
// its direction.
func resplit(steps []step, i, k int) []step {
	out := make([]step, 0, len(steps)+1)
	for j, st := range steps {
		if j != i {
			out = append(out, st)
			continue
		}
		a, b := st, st
		a.chunk.Data, a.chunk.Len = st.chunk.Data[:k], uint32(k)
		b.chunk.Data, b.chunk.Len = st.chunk.Data[k:], st.chunk.Len-uint32(k)
		b.chunk.Offset += uint64(k)
		b.chunk.Flags, b.chunk.Skipped, b.chunk.Unanswered = 0, 0, 0
		out = append(out, a, b)
	}
	seqs := map[dirKey]uint32{}
	for j := range out {
		if ch := &out[j].chunk; out[j].op == "in" || out[j].op == "out" {
			dk := dirKey{ch.Conn.Key, ch.Dir}
			ch.Seq = seqs[dk]
			seqs[dk]++
		}
	}
	return out
}

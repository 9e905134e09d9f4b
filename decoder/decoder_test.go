package decoder

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExchanges(t *testing.T) {
	tests := []struct {
		file  string
		cfg   Config
		want  []string
		stats Stats // Chunks is filled in from the script
	}{
		{
			file: "keepalive.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 body="username=alice&p"...(29) -> 200 body="{\"ok\":true}" end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 GET /authorize?client_id=x&state=y HTTP/1.1 -> 302 end=response t=3000-3000/4000-4000`,
			},
			stats: Stats{Exchanges: 2},
		},
		{
			file: "pipelined.txt",
			want: []string{
				`fd=5 gen=1 POST /token HTTP/1.1 body="a=1" -> 401 body="nope" end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 GET /userinfo HTTP/1.1 -> 200 body="{}" end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 POST /logout HTTP/1.1 body="x=" -> 204 end=response t=1000-1000/2000-2000`,
			},
			stats: Stats{Exchanges: 3},
		},
		{
			file: "split_body.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 body="{\"user\":\"bob\",\"p\":1}" -> 403 body="denied" end=response t=1000-1300/2000-2100`,
			},
			stats: Stats{Exchanges: 1},
		},
		{
			file: "chunked.txt",
			cfg:  Config{MaxResponseBody: 16},
			want: []string{
				`fd=5 gen=1 POST /token HTTP/1.1 body="grant_type=password" -> 200 body="0123456789abcdef" trunc end=response t=1000-1500/2000-2000`,
				`fd=5 gen=1 GET /me HTTP/1.1 -> 200 body="ok" end=response t=3000-3000/4000-4000`,
			},
			stats: Stats{Exchanges: 2, TruncatedBodies: 1},
		},
		{
			file: "continue.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 body="u=a&p=b" -> 200 end=response t=1000-3000/4000-4000`,
			},
			stats: Stats{Exchanges: 1},
		},
		{
			file: "http10_close.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.0 body="a=b" -> 200 body="hello world" end=response t=1000-1000/2000-2500`,
			},
			stats: Stats{Exchanges: 1},
		},
		{
			file: "seqgap.txt",
			want: []string{
				`fd=5 gen=1 GET /a HTTP/1.1 -> 200 end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 GET /b HTTP/1.1 -> none end=lost lost t=3000-3000/0-0`,
				`fd=5 gen=1 GET /c HTTP/1.1 -> 200 body="c" end=response lost t=5000-5000/6000-6000`,
				`fd=5 gen=1 POST /d HTTP/1.1 body="0123456789" trunc -> 401 end=response lost t=7000-7000/11000-11000`,
				`fd=5 gen=1 GET /e HTTP/1.1 -> none end=closed t=12000-12000/0-0`,
			},
			stats: Stats{Exchanges: 5, SeqGaps: 3, TruncatedBodies: 1},
		},
		{
			file: "fdreuse.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 body="x" -> none end=closed t=1000-1000/0-0`,
				`fd=5 gen=2 GET /authorize HTTP/1.1 -> 302 end=response t=2000-2000/3000-3000`,
			},
			stats: Stats{Exchanges: 2},
		},
		{
			file: "lenbeyond.txt",
			want: []string{
				`fd=5 gen=1 POST /upload HTTP/1.1 body="0123456789" trunc -> 413 body="0123456789" trunc end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 GET /next HTTP/1.1 -> 200 body="abc" end=response t=3000-3000/4000-4000`,
				`fd=5 gen=1 GET /last HTTP/1.1 -> 204 end=response t=5000-5000/6000-6000`,
			},
			stats: Stats{Exchanges: 3, TruncatedBodies: 2},
		},
		{
			file: "garbage.txt",
			want: []string{
				`fd=6 gen=1 GET /login HTTP/1.1 -> 200 end=response t=3000-3000/4000-4000`,
			},
			stats: Stats{Exchanges: 1, ParseErrors: 2, Orphans: 1},
		},
		{
			file: "nobody.txt",
			want: []string{
				`fd=5 gen=1 HEAD /login HTTP/1.1 -> 200 end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 DELETE /session HTTP/1.1 -> 204 end=response t=3000-3000/4000-4000`,
				`fd=5 gen=1 GET /login HTTP/1.1 -> 304 end=response t=5000-5000/6000-6000`,
				`fd=5 gen=1 GET /done HTTP/1.1 -> 200 body="ok" end=response t=7000-7000/8000-8000`,
			},
			stats: Stats{Exchanges: 4},
		},
		{
			file: "timeout.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 -> none end=timeout t=1000-1000/0-0`,
				`fd=5 gen=1 GET /again HTTP/1.1 -> 200 end=response t=42000000000-42000000000/43000000000-43000000000`,
				`fd=5 gen=1 GET /idle HTTP/1.1 -> none end=timeout t=44000000000-44000000000/0-0`,
			},
			stats: Stats{Exchanges: 3},
		},
		{
			file: "capture_cut.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 -> 401 trunc end=response t=1000-1000/2000-2000`,
				`fd=5 gen=1 GET /a HTTP/1.1 -> 200 end=response t=3000-3000/4000-4000`,
				`fd=5 gen=1 GET /b HTTP/1.1 -> 200 body="first part" trunc end=response lost t=5000-5000/6000-6000`,
				`fd=5 gen=1 GET /c HTTP/1.1 -> 204 end=response t=9000-9000/10000-10000`,
			},
			stats: Stats{Exchanges: 4, SeqGaps: 1, TruncatedBodies: 2},
		},
		{
			file: "orphan_close.txt",
			want: []string{
				`fd=5 gen=1 POST /login HTTP/1.1 -> 200 body="partial" trunc end=response t=2000-2000/3000-3000`,
				`fd=7 gen=1 GET /x HTTP/1.1 -> none end=closed t=4000-4000/0-0`,
			},
			stats: Stats{Exchanges: 2, Orphans: 1, TruncatedBodies: 1},
		},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".txt"), func(t *testing.T) {
			steps := mustLoadScript(t, filepath.Join("testdata", "exchanges", tt.file))
			d := New(tt.cfg)
			got := run(d, steps)
			var lines []string
			for _, ex := range got {
				lines = append(lines, summary(ex))
			}
			if !slices.Equal(lines, tt.want) {
				t.Errorf("exchanges:\n got %s\nwant %s", strings.Join(lines, "\n     "), strings.Join(tt.want, "\n     "))
			}
			for _, st := range steps {
				if st.op == "in" || st.op == "out" {
					tt.stats.Chunks++
				}
			}
			if s := d.Stats(); s != tt.stats {
				t.Errorf("stats = %+v, want %+v", s, tt.stats)
			}
			mustHoldNoSecrets(t, d)
		})
	}
}

// mustHoldNoSecrets checks that a decoder whose connections are all
// finished keeps nothing of them.
func mustHoldNoSecrets(tb testing.TB, d *Decoder) {
	tb.Helper()
	for id, c := range d.conns {
		if len(c.queue) > 0 || c.in.head != nil || c.out.head != nil {
			tb.Errorf("connection %v still holds data after its exchanges ended", id)
		}
	}
}

// TestSplitAnywhere re-cuts each chunk of the gap-free fixtures at every
// byte (both halves keep the chunk's time): the exchanges must not change.
func TestSplitAnywhere(t *testing.T) {
	for _, file := range []string{"keepalive.txt", "pipelined.txt", "split_body.txt", "chunked.txt",
		"continue.txt", "http10_close.txt", "nobody.txt", "fdreuse.txt", "timeout.txt"} {
		t.Run(strings.TrimSuffix(file, ".txt"), func(t *testing.T) {
			steps := mustLoadScript(t, filepath.Join("testdata", "exchanges", file))
			want := summaries(run(New(Config{}), steps))
			for i, st := range steps {
				for k := 1; k < len(st.chunk.Data); k++ {
					split := resplit(steps, i, k)
					if got := summaries(run(New(Config{}), split)); !slices.Equal(got, want) {
						t.Fatalf("chunk %d split at %d:\n got %q\nwant %q", i, k, got, want)
					}
				}
			}
		})
	}
}

// resplit cuts chunk i of steps at byte k and renumbers the sequence.
func resplit(steps []step, i, k int) []step {
	out := make([]step, 0, len(steps)+1)
	for j, st := range steps {
		if j != i {
			out = append(out, st)
			continue
		}
		a, b := st, st
		a.chunk.Data, a.chunk.Len = st.chunk.Data[:k], uint32(k)
		b.chunk.Data, b.chunk.Len = st.chunk.Data[k:], uint32(len(st.chunk.Data)-k)
		out = append(out, a, b)
	}
	seqs := map[ConnKey]uint32{}
	for j := range out {
		if out[j].op == "in" || out[j].op == "out" {
			key := out[j].chunk.Conn.Key
			seqs[key]++
			out[j].chunk.Seq = seqs[key]
		}
	}
	return out
}

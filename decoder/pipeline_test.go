package decoder

import (
	"fmt"
	"strings"
	"testing"
)

// loginBurst is n form logins pipelined in one write, alternating right
// and wrong passwords, and the server's answers: 302 for a right one, 401
// for a wrong one. want names each exchange by username and status.
func loginBurst(n int) (req []byte, resps [][]byte, want []string) {
	var b strings.Builder
	for i := range n {
		pw, status := "wrong", 401
		resp := "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nbad password"
		if i%2 == 0 {
			pw, status = "right", 302
			resp = "HTTP/1.1 302 Found\r\nLocation: /home\r\nSet-Cookie: sid=s" + fmt.Sprint(i) + "\r\nContent-Length: 0\r\n\r\n"
		}
		body := fmt.Sprintf("username=user%d&password=%s", i, pw)
		fmt.Fprintf(&b, "POST /login HTTP/1.1\r\nHost: app.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resps = append(resps, []byte(resp))
		want = append(want, fmt.Sprintf("user%d %d", i, status))
	}
	return []byte(b.String()), resps, want
}

// playBurst feeds the burst to a fresh decoder, the request bytes cut at
// the offsets in cuts and the responses written one by one after the
// requests they answer were read, and returns each exchange as
// "username status".
func playBurst(tb testing.TB, req []byte, resps [][]byte, cuts []int) ([]string, Stats) {
	tb.Helper()
	d := New(Config{})
	f := &feeder{d: d, key: ConnKey{Sock: 9, Gen: 1}}
	var got []string
	add := func(exs []Exchange) {
		for _, ex := range exs {
			user, _, _ := strings.Cut(strings.TrimPrefix(string(ex.Request.Body), "username="), "&")
			status := 0
			if ex.Response != nil {
				status = ex.Response.StatusCode
			}
			got = append(got, fmt.Sprintf("%s %d", user, status))
		}
	}
	ends := requestEnds(req)
	answered := 0
	prev := 0
	for _, cut := range append(cuts, len(req)) {
		if cut <= prev {
			continue
		}
		add(f.feed(Ingress, string(req[prev:cut])))
		prev = cut
		// The server answers every request read completely so far.
		for answered < len(resps) && ends[answered] <= cut {
			add(f.feed(Egress, string(resps[answered])))
			answered++
		}
	}
	for ; answered < len(resps); answered++ {
		add(f.feed(Egress, string(resps[answered])))
	}
	add(d.Close(f.key, f.time))
	return got, d.Stats()
}

// requestEnds returns the offset at which each request of a burst ends.
func requestEnds(b []byte) []int {
	var ends []int
	off := 0
	for {
		i := strings.Index(string(b[off:]), "\r\n\r\n")
		if i < 0 {
			return ends
		}
		head := string(b[off : off+i])
		j := strings.Index(head, "Content-Length: ")
		var cl int
		fmt.Sscanf(head[j+len("Content-Length: "):], "%d", &cl)
		off += i + 4 + cl
		ends = append(ends, off)
	}
}

func checkBurst(t *testing.T, got, want []string, s Stats) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("exchanges differ:\n got %v\nwant %v", got, want)
	}
	var lost uint64
	for _, n := range s.LostAttempts {
		lost += n
	}
	if lost != 0 || s.Exchanges != uint64(len(want)) || s.Orphans != 0 || s.ParseErrors != 0 {
		t.Fatalf("stats %s", formatStats(s))
	}
}

// TestPipelinedLogins: 50 and 500 logins pipelined in one write, each with
// its own result, however the kernel cuts the bytes: one chunk, 16 KiB
// slices (MAX_CAPTURE), 4 KiB reads (a buffered server), one byte each.
func TestPipelinedLogins(t *testing.T) {
	for _, n := range []int{50, 500} {
		req, resps, want := loginBurst(n)
		for _, split := range []struct {
			name string
			step int
		}{{"one chunk", 0}, {"16KiB slices", 16384}, {"4KiB reads", 4096}, {"every byte", 1}} {
			t.Run(fmt.Sprintf("%d/%s", n, split.name), func(t *testing.T) {
				var cuts []int
				for i := split.step; split.step > 0 && i < len(req); i += split.step {
					cuts = append(cuts, i)
				}
				got, s := playBurst(t, req, resps, cuts)
				checkBurst(t, got, want, s)
			})
		}
	}
}

// TestPipelinedLoginsSplitAnywhere cuts a burst of 50 logins in two at
// every byte.
func TestPipelinedLoginsSplitAnywhere(t *testing.T) {
	req, resps, want := loginBurst(50)
	for k := 1; k < len(req); k++ {
		got, s := playBurst(t, req, resps, []int{k})
		checkBurst(t, got, want, s)
	}
}

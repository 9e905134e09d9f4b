package postgres

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// recorded is one side's read, in the order the proxy forwarded it.
type recorded struct {
	side Side
	data []byte
}

// session is one proxied connection's traffic.
type session struct {
	mu     sync.Mutex
	chunks []recorded
	done   chan struct{}
}

func (s *session) recorded() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.chunks...)
}

// recorder is a loopback TCP proxy in front of a server that records both
// directions of every connection. A read is recorded before it is
// forwarded, so the recording keeps the order in which each side could
// have seen the other's bytes.
type recorder struct {
	Addr     string
	target   string
	ln       net.Listener
	mu       sync.Mutex
	sessions []*session
	conns    []net.Conn
	wg       sync.WaitGroup
}

func mustRecorder(tb testing.TB, target string) *recorder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &recorder{Addr: ln.Addr().String(), target: target, ln: ln}
	r.wg.Add(1)
	go r.accept()
	tb.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s := &session{done: make(chan struct{})}
		r.mu.Lock()
		r.sessions = append(r.sessions, s)
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		r.wg.Add(1)
		go r.pipe(c, s)
	}
}

func (r *recorder) pipe(client net.Conn, s *session) {
	defer r.wg.Done()
	defer close(s.done)
	defer client.Close()
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer server.Close()
	r.mu.Lock()
	r.conns = append(r.conns, server)
	r.mu.Unlock()
	var wg sync.WaitGroup
	relay := func(src, dst net.Conn, side Side) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.chunks = append(s.chunks, recorded{side, append([]byte(nil), buf[:n]...)})
				s.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					_ = dst.(*net.TCPConn).CloseWrite()
				} else {
					dst.Close()
				}
				return
			}
		}
	}
	wg.Add(2)
	go relay(client, server, Frontend)
	go relay(server, client, Backend)
	wg.Wait()
}

// mustSessions waits until every connection so far has ended and returns
// their recordings, in the order they were accepted.
func (r *recorder) mustSessions(tb testing.TB) [][]recorded {
	tb.Helper()
	r.mu.Lock()
	ss := append([]*session(nil), r.sessions...)
	r.sessions = nil
	r.mu.Unlock()
	var out [][]recorded
	for _, s := range ss {
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			tb.Fatal("a proxied connection did not end within 30s")
		}
		out = append(out, s.recorded())
	}
	return out
}

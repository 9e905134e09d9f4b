package bpf

import (
	"bytes"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests here drive the real probe with real sockets on 127.0.0.x and a
// scripted server process (testdata/sockhelper.py) that makes exactly the
// syscalls each case needs. Every server is watched by pid; the test
// process itself never is.

type connID struct{ sock, gen uint64 }

func idOf(ev ConnEvent) connID { return connID{ev.Sock, ev.Gen} }

// serve starts a watched helper that listens; it returns the helper, its
// listening fd and port.
func serve(t *testing.T, p *Probe) (*helper, int, int) {
	h := mustHelper(t)
	watch(t, p, h.pid)
	lfd, port := h.listen()
	return h, lfd, port
}

// A closed fd reused for the next accepted connection is a different
// connection.
func TestFDReuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)

		c1 := dial(t, port)
		fd1 := h.int("accept", lfd)
		mustWrite(t, c1, []byte(loginReq))
		h.read(fd1)
		h.do("close", fd1)
		c2 := dial(t, port)
		fd2 := h.int("accept", lfd)
		require.Equal(t, fd1, fd2, "the fd number is reused")
		mustWrite(t, c2, []byte(loginReq))
		h.read(fd2)

		e1 := rec.waitEvents(t, 1, fromClient(c1))
		e2 := rec.waitEvents(t, 1, fromClient(c2))
		require.NotEqual(t, idOf(e1[0]), idOf(e2[0]))
		for _, ev := range []ConnEvent{e1[0], e2[0]} {
			require.Equal(t, loginReq, string(ev.Data))
			require.Equal(t, uint64(0), ev.Off)
			require.Equal(t, FlagEpisode|FlagBoundary, ev.Flags)
		}
		// The first connection's close is reported. The client closes its
		// end too: a server socket whose FIN's ACK arrived while close()
		// still held its lock waits in FIN_WAIT2 on the kernel's orphan
		// timer (tcp_fin_timeout, 60 s) before TCP_CLOSE; the client's FIN
		// ends it at once.
		require.NoError(t, c1.Close())
		require.Eventually(t, func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, c := range rec.closes {
				if idOf(c) == idOf(e1[0]) {
					return true
				}
			}
			return false
		}, patience(5*time.Second), 10*time.Millisecond)
	})
}

// Two fds of one socket are one connection.
func TestDup2(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)

		c := dial(t, port)
		fd := h.int("accept", lfd)
		h.do("dup2", fd, 100)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		h.do("write", 100, []byte(resp401))
		mustWrite(t, c, []byte(healthReq))
		h.read(100)

		evs := rec.waitEvents(t, 3, fromClient(c))
		for _, ev := range evs {
			require.Equal(t, idOf(evs[0]), idOf(ev))
		}
		in := rec.events(dirOf(Ingress, fromClient(c)))
		require.Equal(t, loginReq+healthReq, joined(in))
		require.Equal(t, uint64(len(loginReq)), in[1].Off)
		require.Equal(t, resp401, joined(rec.events(dirOf(Egress, fromClient(c)))))
	})
}

// An fd passed to another process over a Unix socket is the same
// connection; its events carry the receiving process. The receiver is a
// child of the watched server, watched from its fork.
func TestSCMRights(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		pair := h.do("socketpair")
		child := h.fork()

		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		h.do("sendfd", pair[0], fd)
		h.do("close", fd)
		got := child.int("recvfd", pair[1])
		mustWrite(t, c, []byte(loginReq))
		child.read(got)
		child.do("write", got, []byte(resp401))

		evs := rec.waitEvents(t, 3, fromClient(c))
		require.Equal(t, uint32(h.pid), evs[0].PID)
		require.Equal(t, uint32(child.pid), evs[1].PID)
		require.Equal(t, uint32(child.pid), evs[2].PID)
		for _, ev := range evs {
			require.Equal(t, idOf(evs[0]), idOf(ev))
		}
		require.Equal(t, uint64(len(loginReq)), evs[1].Off)
	})
}

// A child forked by a watched server is watched from the fork, under its
// own start time, and its I/O on an inherited socket is the same
// connection.
func TestForkInheritedSocket(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		child := h.fork()

		start, err := ProcStartTicks(child.pid)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			return len(rec.proc(&rec.forks, func(ev ProcEvent) bool { return ev.PID == uint32(child.pid) })) == 1
		}, patience(5*time.Second), 10*time.Millisecond)
		fork := rec.proc(&rec.forks, func(ev ProcEvent) bool { return ev.PID == uint32(child.pid) })[0]
		require.Equal(t, uint32(h.pid), fork.PPID)
		require.Equal(t, start, fork.Start)
		watched, err := p.Watched()
		require.NoError(t, err)
		require.Contains(t, watched, WatchedProcess{PID: uint32(child.pid), StartTicks: start})

		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		mustWrite(t, c, []byte(loginReq))
		child.read(fd)
		child.do("write", fd, []byte(resp401))
		evs := rec.waitEvents(t, 3, fromClient(c))
		require.Equal(t, []uint32{uint32(h.pid), uint32(child.pid), uint32(child.pid)},
			[]uint32{evs[0].PID, evs[1].PID, evs[2].PID})
		for _, ev := range evs {
			require.Equal(t, idOf(evs[0]), idOf(ev))
		}

		// Its exit is reported and forgotten; the parent stays watched.
		child.w.Write([]byte("exit\n"))
		require.Eventually(t, func() bool {
			return len(rec.proc(&rec.exits, func(ev ProcEvent) bool { return ev.PID == uint32(child.pid) })) == 1
		}, patience(5*time.Second), 10*time.Millisecond)
		watched, err = p.Watched()
		require.NoError(t, err)
		require.NotContains(t, watched, WatchedProcess{PID: uint32(child.pid), StartTicks: start})
		require.Contains(t, pids(watched), uint32(h.pid))
	})
}

func pids(ws []WatchedProcess) []uint32 {
	var out []uint32
	for _, w := range ws {
		out = append(out, w.PID)
	}
	return out
}

// Two threads writing one socket at once: every event has its own seq,
// with no gap, and its own stream range.
func TestConcurrentWriters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)

		const threads, writes = 2, 300
		go func() { _, _ = io.Copy(io.Discard, c) }()
		h.do("threads-write", fd, threads, writes, []byte(resp401))
		evs := rec.waitEvents(t, threads*writes, dirOf(Egress, fromClient(c)))
		require.Len(t, evs, threads*writes)
		seqs := map[uint32]bool{}
		offs := map[uint64]bool{}
		for _, ev := range evs {
			require.False(t, seqs[ev.Seq], "seq %d twice", ev.Seq)
			require.False(t, offs[ev.Off], "offset %d twice", ev.Off)
			seqs[ev.Seq], offs[ev.Off] = true, true
			require.Equal(t, uint32(len(resp401)), ev.Len)
		}
		for i := range threads * writes {
			require.True(t, seqs[uint32(i)], "seq %d missing", i)
			require.True(t, offs[uint64(i*len(resp401))], "offset %d missing", i*len(resp401))
		}
	})
}

// A connection that predates the probe starts mid-stream: its first event
// has no boundary. One accepted but not yet read from does start at a
// boundary.
func TestConnectionPredatesProbe(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		skipUnlessRoot(t)
		h := mustHelper(t)
		lfd, port := h.listen()
		old := dial(t, port)
		oldFD := h.int("accept", lfd)
		mustWrite(t, old, []byte(healthReq))
		h.read(oldFD)
		fresh := dial(t, port)
		freshFD := h.int("accept", lfd)

		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		watch(t, p, h.pid)
		delta := counterDelta(t, p)
		mustWrite(t, old, []byte(healthReq))
		h.read(oldFD)
		ev := rec.waitEvents(t, 1, fromClient(old))[0]
		require.Equal(t, FlagEpisode, ev.Flags, "mid-stream: no boundary")
		require.Equal(t, uint64(0), ev.Off, "offsets count from first sight")
		require.Equal(t, healthReq, string(ev.Data))

		mustWrite(t, fresh, []byte(healthReq))
		h.read(freshFD)
		h.do("write", freshFD, []byte(resp200))
		mustWrite(t, fresh, []byte(loginReq))
		h.read(freshFD)
		ev = rec.waitEvents(t, 1, fromClient(fresh))[0]
		require.Equal(t, FlagEpisode|FlagBoundary, ev.Flags)
		require.Equal(t, uint32(1), ev.Skipped)
		require.Equal(t, uint64(len(healthReq)), ev.Off)
		require.Equal(t, uint64(1), delta("requests_skipped"))
	})
}

// A process whose main thread exits while another thread serves stays
// watched; it is forgotten when its last thread exits.
func TestLeaderExitKeepsWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		h.do("leader-exit")
		f := h.do("pid")
		require.NotEqual(t, f[0], f[1], "a thread other than the leader answers")

		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		ev := rec.waitEvents(t, 1, fromClient(c))[0]
		require.Equal(t, uint32(h.pid), ev.PID)
		require.NotEqual(t, uint32(h.pid), ev.TID)
		watched, err := p.Watched()
		require.NoError(t, err)
		require.Contains(t, pids(watched), uint32(h.pid))
		require.Empty(t, rec.proc(&rec.exits, func(ev ProcEvent) bool { return ev.PID == uint32(h.pid) }))

		h.w.Write([]byte("exit\n"))
		require.Eventually(t, func() bool {
			return len(rec.proc(&rec.exits, func(ev ProcEvent) bool { return ev.PID == uint32(h.pid) })) == 1
		}, patience(5*time.Second), 10*time.Millisecond)
		watched, err = p.Watched()
		require.NoError(t, err)
		require.NotContains(t, pids(watched), uint32(h.pid))
	})
}

// A tgid watched under another start time (a reused pid) is not captured
// and is forgotten.
func TestStaleWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h := mustHelper(t)
		lfd, port := h.listen()
		start, err := ProcStartTicks(h.pid)
		require.NoError(t, err)
		require.NoError(t, p.Watch(uint32(h.pid), start-1))
		delta := counterDelta(t, p)

		stale := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, stale, []byte(loginReq))
		h.read(fd)
		require.Eventually(t, func() bool { return delta("stale_watch") == 1 }, patience(5*time.Second), 10*time.Millisecond)
		watched, err := p.Watched()
		require.NoError(t, err)
		require.NotContains(t, pids(watched), uint32(h.pid))

		// Watched right, the next connection is captured; the stale one
		// never was.
		watch(t, p, h.pid)
		c := dial(t, port)
		fd2 := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd2)
		rec.waitEvents(t, 1, fromClient(c))
		require.Empty(t, rec.events(fromClient(stale)))
	})
}

// Listeners of any process are reported, with the process's start time.
func TestListenEvent(t *testing.T) {
	skipUnlessRoot(t)
	p := mustLoad(t, naturalBackend(t), Config{})
	rec := mustRun(t, p)
	h := mustHelper(t) // not watched
	_, port := h.listen()
	start, err := ProcStartTicks(h.pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return len(rec.proc(&rec.listens, func(ev ProcEvent) bool { return ev.PID == uint32(h.pid) })) == 1
	}, patience(5*time.Second), 10*time.Millisecond)
	ev := rec.proc(&rec.listens, func(ev ProcEvent) bool { return ev.PID == uint32(h.pid) })[0]
	require.Equal(t, uint16(port), ev.Port)
	require.Equal(t, start, ev.Start)
	// Its exec was seen too, with the same identity.
	execs := rec.proc(&rec.execs, func(ev ProcEvent) bool { return ev.PID == uint32(h.pid) })
	require.Len(t, execs, 1)
	require.Equal(t, start, execs[0].Start)
	require.Contains(t, execs[0].Exe, "python3")
}

// MSG_PEEK reads are ignored: the bytes are read again.
func TestPeekIgnored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		const msgPeek = 2
		h.do("recv", fd, msgPeek)
		h.read(fd)
		mustWrite(t, c, []byte(healthReq))
		h.read(fd)
		evs := rec.waitEvents(t, 2, fromClient(c))
		require.Equal(t, []uint64{0, uint64(len(loginReq))}, []uint64{evs[0].Off, evs[1].Off})
		require.Equal(t, loginReq, string(evs[0].Data))
		require.Equal(t, uint64(1), delta("peek_ignored"))
	})
}

// readv, recvmsg, writev and sendmsg: the bytes of every iovec, in order,
// and a request split over iovecs is still proven.
func TestIovecs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)

		mustWrite(t, c, []byte(healthReq))
		h.do("readv", fd, "5,3,200")
		h.do("writev", fd, []byte("HTTP/1.1 200 OK\r\n"), []byte("Content-Length: 0\r\n\r\n"))
		mustWrite(t, c, []byte(loginReq))
		h.do("recvmsg", fd, "7,1,1,200")
		h.do("sendmsg", fd, []byte("HTTP/1.1 401"), []byte(" Unauthorized\r\n"), []byte("\r\n"))
		in := rec.waitEvents(t, 1, dirOf(Ingress, fromClient(c)))
		require.Equal(t, loginReq, string(in[0].Data))
		require.Equal(t, uint32(1), in[0].Skipped)
		out := rec.waitEvents(t, 1, dirOf(Egress, fromClient(c)))
		require.Equal(t, "HTTP/1.1 401 Unauthorized\r\n\r\n", string(out[0].Data))
		require.Equal(t, uint64(len("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")), out[0].Off)
		require.Equal(t, uint64(1), delta("requests_skipped"))
	})
}

// A read longer than one event is split into contiguous events.
func TestLargeReadSlices(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		body := bytes.Repeat([]byte("0123456789abcdef"), 2500) // 40000 bytes
		req := append([]byte("POST /login HTTP/1.1\r\nContent-Length: 40000\r\n\r\n"), body...)
		mustWrite(t, c, req)
		var got []byte
		for len(got) < len(req) {
			got = append(got, h.read(fd)...)
		}
		evs := rec.waitEvents(t, 3, fromClient(c))
		sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
		var off uint64
		for i, ev := range evs {
			require.Equal(t, uint32(i), ev.Seq)
			require.Equal(t, off, ev.Off)
			require.Equal(t, ev.Len, uint32(len(ev.Data)))
			require.LessOrEqual(t, len(ev.Data), MaxCapture)
			off += uint64(ev.Len)
		}
		require.Equal(t, string(req), joined(evs))
	})
}

// Beyond the episode's budget, events carry lengths, not bytes.
func TestBurstBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{BurstBytes: 100})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		evs := rec.waitEvents(t, 2, fromClient(c))
		require.Equal(t, loginReq, string(evs[0].Data))
		require.Equal(t, FlagEpisode|FlagBoundary, evs[0].Flags)
		left := 100 - len(loginReq)
		require.Equal(t, loginReq[:left], string(evs[1].Data))
		require.Equal(t, FlagBudget, evs[1].Flags)
		require.Equal(t, uint32(len(loginReq)), evs[1].Len)
		require.Equal(t, uint64(len(loginReq)-left), delta("truncated_budget"))
	})
}

// An interim 100 Continue does not end the capture: the body and the
// final response follow in the same episode.
func TestContinue100(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		head := "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
		mustWrite(t, c, []byte(head))
		h.read(fd)
		cont := "HTTP/1.1 100 Continue\r\n\r\n"
		h.do("write", fd, []byte(cont))
		mustWrite(t, c, []byte("user=a&pw=b"))
		h.read(fd)
		h.do("write", fd, []byte(resp401))
		in := rec.waitEvents(t, 2, dirOf(Ingress, fromClient(c)))
		out := rec.waitEvents(t, 2, dirOf(Egress, fromClient(c)))
		require.Equal(t, head+"user=a&pw=b", joined(in))
		require.Equal(t, cont+resp401, joined(out))
		require.Equal(t, []uint32{0, 1}, []uint32{out[0].Seq, out[1].Seq})
		require.Equal(t, uint64(len(cont)), out[1].Off)
	})
}

// The response of a skipped request is suppressed, even when the next
// request is read before it is written (pipelining); the episode says how
// many it suppresses.
func TestUnansweredSuppressed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		mustWrite(t, c, []byte(healthReq))
		h.read(fd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		h.do("write", fd, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
		h.do("write", fd, []byte("hello"))
		h.do("write", fd, []byte(resp401))
		in := rec.waitEvents(t, 1, dirOf(Ingress, fromClient(c)))
		require.Equal(t, uint32(1), in[0].Skipped)
		require.Equal(t, uint32(1), in[0].Unanswered)
		out := rec.waitEvents(t, 1, dirOf(Egress, fromClient(c)))
		require.Equal(t, resp401, string(out[0].Data))
		require.Equal(t, uint64(len("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")), out[0].Off)
		time.Sleep(50 * time.Millisecond)
		require.Len(t, rec.events(dirOf(Egress, fromClient(c))), 1)
	})
}

// A 101 response does not end capture by itself: what follows may be
// HTTP/2 (an h2c upgrade), so every byte goes on to user space until it
// says VERDICT_OFF (a WebSocket); then nothing more is sent.
func TestSwitchingProtocolsOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		upgrade := "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		mustWrite(t, c, []byte(upgrade))
		h.read(fd)
		h.do("write", fd, []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
		frame := "\x81\x05hello"
		mustWrite(t, c, []byte(frame))
		h.read(fd)
		in := rec.waitEvents(t, 2, dirOf(Ingress, fromClient(c)))
		require.Equal(t, upgrade, string(in[0].Data), "an Upgrade request is never proven")
		require.Equal(t, frame, string(in[1].Data), "after the 101: sent")
		require.NoError(t, p.SetVerdict(in[0].Sock, in[0].Gen, Verdict{Kind: VerdictOff}))
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		// A connection that is captured afterwards proves the events had
		// time to arrive.
		c2 := dial(t, port)
		fd2 := h.int("accept", lfd)
		mustWrite(t, c2, []byte(loginReq))
		h.read(fd2)
		rec.waitEvents(t, 1, fromClient(c2))
		require.Len(t, rec.events(dirOf(Ingress, fromClient(c))), 2, "nothing after VERDICT_OFF")
	})
}

// Connections a watched process opens with connect() (client capture,
// capture/client.h): outside a served request only the first bytes of
// their first write are sent, for user space to tell the protocol; while
// the task serves a captured request, all of their I/O, with the task,
// its local port and the client role; after it answered, nothing again.
func TestClientConnection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		upPort := uint16(ln.Addr().(*net.TCPAddr).Port)
		toUpstream := func(ev ConnEvent) bool { return ev.Peer.Port() == upPort }
		query := []byte("GET /users/42?token=x HTTP/1.1\r\nHost: idp\r\nX-Padding: " + strings.Repeat("p", 100) + "\r\n\r\n")
		answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		call := func(fd int, up net.Conn) {
			h.do("write", fd, query)
			buf := make([]byte, len(query))
			_, err := io.ReadFull(up, buf)
			require.NoError(t, err)
			mustWrite(t, up, answer)
			h.read(fd)
		}
		count := counterDelta(t, p)

		// Outside any request: the first write's first bytes only.
		fd := h.int("connect", "127.0.0.1", int(upPort))
		up, err := ln.Accept()
		require.NoError(t, err)
		defer up.Close()
		call(fd, up)
		call(fd, up)

		// Serving a login (a captured request) on this thread: all of it.
		c := dial(t, port)
		sfd := h.int("accept", lfd)
		mustWrite(t, c, []byte(loginReq))
		h.read(sfd)
		// The first write's probe event is read before the mark: the
		// reader takes events in batches, so it may still be on its way.
		rec.waitEvents(t, 1, func(ev ConnEvent) bool { return toUpstream(ev) && ev.Off == 0 })
		rec.waitEvents(t, 1, fromClient(c))
		mark := rec.mark()
		call(fd, up)
		// Answered: nothing any more.
		h.do("write", sfd, []byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"))
		call(fd, up)
		// A later captured request proves the events had time to arrive.
		c2 := dial(t, port)
		sfd2 := h.int("accept", lfd)
		mustWrite(t, c2, []byte(loginReq))
		h.read(sfd2)
		rec.waitEvents(t, 1, fromClient(c2))

		probe := rec.events(func(ev ConnEvent) bool { return toUpstream(ev) && ev.Off == 0 })
		require.Len(t, probe, 1, "the first write, once")
		require.Equal(t, RoleClient, probe[0].Role)
		require.Equal(t, Egress, probe[0].Dir)
		require.Equal(t, FlagBoundary|FlagBudget, probe[0].Flags)
		require.Equal(t, query[:64], probe[0].Data)
		served := rec.eventsSince(mark, toUpstream)
		require.Len(t, served, 2, "the served call: its request and its answer")
		require.Equal(t, Egress, served[0].Dir)
		require.Equal(t, uint64(2*len(query)), served[0].Off)
		require.Equal(t, query, served[0].Data)
		require.Equal(t, Ingress, served[1].Dir)
		require.Equal(t, uint64(2*len(answer)), served[1].Off)
		require.Equal(t, answer, served[1].Data)
		for _, ev := range served {
			require.Equal(t, RoleClient, ev.Role)
			require.Equal(t, uint64(ev.TID), ev.Task, "a thread's task is its tid")
			require.Equal(t, uint32(0), ev.Busy)
			require.NotZero(t, ev.Local.Port(), "the local port, read again after connect")
			require.Equal(t, up.RemoteAddr().String(), ev.Local.String())
		}
		require.Len(t, rec.events(toUpstream), 3)
		require.Equal(t, uint64(2), count("client_captured"))
		require.Equal(t, uint64(5), count("client_outside"), "the first call's read, the second call, the call after the answer")
	})
}

// The answer to a call made while serving is sent even when the task has
// answered its own request before reading it (an event loop does that);
// the answer to a call made outside any request is not.
func TestClientAnswerAfterServing(t *testing.T) {
	p := mustLoad(t, BackendSock, Config{})
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	upPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	toUpstream := func(ev ConnEvent) bool { return ev.Peer.Port() == upPort }
	query := []byte("GET /users/42 HTTP/1.1\r\nHost: idp\r\n\r\n")
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	fd := h.int("connect", "127.0.0.1", int(upPort))
	up, err := ln.Accept()
	require.NoError(t, err)
	defer up.Close()
	count := counterDelta(t, p)

	c := dial(t, port)
	sfd := h.int("accept", lfd)
	mustWrite(t, c, []byte(loginReq))
	h.read(sfd)
	rec.waitEvents(t, 1, fromClient(c))
	h.do("write", fd, query) // the first write, while serving: all of it
	buf := make([]byte, len(query))
	_, err = io.ReadFull(up, buf)
	require.NoError(t, err)
	h.do("write", sfd, []byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"))
	mustWrite(t, up, answer)
	h.read(fd) // serving nothing now: sent as the call's answer
	// A call outside any request: neither its request nor its answer.
	h.do("write", fd, query)
	_, err = io.ReadFull(up, buf)
	require.NoError(t, err)
	mustWrite(t, up, answer)
	h.read(fd)
	// A later captured request proves the events had time to arrive.
	c2 := dial(t, port)
	sfd2 := h.int("accept", lfd)
	mustWrite(t, c2, []byte(loginReq))
	h.read(sfd2)
	rec.waitEvents(t, 1, fromClient(c2))

	evs := rec.events(toUpstream)
	require.Len(t, evs, 2, "the served call's request and its answer")
	require.Equal(t, Egress, evs[0].Dir)
	require.Equal(t, query, evs[0].Data)
	require.Equal(t, Ingress, evs[1].Dir)
	require.Equal(t, uint64(0), evs[1].Off)
	require.Equal(t, answer, evs[1].Data)
	require.Equal(t, uint64(2), count("client_captured"))
	require.Equal(t, uint64(2), count("client_outside"), "the second call's request and answer")
}

// The helper does what it is told.
func TestHelperSanity(t *testing.T) {
	h := mustHelper(t)
	lfd, port := h.listen()
	c := dial(t, port)
	fd := h.int("accept", lfd)
	mustWrite(t, c, []byte("ping"))
	require.Equal(t, "ping", string(h.read(fd)))
	f := h.do("pid")
	require.Equal(t, f[0], f[1], "the leader answers")
}

// An unwatched process is not captured.
func TestUnwatch(t *testing.T) {
	p := mustLoad(t, naturalBackend(t), Config{})
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	require.NoError(t, p.Unwatch(uint32(h.pid)))
	require.NoError(t, p.Unwatch(uint32(h.pid)), "twice is fine")
	watched, err := p.Watched()
	require.NoError(t, err)
	require.NotContains(t, pids(watched), uint32(h.pid))
	c := dial(t, port)
	fd := h.int("accept", lfd)
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	// Watched again, a new connection is captured; the first never was.
	watch(t, p, h.pid)
	c2 := dial(t, port)
	fd2 := h.int("accept", lfd)
	mustWrite(t, c2, []byte(loginReq))
	h.read(fd2)
	rec.waitEvents(t, 1, fromClient(c2))
	require.Empty(t, rec.events(fromClient(c)))
}

// Socket I/O from a syscall whose buffer the socket backends cannot read
// (sendfile here; io_uring and mmsg alike) still moves the stream: it is
// an event with a length and no bytes, counted. (fentry sees sendfile at
// tcp_sendpage before 6.5, at tcp_sendmsg after.)
func TestSendfileUnreadable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		if backend == BackendSyscalls {
			t.Skip("the syscalls backend does not hook sendfile: its bytes move no stream it sees")
		}
		testSendfileUnreadable(t, backend)
	})
}

func testSendfileUnreadable(t *testing.T, backend string) {
	p := mustLoad(t, backend, Config{})
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	delta := counterDelta(t, p)
	c := dial(t, port)
	fd := h.int("accept", lfd)
	go func() { _, _ = io.Copy(io.Discard, c) }()
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	head := "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
	h.do("write", fd, []byte(head))
	h.do("sendfile", fd, "/proc/self/exe", 1000)
	h.do("write", fd, []byte(resp401))
	out := rec.waitEvents(t, 3, dirOf(Egress, fromClient(c)))
	require.Equal(t, head, string(out[0].Data))
	require.Equal(t, FlagUnreadable, out[1].Flags)
	require.Equal(t, uint64(len(head)), out[1].Off)
	require.Empty(t, out[1].Data)
	var moved uint64
	for _, ev := range out[1 : len(out)-1] {
		moved += uint64(ev.Len)
	}
	require.Equal(t, uint64(1000), moved)
	require.Equal(t, uint64(len(head)+1000), out[len(out)-1].Off)
	require.Equal(t, resp401, string(out[len(out)-1].Data))
	require.NotZero(t, delta("unsupported_syscall"))
}

package bpf

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// streamEnd is the offset after the last event of a direction.
func streamEnd(evs []ConnEvent) uint64 {
	var end uint64
	for _, ev := range evs {
		end = max(end, ev.Off+uint64(ev.Len))
	}
	return end
}

// episode runs one captured login exchange on a fresh connection and
// returns the client, the server fd and the events of the exchange.
func episode(t *testing.T, rec *recorder, h *helper, lfd, port int) (*connPair, ConnEvent) {
	cp := loginExchange(t, h, lfd, port)
	in := rec.waitEvents(t, 1, dirOf(Ingress, fromClient(cp.c)))
	rec.waitEvents(t, 1, dirOf(Egress, fromClient(cp.c)))
	return cp, in[0]
}

// loginExchange runs one login exchange on a fresh connection, without
// waiting for its events.
func loginExchange(t *testing.T, h *helper, lfd, port int) *connPair {
	c := dial(t, port)
	fd := h.int("accept", lfd)
	go func() { _, _ = io.Copy(io.Discard, c) }()
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	h.do("write", fd, []byte(resp401))
	return &connPair{c: c, fd: fd}
}

// connPair is a connection's client end and the server's fd of it.
type connPair struct {
	c  net.Conn
	fd int
}

func TestVerdictResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		cp, first := episode(t, rec, h, lfd, port)
		conn := func(ev ConnEvent) bool { return idOf(ev) == idOf(first) }
		inOff := streamEnd(rec.events(dirOf(Ingress, conn)))
		outOff := streamEnd(rec.events(dirOf(Egress, conn)))

		require.NoError(t, p.SetVerdict(first.Sock, first.Gen, Verdict{Kind: VerdictResume, InOff: inOff, OutOff: outOff}))
		mustWrite(t, cp.c, []byte(healthReq))
		h.read(cp.fd)
		h.do("write", cp.fd, []byte(resp200))
		mustWrite(t, cp.c, []byte(loginReq))
		h.read(cp.fd)
		evs := rec.waitEvents(t, 2, dirOf(Ingress, conn))
		require.Len(t, evs, 2, "the GET after the resume was skipped")
		require.Equal(t, loginReq, string(evs[1].Data))
		require.Equal(t, FlagEpisode|FlagBoundary, evs[1].Flags)
		require.Equal(t, uint32(1), evs[1].Skipped)
		require.Equal(t, inOff+uint64(len(healthReq)), evs[1].Off)
		require.Equal(t, uint64(1), delta("verdicts_applied"))
		require.Equal(t, uint64(2), delta("episodes"))
	})
}

// A resume whose offsets are behind the kernel's, or for another
// generation of the socket, is dropped and counted; capture goes on.
func TestVerdictResumeStale(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		cp, first := episode(t, rec, h, lfd, port)
		conn := func(ev ConnEvent) bool { return idOf(ev) == idOf(first) }
		inOff := streamEnd(rec.events(dirOf(Ingress, conn)))
		outOff := streamEnd(rec.events(dirOf(Egress, conn)))

		require.NoError(t, p.SetVerdict(first.Sock, first.Gen, Verdict{Kind: VerdictResume, InOff: inOff - 1, OutOff: outOff}))
		mustWrite(t, cp.c, []byte(healthReq))
		h.read(cp.fd)
		require.NoError(t, p.SetVerdict(first.Sock, first.Gen+1, Verdict{Kind: VerdictResume, InOff: inOff + uint64(len(healthReq)), OutOff: outOff}))
		mustWrite(t, cp.c, []byte(healthReq))
		h.read(cp.fd)
		evs := rec.waitEvents(t, 3, dirOf(Ingress, conn))
		require.Equal(t, healthReq, string(evs[1].Data), "still capturing")
		require.Equal(t, healthReq, string(evs[2].Data))
		require.Equal(t, uint64(2), delta("verdicts_stale"))
		require.Zero(t, delta("verdicts_applied"))
	})
}

// A stale resume still says how far user space has read: the episode's
// budget counts again from there, so a connection whose requests come
// faster than verdicts go back keeps its bytes.
func TestVerdictResumeStaleRenewsBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		l := len(loginReq)
		p := mustLoad(t, backend, Config{BurstBytes: uint32(2 * l)})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		for range 2 {
			mustWrite(t, c, []byte(loginReq))
			h.read(fd)
		}
		evs := rec.waitEvents(t, 2, fromClient(c))
		// User space has read the first request when the second is in:
		// stale, and it renews the budget to what is ahead of it.
		require.NoError(t, p.SetVerdict(evs[0].Sock, evs[0].Gen, Verdict{Kind: VerdictResume, InOff: uint64(l)}))
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		evs = rec.waitEvents(t, 3, fromClient(c))
		require.Equal(t, loginReq, string(evs[2].Data), "copied within the renewed budget")
		require.Zero(t, evs[2].Flags&FlagBudget)
		require.Equal(t, uint64(1), delta("verdicts_stale"))
		require.Zero(t, delta("truncated_budget"))
		// Without a verdict the budget runs out as before.
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		evs = rec.waitEvents(t, 4, fromClient(c))
		require.Equal(t, FlagBudget, evs[3].Flags)
		require.Empty(t, evs[3].Data)
	})
}

// A skip verdict stops the copy of a body; a read that straddles its end
// sends only what follows it.
func TestVerdictSkip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		head := "POST /upload HTTP/1.1\r\nContent-Length: 10000\r\n\r\n"
		mustWrite(t, c, []byte(head))
		h.read(fd)
		first := rec.waitEvents(t, 1, fromClient(c))[0]
		require.Equal(t, head, string(first.Data))
		skipTo := uint64(len(head) + 10000)
		require.NoError(t, p.SetVerdict(first.Sock, first.Gen, Verdict{Kind: VerdictSkip, SkipTo: skipTo}))

		body := strings.Repeat("b", 10000)
		next := "GET /next HTTP/1.1\r\n\r\n"
		for _, part := range []string{body[:4000], body[4000:8000], body[8000:] + next} {
			mustWrite(t, c, []byte(part))
			for n := 0; n < len(part); n += len(h.read(fd)) {
			}
		}
		evs := rec.waitEvents(t, 2, fromClient(c))
		require.Len(t, evs, 2, "no event for the skipped body")
		require.Equal(t, skipTo, evs[1].Off)
		require.Equal(t, next, string(evs[1].Data))
		require.Equal(t, uint32(len(next)), evs[1].Len)
		require.Equal(t, uint32(1), evs[1].Seq, "a deliberate skip leaves no seq gap")
		require.Equal(t, uint64(1), delta("verdicts_applied"))
	})
}

// An off verdict ends capture of the connection.
func TestVerdictOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		cp, first := episode(t, rec, h, lfd, port)
		conn := func(ev ConnEvent) bool { return idOf(ev) == idOf(first) }
		require.NoError(t, p.SetVerdict(first.Sock, first.Gen, Verdict{Kind: VerdictOff}))
		mustWrite(t, cp.c, []byte(loginReq))
		h.read(cp.fd)
		h.do("write", cp.fd, []byte(resp401))
		// Another connection, captured afterwards, shows the events had
		// time to arrive.
		episode(t, rec, h, lfd, port)
		time.Sleep(20 * time.Millisecond)
		require.Len(t, rec.events(conn), 2, "only the exchange before the verdict")
	})
}

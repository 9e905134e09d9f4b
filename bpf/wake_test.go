package bpf

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The reader is woken for the first final response of an episode, and
// for the first after a stale resume, whatever the batch holds; other
// events wait for the batch (WakeupBytes) or the tick, both out of reach
// here.
func TestPromptWake(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{WakeupBytes: 1 << 20, PromptWake: time.Nanosecond})
		rec := mustRunEvery(t, p, time.Hour)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		// episode waits for the login's request and response: only a
		// wakeup brings them.
		cp, first := episode(t, rec, h, lfd, port)
		require.Equal(t, uint64(1), delta("prompt_wakes"))
		conn := func(ev ConnEvent) bool { return idOf(ev) == idOf(first) }
		inOff := streamEnd(rec.events(dirOf(Ingress, conn)))
		mark := rec.mark()

		// A second exchange of the episode wakes nobody.
		mustWrite(t, cp.c, []byte(healthReq))
		h.read(cp.fd)
		h.do("write", cp.fd, []byte(resp200))
		time.Sleep(patience(200 * time.Millisecond))
		require.Empty(t, rec.eventsSince(mark, conn), "events of a later exchange wait for the batch")
		require.Equal(t, uint64(1), delta("prompt_wakes"))

		// A stale resume: the next response wakes the reader again, with
		// everything before it.
		require.NoError(t, p.SetVerdict(first.Sock, first.Gen, Verdict{Kind: VerdictResume, InOff: inOff}))
		mustWrite(t, cp.c, []byte(healthReq))
		h.read(cp.fd)
		h.do("write", cp.fd, []byte(resp200))
		rec.waitEventsSince(t, mark, 4, conn)
		require.Equal(t, uint64(1), delta("verdicts_stale"))
		require.Equal(t, uint64(2), delta("prompt_wakes"))
	})
}

// By default (PromptWake 0) no wakeup is forced: the episode's events
// wait for the batch.
func TestPromptWakeOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{WakeupBytes: 1 << 20})
		rec := mustRunEvery(t, p, time.Hour)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		cp := loginExchange(t, h, lfd, port)
		time.Sleep(patience(200 * time.Millisecond))
		require.Empty(t, rec.events(fromClient(cp.c)))
		require.Zero(t, delta("prompt_wakes"))
		require.Zero(t, delta("prompt_wakes_limited"))
		require.Equal(t, uint64(1), delta("episodes"))
	})
}

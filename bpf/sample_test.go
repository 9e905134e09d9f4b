package bpf

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAppendSampleRoundTrip: what AppendSample lays out, Dispatch reads
// back as the same event (IPv4 and IPv6 addresses, data and close).
func TestAppendSampleRoundTrip(t *testing.T) {
	ev := ConnEvent{
		Sock: 0xffff888012345678, Gen: 9, PID: 42, TID: 43, Task: 0xc000123456, Busy: 2, Other: 777,
		Dir: Egress, Seq: 5, Off: 4096, Len: 30, Time: 123456789, Flags: FlagBoundary | FlagEpisode,
		Role: RoleClient, Source: SourceTLS, Skipped: 3, Unanswered: 1,
		Data:  []byte("HTTP/1.1 200 OK\r\n"),
		Peer:  netip.MustParseAddrPort("127.0.0.2:5555"),
		Local: netip.MustParseAddrPort("[2001:db8::1]:8080"),
	}
	h := &countingHandler{}
	require.NoError(t, Dispatch(AppendSample(nil, ev, false), h))
	require.Equal(t, 1, h.data)
	require.Equal(t, ev, h.lastData)
	require.NoError(t, Dispatch(AppendSample(nil, ev, true), h))
	require.Equal(t, 1, h.closes)
}

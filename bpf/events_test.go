package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// countingHandler checks what dispatch hands over without keeping it.
type countingHandler struct {
	data, closes, execs, forks, exits, listens int
	lastData                                   ConnEvent
	lastProc                                   ProcEvent
}

func (h *countingHandler) Data(ev ConnEvent)   { h.data++; h.lastData = ev }
func (h *countingHandler) Close(ev ConnEvent)  { h.closes++; h.lastData = ev }
func (h *countingHandler) Exec(ev ProcEvent)   { h.execs++; h.lastProc = ev }
func (h *countingHandler) Fork(ev ProcEvent)   { h.forks++; h.lastProc = ev }
func (h *countingHandler) Exit(ev ProcEvent)   { h.exits++; h.lastProc = ev }
func (h *countingHandler) Listen(ev ProcEvent) { h.listens++; h.lastProc = ev }
func (h *countingHandler) Drained()            {}

// dataSample builds a ring buffer sample the way the kernel side lays it
// out.
func dataSample(payload string) []byte {
	var hdr lifecycleConnEvent
	hdr.Type = uint8(lifecycleEventTypeEVENT_DATA)
	hdr.Dir = uint8(Ingress)
	hdr.Flags = uint8(FlagEpisode | FlagBoundary)
	hdr.Role = uint8(RoleUnknown)
	hdr.Sock, hdr.Gen, hdr.Seq, hdr.Ts = 0xffff888012345678, 99, 3, 1000
	hdr.Pid, hdr.Tid = 42, 43
	hdr.Off, hdr.Skipped, hdr.Unanswered = 4096, 2, 1
	hdr.Len, hdr.Cap = uint32(len(payload))+10, uint32(len(payload))
	hdr.Peer.Family, hdr.Peer.Port = afInet, 5555
	copy(hdr.Peer.Addr[:], []byte{127, 0, 0, 2})
	hdr.Local.Family, hdr.Local.Port = afInet6, 8080
	hdr.Local.Addr[15] = 1
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unsafe.Sizeof(hdr))
	return append(append([]byte(nil), raw...), payload...)
}

func procSample(typ lifecycleEventType, filename string) []byte {
	var pe lifecycleProcessEvent
	pe.Type = uint8(typ)
	pe.Pid, pe.Ppid, pe.Port, pe.Start = 9, 8, 8080, 12345
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&pe.Filename[0])), len(pe.Filename)), filename)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&pe)), unsafe.Sizeof(pe))
	return append([]byte(nil), raw...)
}

func TestDispatch(t *testing.T) {
	h := &countingHandler{}
	require.NoError(t, dispatch(dataSample("POST /login HTTP/1.1\r\n"), h))
	require.Equal(t, 1, h.data)
	ev := h.lastData
	require.Equal(t, ConnEvent{
		Sock: 0xffff888012345678, Gen: 99, PID: 42, TID: 43, Dir: Ingress, Seq: 3,
		Off: 4096, Len: 32, Data: []byte("POST /login HTTP/1.1\r\n"), Time: 1000,
		Flags: FlagEpisode | FlagBoundary, Role: RoleUnknown, Source: SourceSocket,
		Skipped: 2, Unanswered: 1,
		Peer:  netip.MustParseAddrPort("127.0.0.2:5555"),
		Local: netip.MustParseAddrPort("[::1]:8080"),
	}, ev)

	// A sample that claims more bytes than it has is refused, not read past.
	short := dataSample("abc")
	binary.LittleEndian.PutUint32(short[unsafe.Offsetof(lifecycleConnEvent{}.Cap):], 1000)
	require.Error(t, dispatch(short, h))

	require.NoError(t, dispatch(procSample(lifecycleEventTypeEVENT_EXEC, "/usr/bin/python3\x00junk"), h))
	require.Equal(t, ProcEvent{PID: 9, PPID: 8, Start: 12345, Exe: "/usr/bin/python3"}, h.lastProc)
	require.NoError(t, dispatch(procSample(lifecycleEventTypeEVENT_LISTEN, ""), h))
	require.Equal(t, 1, h.listens)
	require.Equal(t, uint16(8080), h.lastProc.Port)
	require.NoError(t, dispatch(procSample(lifecycleEventTypeEVENT_FORK, ""), h))
	require.NoError(t, dispatch(procSample(lifecycleEventTypeEVENT_EXIT, ""), h))
	require.Equal(t, []int{1, 1, 1}, []int{h.execs, h.forks, h.exits})

	require.Error(t, dispatch(nil, h))
	require.Error(t, dispatch([]byte{77}, h))
}

func TestCounterNames(t *testing.T) {
	seen := map[string]bool{}
	for i, name := range CounterNames() {
		require.NotEmpty(t, name, "counter %d has no name", i)
		require.False(t, seen[name], "counter name %s twice", name)
		seen[name] = true
	}
}

func TestParseStartTicks(t *testing.T) {
	// The command may hold spaces and parentheses.
	stat := "1234 (a b) (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10"
	got, err := parseStartTicks([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, uint64(98765), got)
	_, err = parseStartTicks([]byte("1234 (x) S 1"))
	require.Error(t, err)
}

func TestRouteKeys(t *testing.T) {
	keys, err := routeKeys([]string{"/Login", "/login", "/API/"})
	require.NoError(t, err)
	require.Len(t, keys, 2, "case-folded duplicates are one key")
	require.Equal(t, "/login", string(keys[0].Data[:keys[0].Prefixlen/8]))
	require.Equal(t, "/api/", string(keys[1].Data[:keys[1].Prefixlen/8]))
	_, err = routeKeys(nil)
	require.Error(t, err)
	_, err = routeKeys([]string{"login"})
	require.Error(t, err)
	long, err := routeKeys([]string{"/" + string(make([]byte, 100))})
	require.NoError(t, err)
	require.Equal(t, uint32(len(long[0].Data)*8), long[0].Prefixlen)
}

// FuzzDispatch: whatever the ring buffer holds, dispatch never panics and
// never hands over bytes beyond the sample.
func FuzzDispatch(f *testing.F) {
	f.Add(dataSample("POST /login HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add(dataSample(""))
	f.Add(procSample(lifecycleEventTypeEVENT_LISTEN, ""))
	f.Add([]byte{byte(lifecycleEventTypeEVENT_CLOSE)})
	f.Add([]byte{byte(lifecycleEventTypeEVENT_EXEC), 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := &countingHandler{}
		if err := dispatch(raw, h); err == nil && h.data > 0 {
			if len(h.lastData.Data) > len(raw) {
				t.Fatalf("data longer than the sample")
			}
		}
	})
}

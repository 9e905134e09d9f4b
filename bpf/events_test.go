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
	data, closes, execs, forks, exits int
	lastData                          ConnEvent
	lastExe                           string
}

func (h *countingHandler) Data(ev ConnEvent)  { h.data++; h.lastData = ev }
func (h *countingHandler) Close(ev ConnEvent) { h.closes++ }
func (h *countingHandler) Exec(ev ProcEvent)  { h.execs++; h.lastExe = ev.Exe }
func (h *countingHandler) Fork(ProcEvent)     { h.forks++ }
func (h *countingHandler) Exit(ProcEvent)     { h.exits++ }

// sample builds a ring buffer sample the way the kernel side lays it out.
func dataSample(payload string) []byte {
	var hdr authprobeConnEvent
	hdr.Type = uint8(authprobeEventTypeEVENT_DATA)
	hdr.Dir = uint8(Ingress)
	hdr.Tgid, hdr.Fd, hdr.Gen, hdr.Seq, hdr.Ts = 42, 7, 99, 3, 1000
	hdr.Len, hdr.Cap = uint32(len(payload)), uint32(len(payload))
	hdr.Peer.Family, hdr.Peer.Port = afInet, 5555
	copy(hdr.Peer.Addr[:], []byte{127, 0, 0, 2})
	hdr.Local.Family, hdr.Local.Port = afInet6, 8080
	hdr.Local.Addr[15] = 1
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unsafe.Sizeof(hdr))
	return append(append([]byte(nil), raw...), payload...)
}

func TestDispatch(t *testing.T) {
	h := &countingHandler{}
	require.NoError(t, dispatch(dataSample("POST /login HTTP/1.1\r\n"), h))
	require.Equal(t, 1, h.data)
	ev := h.lastData
	require.Equal(t, uint32(42), ev.PID)
	require.Equal(t, int32(7), ev.FD)
	require.Equal(t, uint64(99), ev.Gen)
	require.Equal(t, uint32(3), ev.Seq)
	require.Equal(t, "POST /login HTTP/1.1\r\n", string(ev.Data))
	require.Equal(t, netip.MustParseAddrPort("127.0.0.2:5555"), ev.Peer)
	require.Equal(t, netip.MustParseAddrPort("[::1]:8080"), ev.Local)

	// A sample that claims more bytes than it has is refused, not read past.
	short := dataSample("abc")
	binary.LittleEndian.PutUint32(short[unsafe.Offsetof(authprobeConnEvent{}.Cap):], 1000)
	require.Error(t, dispatch(short, h))

	var pe authprobeProcessEvent
	pe.Type = uint8(authprobeEventTypeEVENT_EXEC)
	pe.Pid = 9
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&pe.Filename[0])), len(pe.Filename)), "/usr/bin/python3\x00junk")
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&pe)), unsafe.Sizeof(pe))
	require.NoError(t, dispatch(raw, h))
	require.Equal(t, "/usr/bin/python3", h.lastExe)

	require.Error(t, dispatch(nil, h))
	require.Error(t, dispatch([]byte{77}, h))
}

// FuzzDispatch: whatever the ring buffer holds, dispatch never panics and
// never hands over bytes beyond the sample.
func FuzzDispatch(f *testing.F) {
	f.Add(dataSample("POST /login HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add(dataSample(""))
	f.Add([]byte{byte(authprobeEventTypeEVENT_CLOSE)})
	f.Add([]byte{byte(authprobeEventTypeEVENT_EXEC), 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := &countingHandler{}
		if err := dispatch(raw, h); err == nil && h.data > 0 {
			if len(h.lastData.Data) > len(raw) {
				t.Fatalf("data longer than the sample")
			}
		}
	})
}

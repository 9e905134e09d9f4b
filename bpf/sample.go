package bpf

import (
	"net/netip"
	"unsafe"
)

// Dispatch decodes one ring buffer sample and hands it to h, as Run does
// for every record it reads. It lets recorded or synthesised samples be
// replayed through the same decoding (the whole-path benchmark of
// cmd/authprobe).
func Dispatch(raw []byte, h Handler) error { return dispatch(raw, h) }

// AppendSample appends ev laid out as the kernel writes a data sample (a
// close sample when closing), the inverse of Dispatch for connection
// events. It allocates only when dst must grow.
func AppendSample(dst []byte, ev ConnEvent, closing bool) []byte {
	var hdr lifecycleConnEvent
	hdr.Type = uint8(lifecycleEventTypeEVENT_DATA)
	if closing {
		hdr.Type = uint8(lifecycleEventTypeEVENT_CLOSE)
	}
	hdr.Dir, hdr.Flags, hdr.Role, hdr.Source = uint8(ev.Dir), uint8(ev.Flags), uint8(ev.Role), uint8(ev.Source)
	hdr.Sock, hdr.Gen, hdr.Seq = ev.Sock, ev.Gen, ev.Seq
	hdr.Pid, hdr.Tid, hdr.Task = ev.PID, ev.TID, ev.Task
	hdr.Len, hdr.Off, hdr.Ts = ev.Len, ev.Off, ev.Time
	hdr.Cap = uint32(len(ev.Data))
	hdr.Skipped, hdr.Unanswered, hdr.Busy, hdr.Other = ev.Skipped, ev.Unanswered, ev.Busy, ev.Other
	hdr.Peer.Addr, hdr.Peer.Port, hdr.Peer.Family = sockAddr(ev.Peer)
	hdr.Local.Addr, hdr.Local.Port, hdr.Local.Family = sockAddr(ev.Local)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unsafe.Sizeof(hdr))
	dst = append(dst, raw...)
	return append(dst, ev.Data...)
}

// sockAddr is the inverse of addrPort.
func sockAddr(ap netip.AddrPort) (a [16]uint8, port, family uint16) {
	switch addr := ap.Addr(); {
	case addr.Is4():
		b := addr.As4()
		copy(a[:], b[:])
		return a, ap.Port(), afInet
	case addr.Is6():
		return addr.As16(), ap.Port(), afInet6
	}
	return a, 0, 0
}

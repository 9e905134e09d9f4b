package bpf

import (
	"bytes"
	"fmt"
	"net/netip"
	"unsafe"
)

// Direction of captured bytes, as seen by the traced process.
type Direction uint8

const (
	Ingress Direction = 1 // read by the process
	Egress  Direction = 2 // written by the process
)

// ConnEvent is bytes moved on, or the close of, a captured connection.
// A connection is its socket: Sock and Gen name it for its whole life,
// whichever process or fd uses it (docs/capture.md).
type ConnEvent struct {
	Sock uint64 // struct sock address
	Gen  uint64 // differs for every connection that used Sock
	PID  uint32 // tgid that did the I/O
	TID  uint32 // thread that did the I/O
	// Task did the I/O: the goroutine (its g address) in a process watched
	// WithGoroutines, else the TID.
	Task uint64
	// Busy (client connections) is how many requests the kernel skipped
	// on Task and has not seen answered: requests in flight user space
	// never hears of.
	Busy uint32
	// Other (client connections) is the other direction's stream offset
	// when this I/O was done: what of it came before.
	Other uint64
	Dir   Direction
	// Seq counts every event the kernel tried to send on this connection
	// and direction; a gap means lost events.
	Seq uint32
	// Off is the stream offset (in Dir) of the first byte this event
	// covers, Len how many bytes it covers; Data is the captured prefix.
	Off   uint64
	Len   uint32
	Data  []byte // only valid during the handler call
	Time  uint64 // kernel monotonic ns
	Flags EventFlags
	Role  Role
	// Source says whether the bytes are the socket's or a TLS library's
	// plaintext.
	Source Source
	// Skipped (ingress) is how many whole requests the kernel proved
	// non-auth and skipped right before this event; Unanswered (on the
	// first event of an episode) how many of the skipped requests' responses
	// the kernel will still suppress.
	Skipped    uint32
	Unanswered uint32
	Peer       netip.AddrPort
	Local      netip.AddrPort
}

// EventFlags qualify a data event (C enum event_flags).
type EventFlags uint8

const (
	// FlagBoundary: the data starts at a message boundary the kernel knows.
	FlagBoundary EventFlags = 1 << 0
	// FlagEpisode: the first event of a capture episode.
	FlagEpisode EventFlags = 1 << 1
	// FlagUnreadable: Len bytes moved but the buffer could not be read.
	FlagUnreadable EventFlags = 1 << 2
	// FlagBudget: the episode's capture budget was exhausted.
	FlagBudget EventFlags = 1 << 3
)

// Role is who opened a connection, as far as the kernel knows.
type Role uint8

const (
	RoleUnknown Role = 0 // accepted, or predates the agent
	RoleClient  Role = 1 // the watched process connected it (capture/client.h)
)

// Source is where the bytes of an event come from.
type Source uint8

const (
	SourceSocket Source = 0 // the socket (plaintext)
	SourceTLS    Source = 1 // a TLS library's plaintext
)

// ProcEvent is a process lifecycle or listener event.
type ProcEvent struct {
	PID  uint32
	PPID uint32 // the parent, for forks
	Time uint64
	// Start is the process's start time in clock ticks since boot, as
	// /proc/PID/stat field 22 has it: with PID, the process's identity.
	Start uint64
	Exe   string // the exec'd file, for execs
	// Port is the TCP port a Listen event's process started listening on.
	Port uint16
}

// Handler receives events on the reading goroutine.
type Handler interface {
	Data(ev ConnEvent)
	Close(ev ConnEvent)
	Exec(ev ProcEvent)
	Fork(ev ProcEvent)
	Exit(ev ProcEvent)
	Listen(ev ProcEvent)
	// Drained: the events ready so far were all handed over (after each
	// batch Run reads, before it waits for more): what a handler gathers
	// over a batch, it can act on now.
	Drained()
}

var (
	connEventSize = int(unsafe.Sizeof(lifecycleConnEvent{}))
	procEventHead = int(unsafe.Offsetof(lifecycleProcessEvent{}.Filename))
)

// dispatch decodes one ring buffer sample. The layouts come from bpf2go's
// -type structs; samples are 8-byte aligned, so a cast is safe once the
// length is checked.
func dispatch(raw []byte, h Handler) error {
	if len(raw) == 0 {
		return fmt.Errorf("empty sample")
	}
	switch lifecycleEventType(raw[0]) {
	case lifecycleEventTypeEVENT_DATA, lifecycleEventTypeEVENT_CLOSE:
		if len(raw) < connEventSize {
			return fmt.Errorf("short connection event: %d bytes", len(raw))
		}
		hdr := (*lifecycleConnEvent)(unsafe.Pointer(&raw[0]))
		end := connEventSize + int(hdr.Cap)
		if end > len(raw) {
			return fmt.Errorf("connection event claims %d bytes, has %d", hdr.Cap, len(raw)-connEventSize)
		}
		ev := ConnEvent{
			Sock:       hdr.Sock,
			Gen:        hdr.Gen,
			PID:        hdr.Pid,
			TID:        hdr.Tid,
			Task:       hdr.Task,
			Busy:       hdr.Busy,
			Other:      hdr.Other,
			Dir:        Direction(hdr.Dir),
			Seq:        hdr.Seq,
			Off:        hdr.Off,
			Len:        hdr.Len,
			Data:       raw[connEventSize:end],
			Time:       hdr.Ts,
			Flags:      EventFlags(hdr.Flags),
			Role:       Role(hdr.Role),
			Source:     Source(hdr.Source),
			Skipped:    hdr.Skipped,
			Unanswered: hdr.Unanswered,
			Peer:       addrPort(hdr.Peer.Addr, hdr.Peer.Port, hdr.Peer.Family),
			Local:      addrPort(hdr.Local.Addr, hdr.Local.Port, hdr.Local.Family),
		}
		if hdr.Type == uint8(lifecycleEventTypeEVENT_DATA) {
			h.Data(ev)
		} else {
			h.Close(ev)
		}
	case lifecycleEventTypeEVENT_EXEC, lifecycleEventTypeEVENT_EXIT,
		lifecycleEventTypeEVENT_FORK, lifecycleEventTypeEVENT_LISTEN:
		if len(raw) < procEventHead {
			return fmt.Errorf("short process event: %d bytes", len(raw))
		}
		// The sample ends with the filename's bytes, so it may be shorter
		// than the struct: copy what there is, never point past it.
		var pe lifecycleProcessEvent
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&pe)), unsafe.Sizeof(pe)), raw)
		ev := ProcEvent{PID: pe.Pid, PPID: pe.Ppid, Time: pe.Ts, Start: pe.Start}
		switch lifecycleEventType(raw[0]) {
		case lifecycleEventTypeEVENT_EXEC:
			name := raw[procEventHead:min(len(raw), procEventHead+len(pe.Filename))]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			ev.Exe = string(name)
			h.Exec(ev)
		case lifecycleEventTypeEVENT_FORK:
			h.Fork(ev)
		case lifecycleEventTypeEVENT_LISTEN:
			ev.Port = pe.Port
			h.Listen(ev)
		default:
			h.Exit(ev)
		}
	default:
		return fmt.Errorf("unknown event type %d", raw[0])
	}
	return nil
}

const (
	afInet  = 2
	afInet6 = 10
)

func addrPort(a [16]uint8, port, family uint16) netip.AddrPort {
	switch family {
	case afInet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), port)
	case afInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
	}
	return netip.AddrPort{}
}

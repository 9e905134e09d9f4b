// Package ring reads a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) in place,
// waiting for the kernel's wakeups in Go's netpoller.
//
// It replaces cilium/ebpf's ringbuf.Reader on the agent's hot path for
// three measured reasons (docs/capture.md, "Reading the ring"):
//
//   - That reader waits in a blocking epoll_wait of its own. A goroutine
//     blocked in a syscall keeps its P in the syscall state, and the
//     runtime's sysmon thread, finding it there, retakes it and stays on
//     its shortest sleep (20 µs): under the bench's load sysmon took 12 %
//     of the agent's CPU, most of it context switches. Here the ring's fd
//     is in the netpoller, the waiting goroutine is parked like one
//     reading a socket, and sysmon backs off.
//   - Records are handed to the caller where the kernel wrote them, not
//     copied into a buffer first.
//   - The data pages are mapped once, not twice. The double mapping only
//     serves records that wrap past the end of the ring; those are copied
//     here instead. The kernel populates a ring mapping's page tables at
//     mmap, so the second mapping added the ring's whole size to the
//     resident set.
package ring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by a Read after (or during) Close.
var ErrClosed = errors.New("ring buffer reader closed")

// From struct bpf_ringbuf_hdr (kernel/bpf/ringbuf.c): every record starts
// with an 8-byte header whose first word is its length and state, and is
// padded to 8 bytes.
const (
	hdrSize    = 8
	busyBit    = 1 << 31 // reserved, not yet committed or discarded
	discardBit = 1 << 30 // discarded by the producer: skip it
)

// busySpins is how often a Read looks again at a record the kernel has
// reserved but not yet committed before it yields the thread. A producer
// holds a reservation for the length of one copy (bpf_ringbuf_output) or
// one program's run.
const busySpins = 64

// Reader reads one ring buffer. Read is for one goroutine at a time; Wake
// and Close may be called from any.
type Reader struct {
	file *os.File // a duplicate of the map's fd, non-blocking, in the netpoller
	conn syscall.RawConn

	meta []byte // the consumer page (read-write)
	view []byte // the producer page and the data pages, once (read-only)
	cons *uintptr
	prod *uintptr
	data []byte // the data pages
	mask uintptr

	wrapped  []byte // a record that wraps past the end, put back together
	deadline time.Time
	woken    atomic.Bool
	closed   atomic.Bool
	// mu is held by Read, and by Close before it unmaps: closing the file
	// ends a waiting Read, and Close then waits for it to let go.
	mu   sync.Mutex
	call waitCall
	wait func(uintptr) bool // r.drainWaiting
}

// Open maps m, a BPF_MAP_TYPE_RINGBUF, for reading. m stays the caller's:
// the reader holds a duplicate of its fd.
func Open(m *ebpf.Map) (*Reader, error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("open ring buffer reader: map %q is a %s, not a ring buffer", m.String(), m.Type())
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	if size < page || size&(size-1) != 0 {
		return nil, fmt.Errorf("open ring buffer reader: size %d is not a power of two of at least a page", size)
	}
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: duplicate the map's fd: %w", err)
	}
	r := &Reader{}
	r.wait = r.drainWaiting
	opened := false
	defer func() {
		if opened {
			return
		}
		if r.file != nil {
			_ = r.file.Close()
		} else {
			_ = unix.Close(fd)
		}
		r.unmap()
	}()
	if err := r.mapRing(fd, page, size); err != nil {
		return nil, err
	}
	// A non-blocking fd makes os.NewFile hand it to the netpoller (the
	// ring's fd is pollable: readable while records wait). The flag is
	// on the open file the map's fd shares; map operations ignore it.
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("open ring buffer reader: make the fd non-blocking: %w", err)
	}
	r.file = os.NewFile(uintptr(fd), "ringbuf:"+m.String())
	if r.conn, err = r.file.SyscallConn(); err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	// Deadlines work only on a file the netpoller took.
	if err := r.file.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("open ring buffer reader: the ring's fd cannot be polled: %w", err)
	}
	opened = true
	return r, nil
}

// mapRing maps the consumer page read-write, and the producer page with
// the data pages behind it read-only, once.
func (r *Reader) mapRing(fd, page, size int) error {
	var err error
	if r.meta, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("open ring buffer reader: map the consumer page: %w", err)
	}
	if r.view, err = unix.Mmap(fd, int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return fmt.Errorf("open ring buffer reader: map the data pages: %w", err)
	}
	r.cons = (*uintptr)(unsafe.Pointer(&r.meta[0]))
	r.prod = (*uintptr)(unsafe.Pointer(&r.view[0]))
	r.data = r.view[page:]
	r.mask = uintptr(size - 1)
	return nil
}

func (r *Reader) unmap() {
	if r.view != nil {
		_ = unix.Munmap(r.view)
	}
	if r.meta != nil {
		_ = unix.Munmap(r.meta)
	}
	r.view, r.meta, r.data, r.cons, r.prod = nil, nil, nil, nil, nil
}

// Size is the ring's data size in bytes.
func (r *Reader) Size() int { return len(r.data) }

// Read hands up to max committed records to h, oldest first. A record is
// only valid during its call (it is the kernel's memory, read-only, given
// back when h returns). When no record is ready, Read waits for the
// kernel's wakeup until deadline, and returns os.ErrDeadlineExceeded if
// it passes first (or once Wake was called). After Close it returns
// ErrClosed.
func (r *Reader) Read(deadline time.Time, max int, h func(record []byte)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return 0, ErrClosed
	}
	// What is there first: the wait below gives up at once once the
	// deadline has passed.
	if n, err := r.drain(max, h); n > 0 || err != nil {
		return n, err
	}
	if !deadline.Equal(r.deadline) {
		if err := r.file.SetReadDeadline(deadline); err != nil {
			return 0, r.fail(err)
		}
		r.deadline = deadline
	}
	// After the deadline is set: a Wake racing with this Read either sees
	// that deadline replaced, or is seen here.
	if r.woken.Load() {
		r.expire()
	}
	r.call = waitCall{max: max, h: h}
	err := r.conn.Read(r.wait)
	c := r.call
	r.call = waitCall{}
	if err != nil {
		return 0, r.fail(err)
	}
	return c.n, c.err
}

// waitCall is what the netpoller's callback of one Read drains with and
// found; r.wait, made once, reads and writes it (no closure per wait).
type waitCall struct {
	max int
	h   func([]byte)
	n   int
	err error
}

func (r *Reader) drainWaiting(uintptr) bool {
	r.call.n, r.call.err = r.drain(r.call.max, r.call.h)
	return r.call.n > 0 || r.call.err != nil
}

func (r *Reader) fail(err error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return os.ErrDeadlineExceeded
	}
	return fmt.Errorf("read ring buffer: %w", err)
}

// drain hands over up to max committed records and gives their space back
// to the kernel one by one, so its producers see the ring as it is.
func (r *Reader) drain(max int, h func([]byte)) (int, error) {
	n := 0
	cons := atomic.LoadUintptr(r.cons)
	for spins := 0; n < max; {
		prod := atomic.LoadUintptr(r.prod)
		if cons == prod {
			return n, nil
		}
		// The length is read atomically: it is what the kernel's commit
		// writes last.
		head := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if head&busyBit != 0 {
			// Records are given back in order: a reserved one holds up
			// the ones committed behind it.
			if spins++; spins%busySpins == 0 {
				runtime.Gosched()
			}
			continue
		}
		spins = 0
		size := uintptr(head &^ (busyBit | discardBit))
		next := cons + hdrSize + (size+7)&^7
		if next-cons > uintptr(len(r.data)) || next-cons > prod-cons {
			return n, fmt.Errorf("read ring buffer: a record of %d bytes at position %d overruns the producer position %d", size, cons, prod)
		}
		if head&discardBit == 0 {
			h(r.record((cons+hdrSize)&r.mask, size))
			n++
		}
		cons = next
		atomic.StoreUintptr(r.cons, cons)
	}
	return n, nil
}

// record is the size bytes at offset start of the data pages, put back
// together in wrapped when they run past the end.
func (r *Reader) record(start, size uintptr) []byte {
	if end := start + size; end <= uintptr(len(r.data)) {
		return r.data[start:end:end]
	}
	if uintptr(cap(r.wrapped)) < size {
		r.wrapped = make([]byte, size)
	}
	out := r.wrapped[:size]
	k := copy(out, r.data[start:])
	copy(out[k:], r.data)
	return out
}

// Wake makes a waiting Read return os.ErrDeadlineExceeded, and every
// later one as soon as it finds no record ready: a reader stopping
// drains what is there and returns.
func (r *Reader) Wake() {
	r.woken.Store(true)
	r.expire()
}

func (r *Reader) expire() {
	_ = r.file.SetReadDeadline(time.Unix(1, 0))
}

// Close releases the fd and the mappings; a waiting Read returns
// ErrClosed, and one handing out records finishes first: nothing is
// unmapped under h. A Read after Close never touches the ring.
func (r *Reader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	err := r.file.Close()
	r.mu.Lock()
	r.unmap()
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close ring buffer reader: %w", err)
	}
	return nil
}

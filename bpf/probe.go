// Package bpf loads and attaches authprobe's eBPF programs and reads what
// they capture. It takes the capture limits, the route prefixes and the PIDs
// to watch, and gives raw connection and process events: bytes moved on
// connections whose request head matched a route, connection closes, and
// process exec/fork/exit for discovery. It knows nothing of HTTP beyond the
// cheap in-kernel prefix check.
package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// Config is what the kernel side needs to know.
type Config struct {
	// CaptureBytes bounds the captured bytes of one request,
	// ResponseBytes those of one response; both at most MaxCapture.
	CaptureBytes  uint32
	ResponseBytes uint32
	// RingBufferBytes is the ring buffer size, a power of two multiple of
	// the page size. Default 8 MiB.
	RingBufferBytes uint32
	// WakeupBytes is how much data waits in the ring buffer before the
	// reader is woken (it also reads every tick). Default 64 KiB.
	WakeupBytes uint64
	// Routes are the request prefixes worth capturing.
	Routes []RoutePrefix
	// Logger gets a component=bpf attribute.
	Logger *slog.Logger
}

// MaxCapture is the most bytes one event can carry.
const MaxCapture = 16384

// tracepoints the agent attaches, by program.
func tracepoints(p *authprobePrograms) []struct {
	group, name string
	prog        *ebpf.Program
} {
	type tp = struct {
		group, name string
		prog        *ebpf.Program
	}
	return []tp{
		{"syscalls", "sys_exit_read", p.AuthprobeExitRead},
		{"syscalls", "sys_exit_readv", p.AuthprobeExitReadv},
		{"syscalls", "sys_exit_recvfrom", p.AuthprobeExitRecvfrom},
		{"syscalls", "sys_exit_recvmsg", p.AuthprobeExitRecvmsg},
		{"syscalls", "sys_exit_write", p.AuthprobeExitWrite},
		{"syscalls", "sys_exit_writev", p.AuthprobeExitWritev},
		{"syscalls", "sys_exit_sendto", p.AuthprobeExitSendto},
		{"syscalls", "sys_exit_sendmsg", p.AuthprobeExitSendmsg},
		{"syscalls", "sys_exit_accept", p.AuthprobeExitAccept},
		{"syscalls", "sys_exit_accept4", p.AuthprobeExitAccept4},
		{"syscalls", "sys_enter_connect", p.AuthprobeEnterConnect},
		{"syscalls", "sys_enter_close", p.AuthprobeEnterClose},
		{"sched", "sched_process_exec", p.AuthprobeSchedExec},
		{"sched", "sched_process_exit", p.AuthprobeSchedExit},
	}
}

// Probe is the loaded and attached set of programs and maps.
type Probe struct {
	log    *slog.Logger
	objs   authprobeObjects
	links  []link.Link
	reader *ringbuf.Reader
}

// Load loads the programs with cfg's knobs, fills the route filter and
// attaches every hook. Nothing is watched until Watch is called.
func Load(cfg Config) (*Probe, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CaptureBytes == 0 || cfg.CaptureBytes > MaxCapture {
		return nil, fmt.Errorf("capture bytes %d: must be 1..%d", cfg.CaptureBytes, MaxCapture)
	}
	if cfg.ResponseBytes == 0 || cfg.ResponseBytes > MaxCapture {
		return nil, fmt.Errorf("response bytes %d: must be 1..%d", cfg.ResponseBytes, MaxCapture)
	}
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = 8 << 20
	}
	if cfg.WakeupBytes == 0 {
		cfg.WakeupBytes = 64 << 10
	}
	if cfg.WakeupBytes >= uint64(cfg.RingBufferBytes)/2 {
		return nil, fmt.Errorf("wakeup bytes %d: must be under half the ring buffer (%d)", cfg.WakeupBytes, cfg.RingBufferBytes)
	}
	keys, err := routeKeys(cfg.Routes)
	if err != nil {
		return nil, err
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	spec, err := loadAuthprobe()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	for name, v := range map[string]any{
		"capture_bytes":  cfg.CaptureBytes,
		"response_bytes": cfg.ResponseBytes,
		"agent_tgid":     uint32(os.Getpid()),
		"wakeup_bytes":   cfg.WakeupBytes,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	spec.Maps["events"].MaxEntries = cfg.RingBufferBytes

	p := &Probe{log: cfg.Logger.With("component", "bpf")}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load bpf programs: %+v", verr)
		}
		return nil, fmt.Errorf("load bpf programs: %w", err)
	}
	if err := p.setup(keys); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Probe) setup(keys []authprobeRouteKey) error {
	for i, k := range keys {
		if err := p.objs.Routes.Put(&k, uint32(i)); err != nil {
			return fmt.Errorf("add route prefix %q: %w", string(k.Data[:k.Prefixlen/8]), err)
		}
	}
	for _, tp := range tracepoints(&p.objs.authprobePrograms) {
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if err != nil {
			return fmt.Errorf("attach tracepoint %s/%s: %w", tp.group, tp.name, err)
		}
		p.links = append(p.links, l)
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{
		Name:    "sched_process_fork",
		Program: p.objs.AuthprobeSchedFork,
	})
	if err != nil {
		return fmt.Errorf("attach raw tracepoint sched_process_fork: %w", err)
	}
	p.links = append(p.links, l)

	p.reader, err = ringbuf.NewReader(p.objs.Events)
	if err != nil {
		return fmt.Errorf("open ring buffer reader: %w", err)
	}
	p.log.Debug("attached", "hooks", len(p.links), "route_prefixes", len(keys))
	return nil
}

// Watch starts capturing for the process pid (its tgid). Children it forks
// from then on are watched by the kernel side itself.
func (p *Probe) Watch(pid uint32) error {
	if err := p.objs.Watched.Put(pid, uint32(0)); err != nil {
		return fmt.Errorf("watch pid %d: %w", pid, err)
	}
	return nil
}

// Unwatch stops capturing for pid and forgets its connections.
func (p *Probe) Unwatch(pid uint32) error {
	if err := p.objs.Watched.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unwatch pid %d: %w", pid, err)
	}
	p.ForgetConnections(pid)
	return nil
}

// ForgetConnections drops the kernel's connection state of an exited
// process, which the LRU would otherwise keep until pressure evicts it.
func (p *Probe) ForgetConnections(pid uint32) {
	var (
		key   authprobeConnKey
		stale []authprobeConnKey
	)
	it := p.objs.Conns.Iterate()
	var st authprobeConnState
	for it.Next(&key, &st) {
		if key.Tgid == pid {
			stale = append(stale, key)
		}
	}
	for _, k := range stale {
		_ = p.objs.Conns.Delete(&k)
	}
}

// Watched reports the PIDs the kernel side currently watches.
func (p *Probe) Watched() ([]uint32, error) {
	var (
		pid   uint32
		flags uint32
		pids  []uint32
	)
	it := p.objs.Watched.Iterate()
	for it.Next(&pid, &flags) {
		pids = append(pids, pid)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate watched pids: %w", err)
	}
	return pids, nil
}

// Run reads events until ctx is done or the probe is closed, handing each
// to h on this goroutine, and calls tick at least every tickEvery. One
// goroutine does all the work, so the stages behind h need no locks. Data
// slices are only valid during the call.
func (p *Probe) Run(ctx context.Context, h Handler, tickEvery time.Duration, tick func()) error {
	// The kernel side wakes the reader only every WakeupBytes; the
	// deadline drains quieter streams each tick. On cancel, Flush makes
	// the reader hand over what is left before Run returns.
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		_ = p.reader.Flush()
	})
	defer stop()
	var rec ringbuf.Record
	next := time.Now().Add(tickEvery)
	for {
		p.reader.SetDeadline(next)
		err := p.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if err := dispatch(rec.RawSample, h); err != nil {
				p.log.Warn("bad event", "error", err)
			}
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
			if stopping.Load() {
				tick()
				return nil
			}
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if now := time.Now(); !now.Before(next) {
			tick()
			next = now.Add(tickEvery)
		}
	}
}

// Close detaches every hook and releases the maps, in reverse order.
func (p *Probe) Close() error {
	var errs []error
	if p.reader != nil {
		if err := p.reader.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("close ring buffer reader: %w", err))
		}
	}
	for i := len(p.links) - 1; i >= 0; i-- {
		if err := p.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	p.links = nil
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close bpf objects: %w", err))
	}
	return errors.Join(errs...)
}

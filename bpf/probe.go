// Package bpf loads and attaches authprobe's eBPF programs and reads what
// they capture (docs/capture.md). It takes the capture limits, the route
// path prefixes and the processes to watch; it gives raw connection events
// (the bytes of capture episodes, with their stream offsets and sequence
// numbers, and connection closes) and process events (exec, fork, exit of
// watched processes, listeners of any process) for discovery. It knows
// nothing of HTTP beyond the kernel's cheap proof that a request is not an
// auth request; user space sends its own decisions back with SetVerdict.
//
// The kernel side is one object per hook family: lifecycle (always) and
// one capture backend ("sock" or "syscalls"), sharing their maps.
package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/authprobe/authprobe/bpf/ring"
)

// MaxCapture is the most bytes one event carries; a larger read or write
// is split into several events.
const MaxCapture = 16384

// Config is what the kernel side needs to know. Zero values take the
// defaults.
type Config struct {
	// Backend is the capture backend: "auto" (or empty) picks the
	// cheapest one this kernel loads; "sock" or "syscalls" forces one.
	Backend string
	// BurstBytes bounds the ingress bytes one capture episode copies
	// (default 256 KiB); ResponseBytes those of one response (default
	// 1 KiB).
	BurstBytes    uint32
	ResponseBytes uint32
	// RingBufferBytes is the ring buffer size, a power of two multiple of
	// the page size. Default 8 MiB.
	RingBufferBytes uint32
	// WakeupBytes is how much data waits in the ring buffer before the
	// reader is woken (it also reads every tick). Default 64 KiB.
	WakeupBytes uint64
	// PromptWake is the least time between two wakeups one CPU forces
	// for a response that may let user space end a capture episode (the
	// first final response head of an episode, or the first after a
	// stale resume): the verdict comes back before the connection's next
	// request instead of after the next batch. 0 (the default) or
	// negative: never forced. On the bench's 1 % login load it cut the
	// events per login from 43 to 3.5 but cost the agent a third more
	// CPU, for no throughput (README, "The prompt wake").
	PromptWake time.Duration
	// MaxConnections is how many connections of watched processes the
	// kernel tracks at once (default 65536); MaxWatched how many
	// processes it watches (default 8192). Beyond them, drop_ counters.
	MaxConnections uint32
	MaxWatched     uint32
	// MaxTasks is how many tasks (threads, goroutines) of watched
	// processes the kernel remembers the requests of (default 65536; the
	// least recently used is forgotten).
	MaxTasks uint32
	// Routes are the path prefixes of every auth route (the literal part
	// before the first wildcard, see PrefixOf), in any case: a request
	// whose path matches none of them, case-folded, may be skipped in the
	// kernel.
	Routes []string
	// TLS loads the TLS library probes (capture_tls.c); they are
	// attached per library file with AttachOpenSSL.
	TLS bool
	// Logger gets a component=bpf attribute.
	Logger *slog.Logger
}

func (cfg *Config) defaults() error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Backend == "" {
		cfg.Backend = BackendAuto
	}
	if cfg.BurstBytes == 0 {
		cfg.BurstBytes = 256 << 10
	}
	if cfg.ResponseBytes == 0 {
		cfg.ResponseBytes = 1024
	}
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = 8 << 20
	}
	if cfg.WakeupBytes == 0 {
		cfg.WakeupBytes = 64 << 10
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 65536
	}
	if cfg.MaxWatched == 0 {
		cfg.MaxWatched = 8192
	}
	if cfg.MaxTasks == 0 {
		cfg.MaxTasks = 65536
	}
	if cfg.WakeupBytes >= uint64(cfg.RingBufferBytes)/2 {
		return fmt.Errorf("wakeup bytes %d: must be under half the ring buffer (%d)", cfg.WakeupBytes, cfg.RingBufferBytes)
	}
	if cfg.BurstBytes > 1<<30 || cfg.ResponseBytes > 1<<30 {
		return fmt.Errorf("burst bytes %d, response bytes %d: at most 1 GiB", cfg.BurstBytes, cfg.ResponseBytes)
	}
	return nil
}

// Probe is the loaded and attached set of programs and maps.
type Probe struct {
	log     *slog.Logger
	backend BackendInfo
	// maps are shared by every loaded object, by name.
	maps map[string]*ebpf.Map
	// spawns are the goroutine-creation probes (go_runtime.c): loaded
	// once, attached per watched Go process (WatchOptions.Spawns).
	spawns *goSpawns
	colls  []*ebpf.Collection
	links  []link.Link
	// reader maps the ring buffer into this process: opened by Run, not
	// Load, so the ring size it adds to the resident set comes after
	// whatever start-up gave back (memtrim). closed is set by Close.
	readerMu sync.Mutex
	reader   *ring.Reader
	closed   bool
	// uprobes are the loaded programs of uprobe sections, by name:
	// attached per file, not at load.
	uprobes map[string]*ebpf.Program
	// goCookie numbers the Go executables' probe sets (go_tls_cfgs).
	goCookie atomic.Uint64
	// tlsErr says why the TLS probes asked for did not load.
	tlsErr error
}

// Load loads the lifecycle programs and a capture backend with cfg's
// knobs, fills the route filter and attaches every hook. Nothing is
// captured until Watch is called.
func Load(cfg Config) (*Probe, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	keys, err := routeKeys(cfg.Routes)
	if err != nil {
		return nil, err
	}
	candidates, err := backendsFor(cfg.Backend)
	if err != nil {
		return nil, err
	}
	return loadWith(cfg, keys, candidates)
}

// loadWith loads the lifecycle programs and the first of candidates that
// loads and attaches.
func loadWith(cfg Config, keys []lifecycleRouteKey, candidates []backend) (*Probe, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	// A kernel too old for any backend is refused in words, not with
	// the verifier's complaint about an unknown helper.
	if err := missingRequirements(CheckRequirements()); err != nil {
		return nil, err
	}

	p := &Probe{log: cfg.Logger.With("component", "bpf"), maps: map[string]*ebpf.Map{}}
	if err := p.load(cfg, keys, candidates); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Probe) load(cfg Config, keys []lifecycleRouteKey, candidates []backend) error {
	life, err := loadLifecycle()
	if err != nil {
		return fmt.Errorf("load lifecycle spec: %w", err)
	}
	if err := prepare(life, cfg); err != nil {
		return err
	}
	// The capture backend first: when it is refused, nothing else has been
	// attached yet.
	var hooks kernelHooks
	for _, b := range candidates {
		err := p.loadBackend(b, cfg, &hooks)
		if err == nil {
			p.backend.Name = b.name
			break
		}
		if len(candidates) == 1 {
			return fmt.Errorf("capture backend %s: %w", b.name, err)
		}
		p.log.Debug("capture backend refused", "backend", b.name, "error", err)
		p.backend.Refused = append(p.backend.Refused, BackendRefusal{Backend: b.name, Err: err})
	}
	if p.backend.Name == "" {
		return fmt.Errorf("no capture backend loads here: %w", p.backend.refusals())
	}
	if err := p.loadObject(life); err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	if cfg.TLS {
		// Without them only HTTPS goes unseen: a kernel that refuses them
		// (TLSErr says why) still captures plaintext.
		if err := p.loadTLS(cfg); err != nil {
			p.tlsErr = err
			p.log.Warn("TLS probes not loaded: HTTPS is not visible", "error", err)
		}
	}
	if err := p.loadSpawns(cfg); err != nil {
		// Go processes are then followed goroutine by goroutine only.
		p.log.Warn("goroutine probes not loaded", "error", err)
		p.spawns = nil
	}
	for i, k := range keys {
		if err := p.maps["routes"].Put(&k, uint32(i)); err != nil {
			return fmt.Errorf("add route prefix %q: %w", string(k.Data[:k.Prefixlen/8]), err)
		}
	}
	p.log.Debug("attached", "backend", p.backend.Name, "hooks", len(p.links), "route_prefixes", len(keys))
	return nil
}

// loadBackend loads and attaches one capture backend; on failure it
// leaves nothing of it behind. A backend whose hooks this kernel does not
// have is refused before the verifier sees it.
func (p *Probe) loadBackend(b backend, cfg Config, hooks *kernelHooks) error {
	spec, err := b.specHere(hooks)
	if err != nil {
		return err
	}
	if err := prepare(spec, cfg); err != nil {
		return err
	}
	nlinks, ncolls := len(p.links), len(p.colls)
	if err := p.loadObject(spec); err != nil {
		for _, l := range p.links[nlinks:] {
			_ = l.Close()
		}
		for _, c := range p.colls[ncolls:] {
			c.Close()
		}
		p.links, p.colls = p.links[:nlinks], p.colls[:ncolls]
		return err
	}
	return nil
}

// prepare sets the knobs and map sizes of an object's spec. Every object
// gets the same sizes, so that the maps they share are compatible.
func prepare(spec *ebpf.CollectionSpec, cfg Config) error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible cpus: %w", err)
	}
	vars := map[string]any{
		"burst_bytes":    cfg.BurstBytes,
		"response_bytes": cfg.ResponseBytes,
		"agent_tgid":     uint32(os.Getpid()),
		"wakeup_bytes":   cfg.WakeupBytes,
		"prompt_wake_ns": uint64(max(cfg.PromptWake, 0)), // 0: never forced
	}
	for name, v := range vars {
		if vs, ok := spec.Variables[name]; ok {
			if err := vs.Set(v); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
	}
	sizes := map[string]uint32{
		"events":          cfg.RingBufferBytes,
		"conns":           cfg.MaxConnections,
		"watched":         cfg.MaxWatched,
		"tasks":           cfg.MaxTasks,
		"tls_ssl":         cfg.MaxConnections,
		"tls_sock_owner":  cfg.MaxConnections,
		"go_spawned":      cfg.MaxTasks,
		"capture_scratch": uint32(cpus),
	}
	for name, n := range sizes {
		if m, ok := spec.Maps[name]; ok {
			m.MaxEntries = n
		}
	}
	return nil
}

// loadObject creates the maps of spec that no object created before it,
// loads its programs with every map shared, and attaches them.
func (p *Probe) loadObject(spec *ebpf.CollectionSpec) error {
	coll, err := p.newCollection(spec)
	if err != nil {
		return err
	}
	p.colls = append(p.colls, coll)
	for name, prog := range coll.Programs {
		l, err := attach(spec.Programs[name].SectionName, prog)
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		p.links = append(p.links, l)
	}
	return nil
}

// newCollection creates the maps of spec that no object created before
// it and loads its programs with every map shared; it attaches nothing.
func (p *Probe) newCollection(spec *ebpf.CollectionSpec) (*ebpf.Collection, error) {
	shared := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if isDataSection(name) {
			continue
		}
		m, ok := p.maps[name]
		if !ok {
			var err error
			if m, err = ebpf.NewMap(ms); err != nil {
				return nil, fmt.Errorf("create map %s: %w", name, err)
			}
			p.maps[name] = m
		}
		shared[name] = m
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: shared})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load programs: %+v", verr)
		}
		return nil, fmt.Errorf("load programs: %w", err)
	}
	return coll, nil
}

// isDataSection says whether a map holds a section of global variables
// (.rodata, .data, .bss): each object has its own.
func isDataSection(name string) bool {
	return len(name) > 0 && name[0] == '.'
}

// Backend reports the capture backend in use and why cheaper ones were
// refused.
func (p *Probe) Backend() BackendInfo {
	return p.backend
}

// Watch starts capturing for the process pid (its tgid) whose start time
// is startTicks, in clock ticks since boot (/proc/PID/stat field 22; see
// ProcStartTicks). The kernel checks the start time at every event, so a
// pid that is reused by another process is not captured. Children the
// process forks from then on are watched by the kernel side itself.
func (p *Probe) Watch(pid uint32, startTicks uint64) error {
	return p.WatchWith(pid, startTicks, WatchOptions{})
}

// WatchOptions say what the kernel needs to know about a watched
// process's runtime.
type WatchOptions struct {
	// Goroutines: a Go program on the register ABI (Go 1.17+ on amd64,
	// 1.18+ on arm64): its tasks are goroutines, read from the saved user
	// registers of each syscall, not threads (see GoRegABI).
	Goroutines bool
	// Spawns, for a Go program on the register ABI, attaches the
	// goroutine-creation probes to its runtime.newproc1, so that a
	// goroutine its handler spawns calls out as the handler does (nil:
	// none; only the handler's own goroutine is followed).
	Spawns *GoSpawnProbe
}

// WatchWith is Watch with options; its children inherit them.
func (p *Probe) WatchWith(pid uint32, startTicks uint64, opts WatchOptions) error {
	info := lifecycleWatchInfo{Start: startTicks}
	if opts.Goroutines {
		info.Flags |= uint32(lifecycleWatchFlagsWATCH_GO_REGABI)
	}
	// The kernel marks a process at its first SSL call; watching it again
	// keeps the mark. (Lost in the instant between the two calls, it is
	// set again at the process's next SSL call.)
	var old lifecycleWatchInfo
	if err := p.maps["watched"].Lookup(pid, &old); err == nil && old.Start == startTicks {
		info.Flags |= old.Flags & uint32(lifecycleWatchFlagsWATCH_SSL_CALLS)
	}
	if err := p.maps["watched"].Put(pid, info); err != nil {
		return fmt.Errorf("watch pid %d: %w", pid, err)
	}
	if opts.Goroutines && opts.Spawns != nil {
		// Without them the process is still watched, goroutine by
		// goroutine: what its spawned goroutines call is not captured.
		if err := p.spawns.attach(pid, *opts.Spawns); err != nil {
			p.log.Warn("goroutine creation not followed", "pid", pid, "error", err)
		}
	}
	return nil
}

// Unwatch stops capturing for pid. Its connections' kernel state goes
// with their sockets.
func (p *Probe) Unwatch(pid uint32) error {
	p.spawns.detach(pid)
	if err := p.maps["watched"].Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unwatch pid %d: %w", pid, err)
	}
	return nil
}

// WatchedProcess is a process the kernel side watches.
type WatchedProcess struct {
	PID        uint32
	StartTicks uint64
}

// Watched reports the processes the kernel side currently watches,
// including children it added itself.
func (p *Probe) Watched() ([]WatchedProcess, error) {
	var (
		pid  uint32
		info lifecycleWatchInfo
		out  []WatchedProcess
	)
	it := p.maps["watched"].Iterate()
	for it.Next(&pid, &info) {
		out = append(out, WatchedProcess{PID: pid, StartTicks: info.Start})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate watched pids: %w", err)
	}
	return out, nil
}

// SetVerdict hands user space's decision on the connection (sock, gen) to
// the kernel, which applies it at the connection's next I/O
// (docs/capture.md, "Verdicts"). A later verdict for the same socket
// replaces one not yet applied.
func (p *Probe) SetVerdict(sock, gen uint64, v Verdict) error {
	val := lifecycleVerdict{Gen: gen, InOff: v.InOff, OutOff: v.OutOff, SkipTo: v.SkipTo, Kind: uint32(v.Kind)}
	if err := p.maps["verdicts"].Put(sock, &val); err != nil {
		return fmt.Errorf("set verdict on socket %#x: %w", sock, err)
	}
	return nil
}

// Run reads events until ctx is done or the probe is closed, handing each
// to h on this goroutine, and calls tick at least every tickEvery. One
// goroutine does all the work, so the stages behind h need no locks. Data
// slices are only valid during the call.
func (p *Probe) Run(ctx context.Context, h Handler, tickEvery time.Duration, tick func()) error {
	rd, err := p.openReader()
	if err != nil || rd == nil {
		return err
	}
	// The kernel side wakes the reader only every WakeupBytes; the
	// deadline drains quieter streams each tick. On cancel, Wake makes
	// the reader hand over what is left before Run returns.
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		rd.Wake()
	})
	defer stop()
	handle := func(rec []byte) {
		if err := dispatch(rec, h); err != nil {
			p.log.Warn("bad event", "error", err)
		}
	}
	next := time.Now().Add(tickEvery)
	for {
		n, err := rd.Read(next, readBatch, handle)
		if n > 0 {
			h.Drained()
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if stopping.Load() {
				tick()
				return nil
			}
		case errors.Is(err, ring.ErrClosed):
			return nil
		default:
			return err
		}
		if now := time.Now(); !now.Before(next) {
			tick()
			if stopping.Load() {
				// A stream that never lets the ring run empty gets one
				// tick's worth of draining after the cancel.
				return nil
			}
			next = now.Add(tickEvery)
		}
	}
}

// readBatch is how many events Run handles between looks at the clock,
// so a steady stream still leaves room for ticks.
const readBatch = 256

// openReader maps the ring buffer on the first Run; after Close it gives
// no reader and no error.
func (p *Probe) openReader() (*ring.Reader, error) {
	p.readerMu.Lock()
	defer p.readerMu.Unlock()
	if p.closed {
		return nil, nil
	}
	if p.reader == nil {
		rd, err := ring.Open(p.maps["events"])
		if err != nil {
			return nil, err
		}
		p.reader = rd
	}
	return p.reader, nil
}

// Close detaches every hook and releases the programs and maps, in
// reverse order.
func (p *Probe) Close() error {
	var errs []error
	p.readerMu.Lock()
	p.closed = true
	if p.reader != nil {
		if err := p.reader.Close(); err != nil {
			errs = append(errs, err)
		}
		p.reader = nil
	}
	p.readerMu.Unlock()
	p.spawns.close()
	for i := len(p.links) - 1; i >= 0; i-- {
		if err := p.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	p.links = nil
	for i := len(p.colls) - 1; i >= 0; i-- {
		p.colls[i].Close()
	}
	p.colls = nil
	for name, m := range p.maps {
		if err := m.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close map %s: %w", name, err))
		}
	}
	p.maps = nil
	return errors.Join(errs...)
}

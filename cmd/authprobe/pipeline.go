package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/cmd/authprobe/internal/targets"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/spanbuilder"
)

// sink receives finished auth spans (the exporter, the detector).
type sink func(spanbuilder.Span)

// watcher is the kernel side's view of targets and connections: which
// processes it captures, and user space's verdicts on connections.
type watcher interface {
	WatchWith(pid uint32, startTicks uint64, opts bpf.WatchOptions) error
	Unwatch(pid uint32) error
	SetVerdict(sock, gen uint64, v bpf.Verdict) error
}

// pipeline connects the stages on the probe's reading goroutine: events
// become chunks, chunks exchanges, exchanges spans, and the decoder's
// verdicts go back to the kernel. Only stats cross to other goroutines,
// through snapshot.
type pipeline struct {
	log     *slog.Logger
	watcher watcher
	dec     *decoder.Decoder
	builder *spanbuilder.Builder
	chain   *spanbuilder.Chain
	spans   []spanbuilder.Span // reused by deliver
	// pending are the verdicts of the batch of events being read.
	pending *verdictBatch
	sinks   []sink
	clock   bpf.KernelClock
	matcher *targets.Matcher
	self    uint32 // the agent never watches itself
	// startTicks reads a process's start time (bpf.ProcStartTicks).
	startTicks func(pid int) (uint64, error)
	// goSpawns: Go processes get goroutine-creation probes.
	goSpawns bool
	// lostEvents reads how many kernel events were lost so far; a rise
	// means exec or listen events may be among them, so /proc is scanned.
	lostEvents func() uint64

	procs       map[uint32]targets.Process
	nextRescan  time.Time
	lostAtCheck uint64

	ready atomic.Bool // set once attached and the first scan is done

	mu   sync.Mutex
	snap pipelineStats
}

// pipelineStats is what the metrics endpoint reads.
type pipelineStats struct {
	Decoder       decoder.Stats
	Builder       spanbuilder.Stats
	Chain         spanbuilder.ChainStats
	EventsRead    uint64
	UnknownPID    uint64
	Watched       int
	LastTick      time.Time
	WatchFailures uint64
	// WatchRaces are processes that exited (or whose PID was reused)
	// between being matched and being watched: forgotten again.
	WatchRaces     uint64
	VerdictsSent   uint64
	VerdictsFailed uint64
	// VerdictsMerged were folded into a later verdict of their socket in
	// the same batch of events (verdictBatch): never written on their own.
	VerdictsMerged uint64
	Rescans        uint64
	Panics         uint64
}

func newPipeline(log *slog.Logger, w watcher, dec *decoder.Decoder, b *spanbuilder.Builder,
	clock bpf.KernelClock, m *targets.Matcher, lostEvents func() uint64, sinks ...sink) *pipeline {
	return &pipeline{
		log:        log,
		watcher:    w,
		dec:        dec,
		builder:    b,
		chain:      spanbuilder.NewChain(b, spanbuilder.ChainConfig{}),
		sinks:      sinks,
		clock:      clock,
		matcher:    m,
		self:       uint32(os.Getpid()),
		startTicks: bpf.ProcStartTicks,
		lostEvents: lostEvents,
		procs:      map[uint32]targets.Process{},
		pending:    newVerdictBatch(),
	}
}

func (p *pipeline) stats() pipelineStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

// counting runs f on the stats under the lock.
func (p *pipeline) counting(f func(*pipelineStats)) {
	p.mu.Lock()
	f(&p.snap)
	p.mu.Unlock()
}

// survive keeps one bad event from taking the agent down: a bug in a stage
// costs that event (counted, logged without its bytes), not the node's
// visibility.
func (p *pipeline) survive(what string) {
	if r := recover(); r != nil {
		p.counting(func(s *pipelineStats) { s.Panics++ })
		p.log.Error("internal error; event dropped", "stage", what, "panic", fmt.Sprint(r))
	}
}

func (p *pipeline) Data(ev bpf.ConnEvent) {
	defer p.survive("data")
	p.counting(func(s *pipelineStats) { s.EventsRead++ })
	p.deliver(p.dec.Feed(decoder.Chunk{
		Conn:       connInfo(ev),
		PID:        ev.PID,
		TID:        ev.TID,
		Task:       ev.Task,
		Busy:       ev.Busy,
		Other:      ev.Other,
		Dir:        decoder.Direction(ev.Dir),
		Seq:        ev.Seq,
		Offset:     ev.Off,
		Time:       ev.Time,
		Len:        ev.Len,
		Data:       ev.Data,
		Flags:      decoder.ChunkFlags(ev.Flags),
		Skipped:    ev.Skipped,
		Unanswered: ev.Unanswered,
	}))
	p.queueVerdicts()
}

func (p *pipeline) Close(ev bpf.ConnEvent) {
	defer p.survive("close")
	p.counting(func(s *pipelineStats) { s.EventsRead++ })
	p.deliver(p.dec.Close(connInfo(ev).Key, ev.Time))
}

func connInfo(ev bpf.ConnEvent) decoder.ConnInfo {
	return decoder.ConnInfo{
		Key:   decoder.ConnKey{Sock: ev.Sock, Gen: ev.Gen},
		Peer:  ev.Peer,
		Local: ev.Local,
		Role:  decoder.Role(ev.Role),
		TLS:   ev.Source == bpf.SourceTLS,
	}
}

// queueVerdicts takes the decoder's decisions into the batch the kernel
// gets when the events read so far are handled (Drained).
func (p *pipeline) queueVerdicts() {
	for _, v := range p.dec.Verdicts() {
		p.pending.add(v)
	}
}

// Drained: every event ready so far was handled. The batch's verdicts go
// to the kernel now: a RESUME only applies while the connection has not
// moved since, so it is worth most when it is fresh, and one computed
// before later events of its connection in the same batch is stale.
func (p *pipeline) Drained() {
	defer p.survive("verdicts")
	p.sendVerdicts()
}

// sendVerdicts hands the batch's verdicts to the kernel.
func (p *pipeline) sendVerdicts() {
	vs, merged := p.pending.take()
	if len(vs) == 0 {
		return
	}
	var sent, failed uint64
	for _, v := range vs {
		err := p.watcher.SetVerdict(v.Key.Sock, v.Key.Gen, bpf.Verdict{
			Kind:   kernelVerdict(v.Kind),
			InOff:  v.InOff,
			OutOff: v.OutOff,
			SkipTo: v.SkipTo,
		})
		if err != nil {
			failed++
			continue
		}
		sent++
	}
	p.counting(func(s *pipelineStats) {
		s.VerdictsSent += sent
		s.VerdictsFailed += failed
		s.VerdictsMerged += merged
	})
}

func kernelVerdict(k decoder.VerdictKind) bpf.VerdictKind {
	var out bpf.VerdictKind
	if k&decoder.VerdictResume != 0 {
		out |= bpf.VerdictResume
	}
	if k&decoder.VerdictSkip != 0 {
		out |= bpf.VerdictSkip
	}
	if k&decoder.VerdictOff != 0 {
		out |= bpf.VerdictOff
	}
	return out
}

// Exec: a new program may be a target; a watched one may have stopped
// being one.
func (p *pipeline) Exec(ev bpf.ProcEvent) {
	proc, ok := p.matcher.Match(ev.PID, ev.Exe, nil)
	old, watched := p.procs[ev.PID]
	switch {
	case ok:
		proc.Start = ev.Start
		p.watch(proc)
	case watched && !old.Pinned:
		p.unwatch(ev.PID, "exec of a non-target "+ev.Exe)
	case watched:
		old.Exe = p.matcher.Exe(ev.PID)
		p.procs[ev.PID] = old
	}
}

// Fork: the kernel already watches the child (with its own start time);
// it inherits the parent's identity until it execs.
func (p *pipeline) Fork(ev bpf.ProcEvent) {
	parent, ok := p.procs[ev.PPID]
	if !ok {
		return
	}
	parent.PID, parent.Start, parent.Pinned = ev.PID, ev.Start, false
	p.procs[ev.PID] = parent
	p.updateWatched()
	p.log.Info("watching process", "pid", ev.PID, "parent", ev.PPID, "exe", parent.Exe)
}

// Exit: the kernel forgot the process when its last thread exited; so do
// we. Its connections end with their sockets' closes.
func (p *pipeline) Exit(ev bpf.ProcEvent) {
	proc, ok := p.procs[ev.PID]
	if !ok {
		return
	}
	if ev.Start != 0 && proc.Start != 0 && ev.Start != proc.Start {
		p.log.Debug("exit of an earlier process with this pid ignored", "pid", ev.PID, "start", ev.Start, "watched_start", proc.Start)
		return
	}
	p.forget(ev.PID, "exit event")
}

// forget drops a process that is gone, and what user space attached for
// it (the kernel forgot it at its exit). seen says how it was found gone:
// its exit event, or a scan of /proc that no longer lists it, when the
// exit event was lost or still waits in the ring behind the scan (the
// event then finds nothing to forget).
func (p *pipeline) forget(pid uint32, seen string) {
	delete(p.procs, pid)
	_ = p.watcher.Unwatch(pid)
	p.updateWatched()
	p.log.Debug("process exited", "pid", pid, "seen", seen)
}

// Listen: a process started listening; port targets are decided here, not
// by polling /proc.
func (p *pipeline) Listen(ev bpf.ProcEvent) {
	if !p.matcher.HasPortTargets() || ev.PID == p.self {
		return
	}
	if _, ok := p.procs[ev.PID]; ok {
		return
	}
	if proc, ok := p.matcher.Match(ev.PID, "", map[uint16]bool{ev.Port: true}); ok {
		proc.Start = ev.Start
		p.watch(proc)
	}
}

// watch starts capturing proc. The kernel checks the start time at every
// event; after the kernel has it, the start time is read again, so a
// process that exited (or whose PID was reused) in between is forgotten
// rather than kept as a dead entry.
func (p *pipeline) watch(proc targets.Process) {
	if proc.PID == p.self {
		return
	}
	if old, ok := p.procs[proc.PID]; ok && (proc.Start == 0 || old.Start == proc.Start) {
		proc.Start = old.Start
		p.procs[proc.PID] = proc
		return
	}
	if proc.Start == 0 {
		start, err := p.startTicks(int(proc.PID))
		if err != nil {
			p.counting(func(s *pipelineStats) { s.WatchRaces++ })
			return
		}
		proc.Start = start
	}
	opts := bpf.WatchOptions{Goroutines: goRegABI(proc.Exe)}
	if opts.Goroutines && p.goSpawns {
		var err error
		if opts.Spawns, err = goSpawnProbe(proc.PID); err != nil {
			p.log.Info("goroutines this process spawns are not followed", "pid", proc.PID, "error", err)
		}
	}
	if err := p.watcher.WatchWith(proc.PID, proc.Start, opts); err != nil {
		p.counting(func(s *pipelineStats) { s.WatchFailures++ })
		p.log.Warn("cannot watch process", "pid", proc.PID, "error", err)
		return
	}
	if now, err := p.startTicks(int(proc.PID)); err != nil || now != proc.Start {
		_ = p.watcher.Unwatch(proc.PID)
		p.counting(func(s *pipelineStats) { s.WatchRaces++ })
		p.log.Debug("process gone before it was watched", "pid", proc.PID)
		return
	}
	p.procs[proc.PID] = proc
	p.updateWatched()
	p.log.Info("watching process", "pid", proc.PID, "exe", proc.Exe, "service", proc.ServiceName)
	p.watchChildren(proc)
}

// watchChildren watches the children proc forked before the kernel had
// its watch (a pre-fork server's workers, forked right after it began
// listening): the kernel watches only those forked after.
func (p *pipeline) watchChildren(proc targets.Process) {
	for _, child := range childPIDs(proc.PID) {
		if _, ok := p.procs[child]; ok || child == p.self {
			continue
		}
		c := proc
		c.PID, c.Start, c.Pinned = child, 0, false
		c.Exe = p.matcher.Exe(child)
		p.watch(c)
	}
}

// childPIDs are the children of pid's threads, from /proc.
func childPIDs(pid uint32) []uint32 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []uint32
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.ParseUint(f, 10, 32); err == nil {
				out = append(out, uint32(n))
			}
		}
	}
	return out
}

func (p *pipeline) unwatch(pid uint32, why string) {
	if err := p.watcher.Unwatch(pid); err != nil {
		p.log.Warn("cannot unwatch process", "pid", pid, "error", err)
	}
	delete(p.procs, pid)
	p.updateWatched()
	p.log.Info("stopped watching process", "pid", pid, "reason", why)
}

func (p *pipeline) updateWatched() {
	n := len(p.procs)
	p.counting(func(s *pipelineStats) { s.Watched = n })
}

// deliver turns exchanges into spans for every sink. An exchange belongs
// to the process that read its request.
//
// The chain first learns of the request heads the decoder queued (ids
// are chosen there), then of the exchanges, then of the untracked
// requests that ended.
//
// Ownership: a span's strings point into its exchange's memory and its
// own, both reused for the exchanges and spans that come next. The sinks
// run here, one after the other, and none keeps the span past its call
// (the exporters encode it into their batch before Emit returns; the
// detector copies what it counts), so once the last sink returned the
// span is given back (Builder.Release) and, once every exchange of the
// call was, the exchanges (Decoder.Release). Nothing else holds them: the
// chain keeps ids and times, not strings of the request.
func (p *pipeline) deliver(exs []decoder.Exchange) {
	opened := p.dec.Opened()
	for i := range opened {
		p.chain.Opened(&opened[i])
	}
	for i := range exs {
		ex := &exs[i]
		proc, ok := p.procs[ex.PID]
		if !ok {
			// A child forked before we knew its parent, or a process that
			// exited: still a span, with what /proc tells.
			p.counting(func(s *pipelineStats) { s.UnknownPID++ })
			proc = targets.Process{PID: ex.PID, Exe: p.matcher.Exe(ex.PID)}
		}
		p.spans = p.chain.Exchange(ex, spanbuilder.Process{
			PID:         proc.PID,
			Exe:         proc.Exe,
			ServiceName: proc.ServiceName,
			Meta:        proc.Meta,
			Gateway:     proc.Gateway,
		}, p.spans[:0])
		for i := range p.spans {
			for _, emit := range p.sinks {
				emit(p.spans[i])
			}
			p.builder.Release(&p.spans[i])
		}
	}
	clear(p.spans)
	closed := p.dec.Closed()
	for i := range closed {
		p.chain.Closed(&closed[i])
	}
	p.dec.Release()
}

// tick runs on the reading goroutine between events: timeouts, the
// decoder's verdicts, discovery and the stats snapshot. Discovery is
// event-driven (exec, fork, listen); /proc is read again only when the
// kernel lost events that may have been among them.
func (p *pipeline) tick() {
	defer p.survive("tick")
	now0 := p.clock.Now()
	p.deliver(p.dec.Expire(now0))
	p.chain.Expire(now0)
	p.queueVerdicts()
	p.sendVerdicts()
	now := time.Now()
	if !now.Before(p.nextRescan) {
		p.nextRescan = now.Add(time.Second)
		if lost := p.lostEvents(); lost != p.lostAtCheck {
			p.lostAtCheck = lost
			p.counting(func(s *pipelineStats) { s.Rescans++ })
			p.scan(p.matcher.HasPortTargets())
		}
	}
	p.onPodChanges()
	dec, b, ch := p.dec.Stats(), p.builder.Stats(), p.chain.Stats()
	p.counting(func(s *pipelineStats) {
		s.Decoder, s.Builder, s.Chain, s.LastTick = dec, b, ch, now
	})
}

// scan walks /proc for targets not yet watched, and forgets watched
// processes that are gone (their exit event lost, or not read yet).
func (p *pipeline) scan(ports bool) {
	pids, err := p.matcher.PIDs()
	if err != nil {
		p.log.Warn("scan processes", "error", err)
		return
	}
	alive := make(map[uint32]bool, len(pids))
	for _, pid := range pids {
		alive[pid] = true
	}
	for pid := range p.procs {
		if !alive[pid] {
			p.forget(pid, "gone from /proc")
		}
	}
	var listening map[uint32]map[uint16]bool
	if ports {
		listening = p.matcher.ListeningPorts(pids)
	}
	for _, pid := range pids {
		if _, ok := p.procs[pid]; ok {
			continue
		}
		if proc, ok := p.matcher.Match(pid, "", listening[pid]); ok {
			p.watch(proc)
		}
	}
}

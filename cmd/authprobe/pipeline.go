package main

import (
	"fmt"
	"log/slog"
	"os"
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

// watcher is the kernel side's view of targets: which PIDs it watches.
type watcher interface {
	Watch(pid uint32) error
	Unwatch(pid uint32) error
	ForgetConnections(pid uint32)
}

// pipeline connects the stages on the probe's reading goroutine: events
// become chunks, chunks exchanges, exchanges spans. Only stats cross to
// other goroutines, through snapshot.
type pipeline struct {
	log     *slog.Logger
	watcher watcher
	dec     *decoder.Decoder
	builder *spanbuilder.Builder
	sinks   []sink
	clock   bpf.KernelClock
	matcher *targets.Matcher
	self    uint32 // the agent never watches itself

	procs        map[uint32]targets.Process
	nextPortScan time.Time
	nextExeScan  time.Time

	ready atomic.Bool // set once attached and the first scan is done

	mu   sync.Mutex
	snap pipelineStats
}

// pipelineStats is what the metrics endpoint reads.
type pipelineStats struct {
	Decoder       decoder.Stats
	Builder       spanbuilder.Stats
	EventsRead    uint64
	UnknownPID    uint64
	Watched       int
	LastTick      time.Time
	WatchFailures uint64
	Panics        uint64
}

func newPipeline(log *slog.Logger, w watcher, dec *decoder.Decoder, b *spanbuilder.Builder,
	clock bpf.KernelClock, m *targets.Matcher, sinks ...sink) *pipeline {
	return &pipeline{
		log:     log,
		watcher: w,
		dec:     dec,
		builder: b,
		sinks:   sinks,
		clock:   clock,
		matcher: m,
		self:    uint32(os.Getpid()),
		procs:   map[uint32]targets.Process{},
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
	p.finish(p.dec.Feed(decoder.Chunk{
		Conn: connInfo(ev),
		Dir:  decoder.Direction(ev.Dir),
		Seq:  ev.Seq,
		Time: ev.Time,
		Len:  ev.Len,
		Data: ev.Data,
	}))
}

func (p *pipeline) Close(ev bpf.ConnEvent) {
	defer p.survive("close")
	p.counting(func(s *pipelineStats) { s.EventsRead++ })
	p.finish(p.dec.Close(connInfo(ev).Key, ev.Time))
}

func connInfo(ev bpf.ConnEvent) decoder.ConnInfo {
	return decoder.ConnInfo{
		Key:   decoder.ConnKey{PID: ev.PID, FD: ev.FD, Gen: ev.Gen},
		Peer:  ev.Peer,
		Local: ev.Local,
	}
}

// Exec: a new program may be a target; a watched one may have stopped
// being one.
func (p *pipeline) Exec(ev bpf.ProcEvent) {
	proc, ok := p.matcher.Match(ev.PID, ev.Exe, nil)
	old, watched := p.procs[ev.PID]
	switch {
	case ok:
		p.watch(proc)
	case watched && !old.Pinned:
		p.unwatch(ev.PID, "exec of a non-target "+ev.Exe)
	case watched:
		old.Exe = p.matcher.Exe(ev.PID)
		p.procs[ev.PID] = old
	}
}

// Fork: the kernel already watches the child; it inherits the parent's
// identity until it execs.
func (p *pipeline) Fork(ev bpf.ProcEvent) {
	parent, ok := p.procs[ev.PPID]
	if !ok {
		return
	}
	parent.PID = ev.PID
	parent.Pinned = false
	p.procs[ev.PID] = parent
	p.updateWatched()
}

func (p *pipeline) Exit(ev bpf.ProcEvent) {
	if _, ok := p.procs[ev.PID]; !ok {
		return
	}
	delete(p.procs, ev.PID)
	p.finish(p.dec.ForgetPID(ev.PID))
	p.watcher.ForgetConnections(ev.PID)
	p.updateWatched()
	p.log.Debug("process exited", "pid", ev.PID)
}

func (p *pipeline) watch(proc targets.Process) {
	if proc.PID == p.self {
		return
	}
	if _, ok := p.procs[proc.PID]; ok {
		p.procs[proc.PID] = proc
		return
	}
	if err := p.watcher.Watch(proc.PID); err != nil {
		p.counting(func(s *pipelineStats) { s.WatchFailures++ })
		p.log.Warn("cannot watch process", "pid", proc.PID, "error", err)
		return
	}
	p.procs[proc.PID] = proc
	p.updateWatched()
	p.log.Info("watching process", "pid", proc.PID, "exe", proc.Exe, "service", proc.ServiceName)
}

func (p *pipeline) unwatch(pid uint32, why string) {
	if err := p.watcher.Unwatch(pid); err != nil {
		p.log.Warn("cannot unwatch process", "pid", pid, "error", err)
	}
	delete(p.procs, pid)
	p.finish(p.dec.ForgetPID(pid))
	p.updateWatched()
	p.log.Info("stopped watching process", "pid", pid, "reason", why)
}

func (p *pipeline) updateWatched() {
	n := len(p.procs)
	p.counting(func(s *pipelineStats) { s.Watched = n })
}

// finish turns exchanges into spans for every sink.
func (p *pipeline) finish(exs []decoder.Exchange) {
	for i := range exs {
		ex := &exs[i]
		proc, ok := p.procs[ex.Conn.Key.PID]
		if !ok {
			// A child forked before we knew its parent, or a process that
			// exited: still a span, with what /proc tells.
			p.counting(func(s *pipelineStats) { s.UnknownPID++ })
			proc = targets.Process{PID: ex.Conn.Key.PID, Exe: p.matcher.Exe(ex.Conn.Key.PID)}
		}
		span, ok := p.builder.Build(ex, spanbuilder.Process{
			PID:         proc.PID,
			Exe:         proc.Exe,
			ServiceName: proc.ServiceName,
			Meta:        proc.Meta,
		})
		if !ok {
			continue
		}
		for _, emit := range p.sinks {
			emit(span)
		}
	}
}

// tick runs on the reading goroutine between events: timeouts, discovery
// and the stats snapshot.
func (p *pipeline) tick() {
	defer p.survive("tick")
	p.finish(p.dec.Expire(p.clock.Now()))
	now := time.Now()
	if p.matcher.HasPortTargets() && !now.Before(p.nextPortScan) {
		p.scan(true)
		p.nextPortScan = now.Add(500 * time.Millisecond)
	} else if !now.Before(p.nextExeScan) {
		// Exec events find new processes at once; the scan catches any
		// whose event was lost.
		p.scan(false)
		p.nextExeScan = now.Add(10 * time.Second)
	}
	p.onPodChanges()
	dec, b := p.dec.Stats(), p.builder.Stats()
	p.counting(func(s *pipelineStats) {
		s.Decoder, s.Builder, s.LastTick = dec, b, now
	})
}

// scan walks /proc for targets not yet watched.
func (p *pipeline) scan(ports bool) {
	pids, err := p.matcher.PIDs()
	if err != nil {
		p.log.Warn("scan processes", "error", err)
		return
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

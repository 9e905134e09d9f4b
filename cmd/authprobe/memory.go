package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authprobe/authprobe/cmd/authprobe/internal/memtrim"
	"github.com/authprobe/authprobe/config"
)

// memory keeps the agent's resident set to what the steady path needs
// (README, "Memory and GC"). The steady path allocates nothing per span,
// so what raises the peak is the rare heavy work: start-up (loading the
// programs parses the kernel's BTF, package initialisation touches most
// of the binary) and the analysis of each new TLS file (a Go
// executable's DWARF is read whole). Each runs under a tight heap
// target, and afterwards the freed heap and the executable pages only it
// touched are given back.
type memory struct {
	log *slog.Logger
	// userGOGC: GOGC in the environment wins over every setting here.
	userGOGC bool
	// parsed is set by a file analysis and cleared by the give-back
	// after it.
	parsed atomic.Bool

	mu sync.Mutex
	// target is the heap target outside file analyses (start-up's, then
	// the steady one); parsing counts the analyses running, which hold
	// theirs until the last one ends, so start-up ending during one
	// does not leave the agent at the wrong target.
	target  int
	parsing int
}

// Heap targets (GOGC). Start-up at 25 left a peak of 55 MiB against 73
// at 200 (2026-12-03); the steady 100 costs no measurable CPU per span
// because spans do not allocate. A file analysis is short and mostly
// garbage: at 10 its heap stays near what it holds live.
const (
	gogcStartup = 25
	gogcSteady  = 100
	gogcParse   = 10
)

// tuneMemory sets the start-up heap target and the soft memory limit:
// the steady Go heap with room, plus the export buffer, which fills
// during a collector outage. GOGC and GOMEMLIMIT in the environment win.
// Call settle once the agent runs.
func tuneMemory(log *slog.Logger, cfg *config.Config) *memory {
	m := &memory{log: log, userGOGC: os.Getenv("GOGC") != ""}
	m.setTarget(gogcStartup)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48<<20 + int64(cfg.Exporter.BufferSize))
	}
	log.Debug("gc tuned", "memory_limit", debug.SetMemoryLimit(-1)) // a negative limit only reads it
	return m
}

// settle ends start-up: the steady heap target, and the memory start-up
// used given back.
func (m *memory) settle() {
	m.setTarget(gogcSteady)
	m.giveBack("start-up")
}

// setTarget sets the heap target outside file analyses; one running
// keeps its own until it ends.
func (m *memory) setTarget(gogc int) {
	if m.userGOGC {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.target = gogc
	if m.parsing == 0 {
		debug.SetGCPercent(gogc)
	}
}

// parse runs one file analysis (uprobe.Config.Parse) under the parse
// heap target. It runs on the TLS goroutine; the pipeline does not
// allocate, so the brief process-wide target costs it nothing.
func (m *memory) parse(analyse func()) {
	if !m.userGOGC {
		m.mu.Lock()
		m.parsing++
		debug.SetGCPercent(gogcParse)
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.parsing--; m.parsing == 0 {
				debug.SetGCPercent(m.target)
			}
		}()
	}
	analyse()
	m.parsed.Store(true)
}

// afterParse gives back what the file analyses since the last call used;
// nothing when there were none.
func (m *memory) afterParse() {
	if m.parsed.Swap(false) {
		m.giveBack("file analysis")
	}
}

func (m *memory) giveBack(after string) {
	debug.FreeOSMemory() // collects first
	dropped, err := memtrim.Executable()
	if err != nil {
		m.log.Warn("could not give back unused executable pages", "after", after, "error", err)
		return
	}
	m.log.Debug("memory given back", "after", after, "executable_bytes", dropped)
}

// residentMetric is authprobe_resident_bytes{part}: what the resident set
// (process_resident_memory_bytes) is made of, read from /proc/self/smaps
// at each scrape.
type residentMetric struct{ desc *prometheus.Desc }

func newResidentMetric() residentMetric {
	return residentMetric{desc: prometheus.NewDesc("authprobe_resident_bytes",
		"Resident memory by part: executable (the binary's pages), bpf_maps (BPF maps mapped in: the ring buffer), other (heap, stacks).",
		[]string{"part"}, nil)}
}

func (r residentMetric) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r residentMetric) Collect(ch chan<- prometheus.Metric) {
	p, err := memtrim.Resident()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(r.desc, err)
		return
	}
	for _, v := range []struct {
		part  string
		bytes uint64
	}{{"executable", p.Executable}, {"bpf_maps", p.BPFMaps}, {"other", p.Other}} {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(v.bytes), v.part)
	}
}

// Package detect turns auth spans into detection metrics inside the agent,
// so that brute force and credential stuffing can be alerted on without a
// username ever becoming a metric label. It takes spanbuilder.Span values
// and gives counters of attempts by route, result and failure reason, of
// requests crafted to be read differently by different parsers by route
// and kind, and per client subnet an estimate of the distinct usernames that failed over
// a sliding window (a HyperLogLog sketch per sub-window, merged on read),
// as a prometheus.Collector and as OpenTelemetry observable instruments.
// Memory is bounded: at most MaxSources subnets are tracked, the one with
// the lowest estimate evicted first. It never logs.
package detect

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// Defaults for a zero Config.
const (
	DefaultWindow     = 10 * time.Minute
	DefaultMaxSources = 10000
	DefaultTopSources = 50
)

const (
	// subWindows splits Window; a failure is counted for at least Window
	// and less than Window + Window/subWindows, because the sketch of the
	// sub-window it fell in is dropped only once that whole sub-window is
	// older than Window.
	subWindows = 4
	slots      = subWindows + 1

	// maxAttemptSeries caps the attempt counter's label sets. Past it a new
	// set counts under failure_reason="other" with its route and result;
	// routes come from the configuration, but should more than
	// maxOverflowSeries such sets pile up the route becomes "other" too.
	// So at most 1000 + 100 + 4 (results) series ever exist.
	maxAttemptSeries  = 1000
	maxOverflowSeries = 100
	overflowLabel     = "other"

	// maxAmbiguousSeries caps the ambiguous-request counter the same way:
	// past it a new set counts under route="other", and past
	// maxAmbiguousSeries+maxOverflowSeries under kind="other" too. Kinds
	// are a short fixed list (secattr's Ambiguous*), routes configured.
	maxAmbiguousSeries = 200
)

// Config sets the detector's window and memory bounds. Zero fields take
// the defaults.
type Config struct {
	// Window is the sliding window for distinct failed usernames.
	Window time.Duration
	// MaxSources bounds the tracked client subnets (and so the memory).
	MaxSources int
	// TopSources is how many subnets, highest estimates first, are exported.
	TopSources int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Detector aggregates auth spans. Its methods are safe for concurrent use.
type Detector struct {
	cfg   Config
	width time.Duration // one sub-window
	start time.Time     // epoch 0 begins here

	attemptsDesc, failedDesc, trackedDesc, evictedDesc, ambiguousDesc, denialsDesc *prometheus.Desc

	mu        sync.Mutex
	epoch     int64 // current sub-window, counted from start
	attempts  map[attemptKey]uint64
	ambiguous map[ambiguousKey]uint64
	denials   map[ambiguousKey]uint64 // kind is the decision layer
	sources   map[string]*source
	byEst     sourceHeap // all sources, lowest estimate on top
	evicted   uint64
}

type attemptKey struct {
	route, result, reason string
}

type ambiguousKey struct {
	route, kind string
}

// source is one client subnet: a sketch per sub-window, in a ring indexed
// by epoch modulo slots.
type source struct {
	subnet string
	slots  [slots]sketch
	// est is the merged estimate when !dirty. Between window advances
	// sketches only grow, so a stale est is a lower bound, which is what
	// the eviction heap needs (see evictOne).
	est   float64
	dirty bool
	last  int64 // epoch of the last failure: older goes first on ties
}

// New returns a Detector for cfg.
func New(cfg Config) (*Detector, error) {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	if cfg.TopSources == 0 {
		cfg.TopSources = DefaultTopSources
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Window < time.Second:
		return nil, fmt.Errorf("detect window %v: must be at least 1s", cfg.Window)
	case cfg.MaxSources < 0:
		return nil, fmt.Errorf("detect max sources %d: must not be negative", cfg.MaxSources)
	case cfg.TopSources < 0:
		return nil, fmt.Errorf("detect top sources %d: must not be negative", cfg.TopSources)
	}
	d := &Detector{
		cfg:       cfg,
		width:     cfg.Window / subWindows,
		start:     cfg.Now(),
		attempts:  make(map[attemptKey]uint64),
		ambiguous: make(map[ambiguousKey]uint64),
		denials:   make(map[ambiguousKey]uint64),
		sources:   make(map[string]*source),
	}
	d.attemptsDesc, d.failedDesc, d.trackedDesc, d.evictedDesc, d.ambiguousDesc, d.denialsDesc = promDescs()
	return d, nil
}

// Observe counts one auth span, and each kind of ambiguity it names.
// Failures that carry a username key and a client subnet also go into
// that subnet's distinct-username sketch; an ambiguous username has no
// key, so an attacker who hides usernames that way shows up in the
// ambiguous counter instead.
//
// A call's span (a CLIENT span of the traced process) is no auth attempt
// and is not counted; a denial is counted by the layer that decided it
// (auth.decision.layer).
func (d *Detector) Observe(s spanbuilder.Span) {
	if s.Kind == trace.SpanKindClient {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance(d.cfg.Now())
	d.countAttempt(s.Name, s.Result, s.FailureReason)
	for _, kind := range s.Ambiguous {
		d.countPair(d.ambiguous, s.Name, kind)
	}
	if s.Layer != "" {
		d.countPair(d.denials, s.Name, s.Layer)
	}
	if s.Result != spanbuilder.ResultFailure || s.UserKey == 0 || s.ClientSubnet == "" {
		return
	}
	src := d.sources[s.ClientSubnet]
	if src == nil {
		if len(d.sources) >= d.cfg.MaxSources {
			if !d.evictOne() {
				return
			}
		}
		src = &source{subnet: strings.Clone(s.ClientSubnet)}
		d.sources[src.subnet] = src
		heap.Push(&d.byEst, src)
	}
	if src.slots[d.epoch%slots].insert(mix(s.UserKey)) {
		src.dirty = true
	}
	src.last = d.epoch
}

func (d *Detector) countAttempt(route, result, reason string) {
	switch result {
	case spanbuilder.ResultSuccess, spanbuilder.ResultFailure, spanbuilder.ResultError, spanbuilder.ResultUnknown:
	default:
		result = spanbuilder.ResultUnknown
	}
	k := attemptKey{route, result, reason}
	if _, ok := d.attempts[k]; !ok && len(d.attempts) >= maxAttemptSeries {
		k.reason = overflowLabel
		if _, ok := d.attempts[k]; !ok && len(d.attempts) >= maxAttemptSeries+maxOverflowSeries {
			k.route = overflowLabel
		}
	}
	if _, ok := d.attempts[k]; !ok {
		// Clone so the map does not pin whatever buffer the span's strings
		// were cut from.
		k = attemptKey{strings.Clone(k.route), k.result, strings.Clone(k.reason)}
	}
	d.attempts[k]++
}

// countPair counts one (route, kind) in m, bounded as the ambiguous
// counter is (kinds are short fixed lists: ambiguities, decision layers).
func (d *Detector) countPair(m map[ambiguousKey]uint64, route, kind string) {
	k := ambiguousKey{route, kind}
	if _, ok := m[k]; !ok && len(m) >= maxAmbiguousSeries {
		k.route = overflowLabel
		if _, ok := m[k]; !ok && len(m) >= maxAmbiguousSeries+maxOverflowSeries {
			k.kind = overflowLabel
		}
	}
	if _, ok := m[k]; !ok {
		k = ambiguousKey{strings.Clone(k.route), strings.Clone(k.kind)}
	}
	m[k]++
}

// advance moves the window to now: the sketches of sub-windows that fell
// out are dropped, sources left empty are forgotten (expiry, not eviction),
// and every estimate is recomputed so the heap is exact again. This costs
// one pass over all sketches once per sub-window.
func (d *Detector) advance(now time.Time) {
	e := int64(now.Sub(d.start) / d.width)
	if e <= d.epoch { // same sub-window, or the clock went back
		return
	}
	steps := min(e-d.epoch, slots)
	for subnet, src := range d.sources {
		for i := int64(1); i <= steps; i++ {
			src.slots[(d.epoch+i)%slots].reset()
		}
		if src.empty() {
			delete(d.sources, subnet)
			continue
		}
		src.recompute()
	}
	d.epoch = e
	d.byEst = d.byEst[:0]
	for _, src := range d.sources {
		d.byEst = append(d.byEst, src)
	}
	heap.Init(&d.byEst)
}

// evictOne drops the source with the lowest estimate and reports whether
// there was one. Cached estimates only ever lag behind growth, so a clean
// top of the heap is the true minimum; a dirty one is refreshed and sifted
// down first.
func (d *Detector) evictOne() bool {
	for len(d.byEst) > 0 {
		top := d.byEst[0]
		if top.dirty {
			top.recompute()
			heap.Fix(&d.byEst, 0)
			continue
		}
		heap.Pop(&d.byEst)
		delete(d.sources, top.subnet)
		d.evicted++
		return true
	}
	return false
}

func (s *source) empty() bool {
	for i := range s.slots {
		if !s.slots[i].empty() {
			return false
		}
	}
	return true
}

func (s *source) recompute() {
	var regs [registers]uint8
	for i := range s.slots {
		s.slots[i].mergeInto(&regs)
	}
	s.est = estimate(&regs)
	s.dirty = false
}

// sourceHeap is a min-heap of sources by cached estimate.
type sourceHeap []*source

func (h sourceHeap) Len() int { return len(h) }

func (h sourceHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.est != b.est {
		return a.est < b.est
	}
	if a.last != b.last {
		return a.last < b.last
	}
	return a.subnet < b.subnet
}

func (h sourceHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *sourceHeap) Push(x any) { *h = append(*h, x.(*source)) }

func (h *sourceHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// snapshot is what both exporters read, taken under the lock.
type snapshot struct {
	attempts  []attemptCount
	ambiguous []ambiguousCount
	denials   []ambiguousCount
	top       []sourceEstimate
	tracked   int
	evicted   uint64
}

type attemptCount struct {
	attemptKey
	n uint64
}

type ambiguousCount struct {
	ambiguousKey
	n uint64
}

type sourceEstimate struct {
	subnet string
	// distinct is the estimate rounded to a whole number of usernames.
	distinct int64
}

func (d *Detector) snapshot() snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advance(d.cfg.Now())
	snap := snapshot{
		attempts: make([]attemptCount, 0, len(d.attempts)),
		tracked:  len(d.sources),
		evicted:  d.evicted,
	}
	for k, n := range d.attempts {
		snap.attempts = append(snap.attempts, attemptCount{k, n})
	}
	if len(d.ambiguous) > 0 {
		snap.ambiguous = make([]ambiguousCount, 0, len(d.ambiguous))
		for k, n := range d.ambiguous {
			snap.ambiguous = append(snap.ambiguous, ambiguousCount{k, n})
		}
	}
	for k, n := range d.denials {
		snap.denials = append(snap.denials, ambiguousCount{k, n})
	}
	all := make([]*source, 0, len(d.sources))
	for _, src := range d.sources {
		if src.dirty {
			src.recompute()
		}
		all = append(all, src)
	}
	// Refreshed estimates only grew, which keeps the heap valid for
	// evictOne's lazy check, but re-heapify anyway: it is cheap here.
	heap.Init(&d.byEst)
	sortTop(all)
	for _, src := range all[:min(len(all), d.cfg.TopSources)] {
		snap.top = append(snap.top, sourceEstimate{src.subnet, int64(src.est + 0.5)})
	}
	return snap
}

// sortTop orders sources by estimate, highest first, subnet for ties.
func sortTop(all []*source) {
	slices.SortFunc(all, func(a, b *source) int {
		switch {
		case a.est > b.est:
			return -1
		case a.est < b.est:
			return 1
		}
		return strings.Compare(a.subnet, b.subnet)
	})
}

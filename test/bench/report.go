package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// runResult is one measured wrk run; the agent fields are zero for a
// baseline run.
type runResult struct {
	Workload        string      `json:"workload"`
	Exporter        string      `json:"exporter"`
	Iteration       int         `json:"iteration"`
	Mode            string      `json:"mode"`
	OtherAgents     int         `json:"other_agents"`
	Wrk             wrkResult   `json:"wrk"`
	Spans           uint64      `json:"spans,omitempty"`
	Stages          stageCounts `json:"stages"`
	AgentCPUSeconds float64     `json:"agent_cpu_seconds,omitempty"`
	PeakRSS         uint64      `json:"agent_peak_rss_bytes,omitempty"`
	// ResidentAtEnd is the agent's resident set at the end of the run by
	// part (executable, bpf_maps, other), from its own metric.
	ResidentAtEnd labelCounts `json:"agent_resident_at_end_bytes,omitempty"`
	Drops         labelCounts `json:"drops,omitempty"`
	SpanDrops     labelCounts `json:"span_drops,omitempty"`
	// Programs: the agent's eBPF programs' runs and run time during wrk
	// (bpf_stats), by name.
	Programs map[string]progStat `json:"programs,omitempty"`
	// Backend is the capture backend the agent ran.
	Backend string `json:"backend,omitempty"`
}

func (r *runResult) fillAgent(before, after agentSample, spans uint64) {
	r.Spans = spans
	r.Stages = after.stages.sub(before.stages)
	r.AgentCPUSeconds = after.cpu - before.cpu
	r.Drops = after.drops.sub(before.drops)
	r.SpanDrops = after.spanDrops.sub(before.spanDrops)
	r.Backend = after.backend
	r.ResidentAtEnd = after.resident
}

func (r runResult) progressLine(name string) string {
	s := fmt.Sprintf("%s run %d %-8s %9.0f req/s  p50 %s  p99 %s  logins %d",
		name, r.Iteration, r.Mode, r.Wrk.ReqPerSec, fmtDur(r.Wrk.P50), fmtDur(r.Wrk.P99), r.Wrk.AuthSent)
	if r.Mode == "agent" {
		s += fmt.Sprintf("  spans %d  agent cpu %.2fs (%s/span)  peak rss %s  drops %s", r.Spans, r.AgentCPUSeconds,
			fmtMicros(perSpanMicros(r.AgentCPUSeconds, r.Spans)), fmtMiB(r.PeakRSS), r.Drops)
		if len(r.ResidentAtEnd) > 0 {
			s += fmt.Sprintf("  rss at end: executable %s, bpf maps %s, other %s", fmtMiB(r.ResidentAtEnd["executable"]),
				fmtMiB(r.ResidentAtEnd["bpf_maps"]), fmtMiB(r.ResidentAtEnd["other"]))
		}
	}
	return s
}

// workloadSummary is the mean of a workload's baseline runs against the
// mean of its agent runs; counts are summed over the agent runs.
type workloadSummary struct {
	Workload           string        `json:"workload"`
	Name               string        `json:"name"`
	BaselineReqPerSec  float64       `json:"baseline_req_per_sec"`
	AgentReqPerSec     float64       `json:"agent_req_per_sec"`
	Ratio              float64       `json:"ratio"`
	Target             float64       `json:"target_ratio"`
	Met                bool          `json:"target_met"`
	BaselineP50        time.Duration `json:"baseline_p50_ns"`
	AgentP50           time.Duration `json:"agent_p50_ns"`
	BaselineP99        time.Duration `json:"baseline_p99_ns"`
	AgentP99           time.Duration `json:"agent_p99_ns"`
	CPUPer10kRequests  float64       `json:"agent_cpu_seconds_per_10k_requests"`
	CPUPer10kLogins    float64       `json:"agent_cpu_seconds_per_10k_logins"`
	Exporter           string        `json:"exporter"`
	CPUPerSpan         float64       `json:"agent_cpu_us_per_span"`
	CPUTarget          float64       `json:"agent_cpu_us_per_span_target"`
	CPUMet             bool          `json:"agent_cpu_target_met"`
	PeakRSS            uint64        `json:"agent_peak_rss_bytes"`
	AuthSent           uint64        `json:"auth_sent"`
	Spans              uint64        `json:"spans"`
	Stages             stageCounts   `json:"stages"`
	Drops              labelCounts   `json:"drops"`
	SpanDrops          labelCounts   `json:"span_drops"`
	BaselineSocketErrs uint64        `json:"baseline_socket_errors"`
	AgentSocketErrs    uint64        `json:"agent_socket_errors"`
}

// fixedRateResult is the hey run at a fixed rate with the agent attached.
type fixedRateResult struct {
	Rate            int         `json:"target_rate"`
	Duration        string      `json:"duration"`
	Workers         int         `json:"workers"`
	OtherAgents     int         `json:"other_agents"`
	Hey             heyResult   `json:"hey"`
	Spans           uint64      `json:"spans"`
	Stages          stageCounts `json:"stages"`
	Lost            int64       `json:"lost"`
	AgentCPUSeconds float64     `json:"agent_cpu_seconds"`
	PeakRSS         uint64      `json:"agent_peak_rss_bytes"`
	Drops           labelCounts `json:"drops"`
	SpanDrops       labelCounts `json:"span_drops"`
	Met             bool        `json:"no_event_lost"`
}

// results is everything one bench invocation measured.
type results struct {
	Started     time.Time         `json:"started"`
	Duration    string            `json:"duration_per_run"`
	Connections int               `json:"connections"`
	Threads     int               `json:"threads"`
	ServerProcs int               `json:"server_gomaxprocs"`
	AgentEnv    string            `json:"agent_env,omitempty"`
	AgentArgs   string            `json:"agent_args,omitempty"`
	CPUs        int               `json:"cpus"`
	Kernel      string            `json:"kernel"`
	LoadBefore  string            `json:"loadavg_before"`
	LoadAfter   string            `json:"loadavg_after"`
	Runs        []runResult       `json:"runs"`
	Summary     []workloadSummary `json:"summary"`
	FixedRate   *fixedRateResult  `json:"fixed_rate,omitempty"`
	BPFStats    bool              `json:"bpf_stats"`
	DevNull     []devnullResult   `json:"devnull,omitempty"`
	KernelCost  []kernelCost      `json:"kernel_cost,omitempty"`
	TLS         []tlsResult       `json:"tls,omitempty"`
	TLSDuration string            `json:"tls_duration_per_run,omitempty"`

	variants []workload // what ran, for summarize
}

// peakRSSTarget is the bound on the agent's resident memory.
const peakRSSTarget = 40 << 20

func perSpanMicros(cpuSeconds float64, spans uint64) float64 {
	if spans == 0 {
		return 0
	}
	return cpuSeconds / float64(spans) * 1e6
}

func (res *results) summarize() {
	res.Summary = nil
	for _, w := range res.variants {
		s := workloadSummary{Workload: w.key, Name: w.name, Target: w.target, Exporter: w.exporter,
			CPUTarget: w.cpuTarget, Drops: labelCounts{}, SpanDrops: labelCounts{}}
		var nb, na int
		var cpu float64
		var requests uint64
		kc := kernelCost{Workload: w.key, Name: w.name}
		for _, r := range res.Runs {
			if r.Workload != w.key {
				continue
			}
			if r.Mode == "baseline" {
				nb++
				s.BaselineReqPerSec += r.Wrk.ReqPerSec
				s.BaselineP50 += r.Wrk.P50
				s.BaselineP99 += r.Wrk.P99
				s.BaselineSocketErrs += r.Wrk.SocketErrors
				continue
			}
			na++
			s.AgentReqPerSec += r.Wrk.ReqPerSec
			s.AgentP50 += r.Wrk.P50
			s.AgentP99 += r.Wrk.P99
			s.AgentSocketErrs += r.Wrk.SocketErrors
			cpu += r.AgentCPUSeconds
			requests += r.Wrk.Completed
			s.AuthSent += r.Wrk.AuthSent
			s.Spans += r.Spans
			s.Stages = s.Stages.add(r.Stages)
			s.Drops = s.Drops.add(r.Drops)
			s.SpanDrops = s.SpanDrops.add(r.SpanDrops)
			s.PeakRSS = max(s.PeakRSS, r.PeakRSS)
			if r.Programs != nil {
				kc.Programs = addStats(kc.Programs, r.Programs)
				kc.Requests += r.Wrk.Completed
				kc.OtherAgents = max(kc.OtherAgents, r.OtherAgents)
				kc.Backend = r.Backend
			}
		}
		if kc.Programs != nil && kc.Requests > 0 {
			var ns uint64
			for _, p := range kc.Programs {
				ns += p.NS
			}
			kc.NSPerReq = float64(ns) / float64(kc.Requests)
			res.KernelCost = append(res.KernelCost, kc)
		}
		if nb == 0 || na == 0 {
			continue
		}
		s.BaselineReqPerSec /= float64(nb)
		s.BaselineP50 /= time.Duration(nb)
		s.BaselineP99 /= time.Duration(nb)
		s.AgentReqPerSec /= float64(na)
		s.AgentP50 /= time.Duration(na)
		s.AgentP99 /= time.Duration(na)
		if s.BaselineReqPerSec > 0 {
			s.Ratio = s.AgentReqPerSec / s.BaselineReqPerSec
		}
		s.Met = s.Ratio >= s.Target
		if requests > 0 {
			s.CPUPer10kRequests = cpu / float64(requests) * 1e4
		}
		if s.AuthSent > 0 {
			s.CPUPer10kLogins = cpu / float64(s.AuthSent) * 1e4
		}
		s.CPUPerSpan = perSpanMicros(cpu, s.Spans)
		s.CPUMet = s.Spans > 0 && s.CPUPerSpan <= s.CPUTarget
		res.Summary = append(res.Summary, s)
	}
	if fr := res.FixedRate; fr != nil {
		fr.Lost = int64(fr.Hey.Sent()) - int64(fr.Spans)
		fr.Met = fr.Lost == 0
	}
}

func (res *results) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	p("## authprobe bench")
	p("")
	p("%s · %d CPUs · kernel %s · login server GOMAXPROCS=%d · wrk -t%d -c%d, %s per run · loadavg %s before, %s after",
		res.Started.Format("2006-01-02 15:04 UTC"), res.CPUs, res.Kernel, res.ServerProcs, res.Threads, res.Connections,
		res.Duration, res.LoadBefore, res.LoadAfter)
	if res.AgentEnv != "" {
		p("")
		p("Agent environment: `%s`", res.AgentEnv)
	}
	if res.AgentArgs != "" {
		p("")
		p("Agent arguments: `%s`", res.AgentArgs)
	}
	p("")
	p("### Overhead (mean of 2 baseline and 2 agent runs, interleaved)")
	p("")
	p("| workload | baseline req/s | agent req/s | ratio | target | p50 baseline → agent | p99 baseline → agent | agent CPU s / 10k req | agent CPU s / 10k logins |")
	p("|---|--:|--:|--:|---|--:|--:|--:|--:|")
	for _, s := range res.Summary {
		p("| %s | %.0f | %.0f | %.3f | ≥ %.2f %s | %s → %s | %s → %s | %.3f | %.3f |",
			s.Name, s.BaselineReqPerSec, s.AgentReqPerSec, s.Ratio, s.Target, metWord(s.Met),
			fmtDur(s.BaselineP50), fmtDur(s.AgentP50), fmtDur(s.BaselineP99), fmtDur(s.AgentP99),
			s.CPUPer10kRequests, s.CPUPer10kLogins)
	}
	p("")
	p("### Agent cost per span and memory (both agent runs)")
	p("")
	p("| workload | exporter | agent CPU µs / span | target | agent peak RSS (VmHWM) | target |")
	p("|---|---|--:|---|--:|---|")
	for _, s := range res.Summary {
		if s.CPUTarget == 0 {
			continue
		}
		p("| %s | %s | %s | ≤ %.0f µs %s | %s | ≤ 40 MiB %s |", s.Name, s.Exporter, fmtMicros(s.CPUPerSpan), s.CPUTarget,
			metWord(s.CPUMet), fmtMiB(s.PeakRSS), metWord(s.PeakRSS > 0 && s.PeakRSS <= peakRSSTarget))
	}
	p("")
	p("CPU is the agent's user+system time over the run (from /proc/PID/stat, 10 ms ticks) divided by the spans it exported; " +
		"OTLP runs export to a gRPC receiver in the bench process (test/otlpsink), which counts the spans.")
	p("")
	res.costMarkdown(p)
	res.tlsMarkdown(p)
	p("### Spans against logins sent (both agent runs)")
	p("")
	p("| workload | logins sent | span lines | spans / sent | matched / exchanges / built / exported | drops (kernel + decoder) | spans dropped by exporter | wrk socket errors |")
	p("|---|--:|--:|--:|--:|---|---|--:|")
	for _, s := range res.Summary {
		p("| %s | %d | %d | %s | %s | %s | %s | %d |", s.Name, s.AuthSent, s.Spans,
			fmtRatio(s.Spans, s.AuthSent), s.Stages, s.Drops, s.SpanDrops, s.BaselineSocketErrs+s.AgentSocketErrs)
	}
	p("")
	p("Spans are the JSON lines on the agent's stdout, or the spans the OTLP receiver got. The agent's own counters follow a login through it: " +
		"request heads the in-kernel route filter matched, HTTP exchanges decoded, spans built, spans the exporter accepted.")
	if fr := res.FixedRate; fr != nil {
		p("")
		p("### Fixed rate: hey, %d workers × %d req/s, %s of wrong-password logins, agent attached (%d other agents running)",
			fr.Workers, fr.Rate/fr.Workers, fr.Duration, fr.OtherAgents)
		p("")
		p("| target req/s | achieved req/s | logins sent | span lines | lost | matched / exchanges / built / exported | drops (kernel + decoder) | spans dropped | p50 | p99 | agent CPU s | CPU / span | peak RSS | no event lost |")
		p("|--:|--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|---|")
		p("| %d | %.0f | %d | %d | %d | %s | %s | %s | %s | %s | %.2f | %s | %s | %s |", fr.Rate, fr.Hey.ReqPerSec,
			fr.Hey.Sent(), fr.Spans, fr.Lost, fr.Stages, fr.Drops, fr.SpanDrops, fmtDur(fr.Hey.P50), fmtDur(fr.Hey.P99),
			fr.AgentCPUSeconds, fmtMicros(perSpanMicros(fr.AgentCPUSeconds, fr.Spans)), fmtMiB(fr.PeakRSS), metWord(fr.Met))
		if fr.Hey.ReqPerSec < 0.95*float64(fr.Rate) {
			p("")
			p("hey reached %.0f req/s, short of %d: the loss check holds at the rate reached.", fr.Hey.ReqPerSec, fr.Rate)
		}
	}
	p("")
	p("### Runs in the order they ran")
	p("")
	p("| workload | # | mode | req/s | p50 | p99 | requests | logins sent | spans | agent CPU s | CPU / span | peak RSS | drops | other engineers' agents |")
	p("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
	for _, r := range res.Runs {
		spans, cpu, perSpan, rss, drops := "", "", "", "", ""
		if r.Mode == "agent" {
			spans, cpu, drops = fmt.Sprint(r.Spans), fmt.Sprintf("%.2f", r.AgentCPUSeconds), r.Drops.String()
			perSpan, rss = fmtMicros(perSpanMicros(r.AgentCPUSeconds, r.Spans)), fmtMiB(r.PeakRSS)
		}
		p("| %s | %d | %s | %.0f | %s | %s | %d | %d | %s | %s | %s | %s | %s | %d |", r.Workload, r.Iteration, r.Mode,
			r.Wrk.ReqPerSec, fmtDur(r.Wrk.P50), fmtDur(r.Wrk.P99), r.Wrk.Completed, r.Wrk.AuthSent, spans, cpu, perSpan, rss,
			drops, r.OtherAgents)
	}
	p("")
	p("Targets (measured, not asserted):")
	for _, s := range res.Summary {
		p("- %s: throughput ratio %.3f, target ≥ %.2f: %s", s.Name, s.Ratio, s.Target, metWord(s.Met))
		if s.CPUTarget == 0 {
			continue
		}
		p("- %s: agent CPU %s per span, target ≤ %.0f µs: %s; peak RSS %s, target ≤ 40 MiB: %s", s.Name,
			fmtMicros(s.CPUPerSpan), s.CPUTarget, metWord(s.CPUMet), fmtMiB(s.PeakRSS), metWord(s.PeakRSS > 0 && s.PeakRSS <= peakRSSTarget))
	}
	for _, t := range res.TLS {
		p("- TLS, %s: throughput ratio %.3f, target ≥ %.2f: %s; %.2f uprobe hits per request", t.Name, t.Ratio, t.RatioTarget, metWord(t.Met), t.HitsPerRequest)
	}
	for _, d := range res.DevNull {
		if d.Target > 0 {
			p("- /dev/null writes of an unwatched process, %s backend: ratio %.3f, target ≥ %.2f: %s", d.Backend, d.Ratio, d.Target, metWord(d.Met))
		}
	}
	if fr := res.FixedRate; fr != nil {
		p("- no login lost at %d req/s: %s (%d sent, %d spans)", fr.Rate, metWord(fr.Met), fr.Hey.Sent(), fr.Spans)
	}
	return b.String()
}

// costMarkdown is issue 7's table: what watching costs the node.
func (res *results) costMarkdown(p func(string, ...any)) {
	if len(res.DevNull) == 0 && len(res.KernelCost) == 0 {
		return
	}
	p("### What watching costs the node")
	p("")
	p("| measurement | without agent | with agent | ratio | target |")
	p("|---|--:|--:|--:|---|")
	for _, d := range res.DevNull {
		target := "–"
		if d.Target > 0 {
			target = fmt.Sprintf("≥ %.2f %s", d.Target, metWord(d.Met))
		}
		p("| 64-byte write to /dev/null by an unwatched process, %s backend (ns/write, mean of %d) | %.0f ns | %.0f ns | %.3f | %s |",
			d.Backend, d.Runs, d.BaselineNS, d.AgentNS, d.Ratio, target)
	}
	for _, s := range res.Summary {
		if s.Workload == "health" {
			p("| %s, GOMAXPROCS=%d server, wrk -t%d -c%d (req/s) | %.0f | %.0f | %.3f | ≥ %.2f %s |", s.Name, res.ServerProcs,
				res.Threads, res.Connections, s.BaselineReqPerSec, s.AgentReqPerSec, s.Ratio, s.Target, metWord(s.Met))
		}
	}
	for _, k := range res.KernelCost {
		p("| kernel time of the agent's programs per request served, %s, %s backend | – | %.0f ns | – | – |", k.Name, orUnknown(k.Backend), k.NSPerReq)
	}
	p("")
	if len(res.KernelCost) > 0 {
		p("Kernel time is run_time_ns of the agent's programs (those its process holds) with kernel.bpf_stats_enabled on, summed over both agent runs and divided by the requests wrk completed; by program:")
		p("")
		for _, k := range res.KernelCost {
			p("- %s (%s backend): %s", k.Name, orUnknown(k.Backend), k.shares())
		}
		p("")
	}
	p("The /dev/null ratio is writes/s with the agent over without (ns without / ns with); the bench process itself is the unwatched writer.")
	p("")
}

// write saves the results as JSON (name ends in .json) or markdown.
func (res *results) write(path, table string) error {
	data := []byte(table)
	if strings.HasSuffix(path, ".json") {
		var err error
		if data, err = json.MarshalIndent(res, "", "  "); err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		data = append(data, '\n')
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func fmtRatio(a, b uint64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.4f", float64(a)/float64(b))
}

func fmtMicros(us float64) string {
	if us <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f µs", us)
}

func fmtMiB(b uint64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// Command bench measures what the authprobe agent costs a real login
// service and whether it keeps every auth attempt: `make bench`.
//
// It takes the agent binary and gives a markdown table on stdout (and
// optionally a JSON or markdown file). As root, on loopback only, it starts
// the Go login server of test/servers/goserver (GOMAXPROCS=1 by default)
// and drives it with wrk in two workloads (every request a login; 1 in 100
// a login), each measured without and with a fresh agent attached,
// interleaved as baseline, agent, baseline, agent so that drift on a shared
// machine cancels in the mean. The all-login workload runs once with the
// agent writing JSON lines to stdout and once exporting OTLP/gRPC to a
// receiver in this process (test/otlpsink). Per agent run it reports the
// agent's CPU time per span and its peak resident memory (VmHWM). A last
// run sends logins at a fixed rate with hey and compares the requests sent
// with the spans the agent wrote. The TLS workload (tls.go) sends every
// request as a login over HTTPS, to the login server serving TLS itself
// and to nginx terminating TLS in front of it, and counts the agent's
// uprobe hits per request.
//
// With -stages it runs the per-stage Go benchmarks instead (every
// BenchmarkStage* in the module, no root needed) and tabulates them.
//
// Timings are measured, never asserted: the exit status is non-zero only
// when the harness itself fails (a tool missing, a process that would not
// start, output that does not parse).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/authprobe/authprobe/test/otlpsink"
)

// options are the command line.
type options struct {
	agent       string
	duration    time.Duration
	warmup      time.Duration
	connections int
	threads     int
	rate        int
	rateWorkers int
	out         string
	exporters   string
	serverProcs int
	stages      bool
	stagePkgs   string
	benchtime   string
	agentEnv    string
	agentArgs   string
	cost        bool
	tls         bool
	tlsOnly     bool
	tlsDuration time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.agent, "agent", "./bin/authprobe", "authprobe binary to measure")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured wrk run before each workload (0 skips it)")
	flag.IntVar(&o.connections, "connections", 16, "wrk connections")
	flag.IntVar(&o.threads, "threads", 1, "wrk threads")
	flag.IntVar(&o.serverProcs, "server-procs", 1, "GOMAXPROCS of the login server (0: the Go default)")
	flag.StringVar(&o.exporters, "exporters", "stdout,otlp", "exporters the all-login workload runs with: stdout, otlp or both")
	flag.StringVar(&o.agentEnv, "agent-env", "", "extra environment of the agent, KEY=VALUE[,KEY=VALUE] (e.g. GOGC=200,GOMEMLIMIT=32MiB)")
	flag.StringVar(&o.agentArgs, "agent-args", "", "extra arguments of every agent run, space-separated (e.g. --ring-buffer-mib 4)")
	flag.BoolVar(&o.cost, "node-cost", true, "measure what watching costs the node: /dev/null writes of an unwatched process per capture backend, and the kernel time of the agent's programs per request (bpf_stats)")
	flag.BoolVar(&o.tls, "tls", true, "run the TLS workload: every request a login over HTTPS to the Go TLS server and to nginx terminating TLS, baseline and agent interleaved")
	flag.DurationVar(&o.tlsDuration, "tls-duration", 5*time.Second, "length of each measured TLS run")
	flag.BoolVar(&o.tlsOnly, "tls-only", false, "run only the TLS workload (no plaintext workloads, /dev/null tax or fixed-rate run)")
	flag.BoolVar(&o.stages, "stages", false, "run the per-stage Go benchmarks (BenchmarkStage*) instead")
	flag.StringVar(&o.stagePkgs, "stage-packages", "./bpf/... ./decoder/... ./spanbuilder/... ./export/... ./cmd/...", "packages whose BenchmarkStage* -stages runs")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "-benchtime of the stage benchmarks")
	flag.IntVar(&o.rate, "rate", 10000, "requests/s of the fixed-rate run (0 skips it)")
	// Each hey worker waits for its answer before the next request, so the
	// rate holds only while latency stays under workers/rate seconds.
	flag.IntVar(&o.rateWorkers, "rate-workers", 50, "hey workers (keep-alive connections) of the fixed-rate run")
	flag.StringVar(&o.out, "out", "", "also write the results here: JSON when the name ends in .json, else markdown")
	flag.Parse()
	if o.tlsOnly {
		o.tls, o.rate = true, 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := run
	if o.stages {
		runner = runStages
	}
	if err := runner(ctx, o, os.Stdout, os.Stderr); err != nil {
		if ctx.Err() != nil {
			// The children got the signal too or were stopped on the way out.
			fmt.Fprintln(os.Stderr, "bench: interrupted; every process it started is stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, stdout, progress io.Writer) error {
	if err := checkSetup(o); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "authprobe-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	logf := func(format string, args ...any) {
		fmt.Fprintf(progress, "bench: "+format+"\n", args...)
	}
	agentCfg := filepath.Join(tmp, "authprobe.yaml")
	if err := os.WriteFile(agentCfg, []byte(agentConfig), 0o600); err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}

	logf("building test/servers/goserver")
	serverBin := filepath.Join(tmp, "goserver")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", serverBin,
		"github.com/authprobe/authprobe/test/servers/goserver").CombinedOutput(); err != nil {
		return fmt.Errorf("build goserver: %w\n%s", err, out)
	}
	srv, err := startServer(ctx, serverBin, o.serverProcs, "", "")
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("goserver pid %d on %s (GOMAXPROCS %d)", srv.pid(), srv.url, o.serverProcs)
	// The OTLP runs' receiver: a real gRPC trace service that counts.
	sink, err := otlpsink.Listen("127.0.0.1:0", true)
	if err != nil {
		return fmt.Errorf("otlp receiver: %w", err)
	}
	defer sink.Close()

	res := results{
		Started:     time.Now().UTC(),
		Duration:    o.duration.String(),
		Connections: o.connections,
		Threads:     o.threads,
		ServerProcs: o.serverProcs,
		AgentEnv:    o.agentEnv,
		AgentArgs:   o.agentArgs,
		CPUs:        numCPU(),
		Kernel:      kernelRelease(),
		LoadBefore:  loadAvg(),
	}
	vs, err := variants(o.exporters)
	if err != nil {
		return err
	}
	if o.tlsOnly {
		vs = nil
	}
	res.variants = vs
	// The kernel counts its programs' run time only while bpf_stats is on.
	if o.cost || o.tls {
		stats, err := enableBPFStats()
		if err != nil {
			logf("no kernel time per request: %v", err)
		} else {
			defer stats.Close()
			res.BPFStats = true
		}
	}
	for _, w := range vs {
		script := filepath.Join(tmp, w.key+".lua")
		if err := os.WriteFile(script, []byte(w.script()), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", script, err)
		}
		wl := wrkLoad{threads: o.threads, connections: o.connections, script: script, url: srv.url}
		if o.warmup > 0 {
			logf("%s: warm-up %s", w.name, o.warmup)
			if _, err := wl.run(ctx, o.warmup); err != nil {
				return err
			}
		}
		for i := 1; i <= 2; i++ {
			for _, withAgent := range []bool{false, true} {
				var exp *otlpsink.Sink
				if w.exporter == "otlp" {
					exp = sink
				}
				r, err := measureWrk(ctx, o, agentCfg, srv, wl, withAgent, exp, res.BPFStats)
				if err != nil {
					return fmt.Errorf("%s run %d: %w", w.name, i, err)
				}
				r.Workload, r.Exporter, r.Iteration = w.key, w.exporter, i
				logf("%s", r.progressLine(w.name))
				res.Runs = append(res.Runs, r)
			}
		}
	}

	if o.tls {
		logf("TLS: every request a login over HTTPS, %s per run", o.tlsDuration)
		tr, err := measureTLS(ctx, o, agentCfg, tmp, serverBin, srv.url, res.BPFStats, logf)
		if err != nil {
			return fmt.Errorf("TLS run: %w", err)
		}
		res.TLS, res.TLSDuration = tr, o.tlsDuration.String()
	}

	if o.cost && !o.tlsOnly {
		logf("/dev/null writes of an unwatched process, without and with the agent, per capture backend")
		dn, err := measureDevNull(ctx, o, agentCfg, srv, logf)
		if err != nil {
			return fmt.Errorf("/dev/null run: %w", err)
		}
		res.DevNull = dn
	}

	if o.rate > 0 {
		logf("fixed rate: %d logins/s for %s with hey, agent attached", o.rate, o.duration)
		fr, err := measureFixedRate(ctx, o, agentCfg, srv)
		if err != nil {
			return fmt.Errorf("fixed-rate run: %w", err)
		}
		res.FixedRate = &fr
	}

	res.LoadAfter = loadAvg()
	res.summarize()
	table := res.markdown()
	fmt.Fprint(stdout, table)
	if o.out != "" {
		if err := res.write(o.out, table); err != nil {
			return err
		}
		logf("results written to %s", o.out)
	}
	return nil
}

// checkSetup fails early, in plain words, on what would fail later.
func checkSetup(o options) error {
	var problems []string
	if os.Geteuid() != 0 && !o.stages {
		problems = append(problems, "run as root: the agent loads eBPF programs")
	}
	if _, err := os.Stat(o.agent); err != nil && !o.stages {
		problems = append(problems, fmt.Sprintf("agent %s: %v (run `make build`)", o.agent, err))
	}
	for _, tool := range []string{"wrk", "go"} {
		if o.stages && tool == "wrk" {
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			problems = append(problems, fmt.Sprintf("%s not found (apt-get install wrk)", tool))
		}
	}
	if o.rate > 0 && !o.stages {
		if _, err := exec.LookPath("hey"); err != nil {
			problems = append(problems, "hey not found (apt-get install hey, or -rate 0 to skip the fixed-rate run)")
		}
	}
	if o.tls && o.tlsDuration < time.Second {
		problems = append(problems, "want -tls-duration ≥ 1s")
	}
	if o.duration < time.Second || o.connections < 1 || o.threads < 1 || o.connections < o.threads {
		problems = append(problems, "want -duration ≥ 1s and -connections ≥ -threads ≥ 1")
	}
	if o.rate > 0 && (o.rateWorkers < 1 || o.rate%o.rateWorkers != 0) {
		problems = append(problems, "want -rate a multiple of -rate-workers (hey rate-limits per worker)")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// agentConfig watches nothing by itself (the PID comes from --pid) and
// hashes usernames with a per-run key, so no username reaches stdout.
const agentConfig = `routes:
  - {name: auth.login, kind: login, method: POST, path: /login}
security:
  username: {privacy: hash, random_key: true}
exporter:
  kind: stdout
`

// measureWrk is one measured wrk run, with a fresh agent when withAgent,
// exporting to sink when it is not nil (else JSON lines on stdout).
func measureWrk(ctx context.Context, o options, agentCfg string, srv *server, wl wrkLoad, withAgent bool, sink *otlpsink.Sink, bpfStats bool) (runResult, error) {
	r := runResult{Mode: "baseline", OtherAgents: otherAgents()}
	if !withAgent {
		w, err := wl.run(ctx, o.duration)
		r.Wrk = w
		return r, err
	}
	r.Mode = "agent"
	a, err := startAgent(ctx, o.agent, agentCfg, srv.pid(), sink, o.agentEnv, strings.Fields(o.agentArgs)...)
	if err != nil {
		return r, err
	}
	defer a.kill()
	before, err := a.sample()
	if err != nil {
		return r, err
	}
	var progsBefore map[string]progStat
	if bpfStats {
		if progsBefore, err = progStats(a.cmd.Process.Pid); err != nil {
			return r, err
		}
	}
	w, err := wl.run(ctx, o.duration)
	if err != nil {
		return r, err
	}
	r.Wrk = w
	if bpfStats {
		after, err := progStats(a.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		r.Programs = subStats(after, progsBefore)
	}
	a.settle(ctx, w.AuthSent)
	after, err := a.sample()
	if err != nil {
		return r, err
	}
	r.PeakRSS, _ = a.peakRSS()
	spans, err := a.stop()
	if err != nil {
		return r, err
	}
	r.fillAgent(before, after, spans)
	return r, nil
}

// measureFixedRate sends logins at o.rate with hey, the agent attached.
func measureFixedRate(ctx context.Context, o options, agentCfg string, srv *server) (fixedRateResult, error) {
	fr := fixedRateResult{Rate: o.rate, Duration: o.duration.String(), Workers: o.rateWorkers,
		OtherAgents: otherAgents()}
	a, err := startAgent(ctx, o.agent, agentCfg, srv.pid(), nil, o.agentEnv, strings.Fields(o.agentArgs)...)
	if err != nil {
		return fr, err
	}
	defer a.kill()
	before, err := a.sample()
	if err != nil {
		return fr, err
	}
	h, err := runHey(ctx, srv.url+"/login", o.rate, o.rateWorkers, o.duration)
	if err != nil {
		return fr, err
	}
	fr.Hey = h
	a.settle(ctx, h.Sent())
	after, err := a.sample()
	if err != nil {
		return fr, err
	}
	fr.PeakRSS, _ = a.peakRSS()
	spans, err := a.stop()
	if err != nil {
		return fr, err
	}
	fr.Spans = spans
	fr.AgentCPUSeconds = after.cpu - before.cpu
	fr.Stages = after.stages.sub(before.stages)
	fr.Drops = after.drops.sub(before.drops)
	fr.SpanDrops = after.spanDrops.sub(before.spanDrops)
	return fr, nil
}

package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// The TLS workload (issue 8): every request a login over HTTPS on
// keep-alive connections, to the Go login server serving TLS itself
// (crypto/tls, Go uprobes) and to nginx terminating TLS (shared OpenSSL)
// in front of the plaintext Go login server. wrk speaks TLS (Debian's is
// linked against OpenSSL) and HTTP/1.1. Each target runs baseline, agent,
// baseline, agent; the agent's uprobe programs' run counts (bpf_stats)
// divided by the requests served are the uprobe hits per request.

// tlsTarget is one HTTPS server under load; pid is what the agent watches.
type tlsTarget struct {
	key, name string
	pid       int
	url       string
}

// tlsResult is one target's runs and their means.
type tlsResult struct {
	Target            string      `json:"target"`
	Name              string      `json:"name"`
	BaselineReqPerSec float64     `json:"baseline_req_per_sec"`
	AgentReqPerSec    float64     `json:"agent_req_per_sec"`
	Ratio             float64     `json:"ratio"`
	RatioTarget       float64     `json:"target_ratio"`
	Met               bool        `json:"target_met"`
	BaselineP50       int64       `json:"baseline_p50_ns"`
	AgentP50          int64       `json:"agent_p50_ns"`
	AuthSent          uint64      `json:"auth_sent"`
	Requests          uint64      `json:"requests"`
	Spans             uint64      `json:"spans"`
	Stages            stageCounts `json:"stages"`
	Drops             labelCounts `json:"drops"`
	AgentCPUSeconds   float64     `json:"agent_cpu_seconds"`
	CPUPerSpan        float64     `json:"agent_cpu_us_per_span"`
	CPUPerLogin       float64     `json:"agent_cpu_us_per_login"`
	UprobeRuns        uint64      `json:"uprobe_runs"`
	UprobeNS          uint64      `json:"uprobe_run_time_ns"`
	HitsPerRequest    float64     `json:"uprobe_hits_per_request"`
	Programs          string      `json:"uprobe_programs"`
	OtherAgents       int         `json:"other_agents"`
	Runs              []runResult `json:"runs"`
}

// tlsRatioTarget is issue 8's bound on the TLS throughput ratio.
const tlsRatioTarget = 0.85

// measureTLS runs the TLS workload. backendURL is the plaintext login
// server nginx proxies to; serverBin the goserver binary.
func measureTLS(ctx context.Context, o options, agentCfg, tmp, serverBin, backendURL string, bpfStats bool, logf func(string, ...any)) ([]tlsResult, error) {
	certPath, keyPath, err := testutil.WriteSelfSignedCert(tmp)
	if err != nil {
		return nil, err
	}
	goTLS, err := startServer(ctx, serverBin, o.serverProcs, certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("goserver over TLS: %w", err)
	}
	defer goTLS.stop()
	targets := []tlsTarget{{key: "tls-go", name: "Go crypto/tls (goserver TLS_CERT/TLS_KEY)", pid: goTLS.pid(), url: goTLS.url}}
	logf("TLS: goserver pid %d on %s (GOMAXPROCS %d)", goTLS.pid(), goTLS.url, o.serverProcs)

	if _, err := os.Stat(nginxPath); err != nil {
		logf("TLS: no nginx workload: %v (apt-get install nginx-light)", err)
	} else {
		ng, err := startNginx(ctx, filepath.Join(tmp, "nginx"), backendURL, certPath, keyPath)
		if err != nil {
			return nil, err
		}
		defer ng.stop()
		logf("TLS: nginx master pid %d on %s in front of %s", ng.pid, ng.url, backendURL)
		targets = append(targets, tlsTarget{key: "tls-nginx",
			name: "nginx TLS (OpenSSL 3, shared) → plaintext goserver", pid: ng.pid, url: ng.url})
	}

	w := workload{key: "tls", name: "100% POST /login over TLS", every: 1}
	script := filepath.Join(tmp, "tls.lua")
	if err := os.WriteFile(script, []byte(w.script()), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", script, err)
	}
	// wrk's own libssl would take the trap of nginx's OpenSSL uprobes on
	// every SSL call (they sit on the library file): a load generator on
	// another node does not, so wrk gets copies of the libraries (other
	// inodes, no probes).
	libDir := filepath.Join(tmp, "wrk-lib")
	if err := copyWrkTLSLibs(ctx, libDir); err != nil {
		return nil, err
	}
	d := o.tlsDuration
	var out []tlsResult
	for _, t := range targets {
		wl := wrkLoad{threads: o.threads, connections: o.connections, script: script, url: t.url,
			env: []string{"LD_LIBRARY_PATH=" + libDir}}
		if o.warmup > 0 {
			if _, err := wl.run(ctx, time.Second); err != nil {
				return nil, fmt.Errorf("%s warm-up: %w", t.name, err)
			}
		}
		res := tlsResult{Target: t.key, Name: t.name, RatioTarget: tlsRatioTarget, Drops: labelCounts{}, OtherAgents: otherAgents()}
		for i := 1; i <= 2; i++ {
			for _, withAgent := range []bool{false, true} {
				r, err := measureTLSRun(ctx, o, agentCfg, t.pid, wl, d, withAgent, bpfStats)
				if err != nil {
					return nil, fmt.Errorf("%s run %d: %w", t.name, i, err)
				}
				r.Workload, r.Exporter, r.Iteration = t.key, "stdout", i
				logf("%s", r.progressLine("TLS "+t.key))
				res.Runs = append(res.Runs, r)
			}
		}
		res.summarize()
		out = append(out, res)
	}
	return out, nil
}

// copyWrkTLSLibs copies the libssl and libcrypto wrk links (as ldd
// resolves them) into dir.
func copyWrkTLSLibs(ctx context.Context, dir string) error {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return fmt.Errorf("wrk: %w", err)
	}
	out, err := exec.CommandContext(ctx, "ldd", wrk).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", wrk, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("wrk lib dir: %w", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		// "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)"
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "=>" || !(strings.HasPrefix(f[0], "libssl.") || strings.HasPrefix(f[0], "libcrypto.")) {
			continue
		}
		b, err := os.ReadFile(f[2])
		if err != nil {
			return fmt.Errorf("copy wrk's %s: %w", f[0], err)
		}
		if err := os.WriteFile(filepath.Join(dir, f[0]), b, 0o755); err != nil {
			return fmt.Errorf("copy wrk's %s: %w", f[0], err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("wrk (%s) links no libssl: it cannot speak https (Debian's wrk does)", wrk)
	}
	return nil
}

// measureTLSRun is measureWrk for a TLS target: the agent logs at info
// so that the run starts only once it said its TLS probes are attached.
func measureTLSRun(ctx context.Context, o options, agentCfg string, pid int, wl wrkLoad, d time.Duration, withAgent, bpfStats bool) (runResult, error) {
	r := runResult{Mode: "baseline", OtherAgents: otherAgents()}
	if !withAgent {
		w, err := wl.run(ctx, d)
		r.Wrk = w
		return r, err
	}
	r.Mode = "agent"
	args := append(strings.Fields(o.agentArgs), "--log-level", "info")
	a, err := startAgent(ctx, o.agent, agentCfg, pid, nil, o.agentEnv, args...)
	if err != nil {
		return r, err
	}
	defer a.kill()
	if err := a.waitLog(ctx, "TLS probes attached", 15*time.Second); err != nil {
		return r, err
	}
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
	w, err := wl.run(ctx, d)
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

// waitLog waits until the agent's stderr holds line.
func (a *agent) waitLog(ctx context.Context, line string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !strings.Contains(a.stderr.String(), line) {
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not log %q within %s:\n%s", line, limit, a.stderr.last(4096))
		}
		select {
		case <-a.done:
			return fmt.Errorf("agent exited (%v):\n%s", a.waitErr, a.stderr.last(4096))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (res *tlsResult) summarize() {
	var nb, na int
	var uprobes []string
	progs := map[string]progStat{}
	for _, r := range res.Runs {
		if r.Mode == "baseline" {
			nb++
			res.BaselineReqPerSec += r.Wrk.ReqPerSec
			res.BaselineP50 += int64(r.Wrk.P50)
			continue
		}
		na++
		res.AgentReqPerSec += r.Wrk.ReqPerSec
		res.AgentP50 += int64(r.Wrk.P50)
		res.AuthSent += r.Wrk.AuthSent
		res.Requests += r.Wrk.Completed
		res.Spans += r.Spans
		res.Stages = res.Stages.add(r.Stages)
		res.Drops = res.Drops.add(r.Drops)
		res.AgentCPUSeconds += r.AgentCPUSeconds
		progs = addStats(progs, r.Programs)
	}
	for name, p := range progs {
		if p.Uprobe && p.Runs > 0 {
			res.UprobeRuns += p.Runs
			res.UprobeNS += p.NS
			uprobes = append(uprobes, name)
		}
	}
	if nb == 0 || na == 0 {
		return
	}
	res.BaselineReqPerSec /= float64(nb)
	res.BaselineP50 /= int64(nb)
	res.AgentReqPerSec /= float64(na)
	res.AgentP50 /= int64(na)
	if res.BaselineReqPerSec > 0 {
		res.Ratio = res.AgentReqPerSec / res.BaselineReqPerSec
	}
	res.Met = res.Ratio >= res.RatioTarget
	res.CPUPerSpan = perSpanMicros(res.AgentCPUSeconds, res.Spans)
	res.CPUPerLogin = perSpanMicros(res.AgentCPUSeconds, res.AuthSent)
	if res.Requests > 0 {
		res.HitsPerRequest = float64(res.UprobeRuns) / float64(res.Requests)
	}
	var parts []string
	sort.Strings(uprobes)
	for _, name := range uprobes {
		parts = append(parts, fmt.Sprintf("%s %.2f", name, float64(progs[name].Runs)/float64(max(res.Requests, 1))))
	}
	res.Programs = strings.Join(parts, ", ")
}

// tlsMarkdown is the TLS table of the report.
func (res *results) tlsMarkdown(p func(string, ...any)) {
	if len(res.TLS) == 0 {
		return
	}
	p("### TLS: every request a login over HTTPS, keep-alive (wrk https://, HTTP/1.1), %s per run, mean of 2 baseline and 2 agent runs, interleaved", res.TLSDuration)
	p("")
	p("| target | baseline req/s | agent req/s | ratio | target | p50 baseline → agent | logins sent | spans | agent CPU µs / span | agent CPU µs / login | uprobe hits / request | uprobe kernel ns / request | other agents |")
	p("|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, t := range res.TLS {
		hits, ns := "–", "–"
		if t.UprobeRuns > 0 {
			hits = fmt.Sprintf("%.2f", t.HitsPerRequest)
			ns = fmt.Sprintf("%.0f", float64(t.UprobeNS)/float64(max(t.Requests, 1)))
		}
		p("| %s | %.0f | %.0f | %.3f | ≥ %.2f %s | %s → %s | %d | %d | %s | %s | %s | %s | %d |", t.Name,
			t.BaselineReqPerSec, t.AgentReqPerSec, t.Ratio, t.RatioTarget, metWord(t.Met),
			fmtDur(time.Duration(t.BaselineP50)), fmtDur(time.Duration(t.AgentP50)), t.AuthSent, t.Spans,
			fmtMicros(t.CPUPerSpan), fmtMicros(t.CPUPerLogin), hits, ns, t.OtherAgents)
	}
	p("")
	p("Uprobe hits are the run counts of the agent's uprobe and uretprobe programs (bpf_stats) over both agent runs divided by the requests wrk completed; by program:")
	p("")
	for _, t := range res.TLS {
		p("- %s: %s", t.Name, orDash(t.Programs))
	}
	p("")
	p("wrk runs with copies of its libssl and libcrypto (LD_LIBRARY_PATH): the OpenSSL uprobes sit on the library file and would trap the load generator's SSL calls too, which a client on another node does not pay. " +
		"nginx's spans include a CLIENT span for its plaintext call to the backend only when one request is in flight in its event loop, so there are a few more spans than logins.")
	p("")
}

func orDash(s string) string {
	if s == "" {
		return "– (bpf_stats off)"
	}
	return s
}

// nginxPath is the Debian package's binary.
const nginxPath = "/usr/sbin/nginx"

// nginxProc is nginx terminating TLS for the bench.
type nginxProc struct {
	cmd  *exec.Cmd
	pid  int
	url  string
	done chan struct{}
}

// startNginx runs nginx (one worker) in dir: TLS with the certificate on
// a free loopback port, keep-alive both ways, proxying to backend.
func startNginx(ctx context.Context, dir, backend, certPath, keyPath string) (*nginxProc, error) {
	for _, sub := range []string{"logs", "client_body", "proxy"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("nginx dir: %w", err)
		}
	}
	u, err := url.Parse(backend)
	if err != nil {
		return nil, fmt.Errorf("backend url: %w", err)
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`user root;
worker_processes 1;
error_log %[1]s/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    keepalive_requests 1000000;
    upstream backend {
        server %[3]s;
        keepalive 32;
    }
    server {
        listen %[2]s ssl;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, addr, u.Host, certPath, keyPath)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write nginx.conf: %w", err)
	}
	cmd := command(ctx, nginxPath, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "logs", "error.log"),
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	cmd.SysProcAttr.Setpgid = true
	stderr := &tail{max: 4096}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &nginxProc{cmd: cmd, pid: cmd.Process.Pid, url: "https://" + addr, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			if n.workers() > 0 {
				return n, nil
			}
		}
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			return nil, fmt.Errorf("nginx exited: %s\n%s", stderr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("nginx not listening on %s within 10s", addr)
		}
	}
}

// workers counts the master's children.
func (n *nginxProc) workers() int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(n.pid) + "/task/" + strconv.Itoa(n.pid) + "/children")
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(b)))
}

// stop kills the master and its worker (one process group).
func (n *nginxProc) stop() {
	_ = syscall.Kill(-n.pid, syscall.SIGKILL)
	<-n.done
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authprobe/authprobe/test/otlpsink"
)

// command prepares a child that dies with the bench: SIGTERM when ctx is
// done (Ctrl-C), SIGKILL after a grace period, and SIGKILL from the kernel
// should the bench itself be killed.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// server is the login service under load.
type server struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// startServer starts the goserver binary on a free loopback port; with
// tlsCert and tlsKey (PEM files) it serves HTTPS and its url is https.
func startServer(ctx context.Context, bin string, procs int, tlsCert, tlsKey string) (*server, error) {
	cmd := command(ctx, bin, "0")
	cmd.Env = append(os.Environ(), "HOST=127.0.0.1")
	scheme := "http"
	if tlsCert != "" {
		cmd.Env = append(cmd.Env, "TLS_CERT="+tlsCert, "TLS_KEY="+tlsKey)
		scheme = "https"
	}
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("goserver stdout: %w", err)
	}
	stderr := &tail{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start goserver: %w", err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	ports := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				select {
				case ports <- p:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case p := <-ports:
		s.url = scheme + "://127.0.0.1:" + p
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("goserver exited before listening: %s", stderr)
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, errors.New("goserver did not print its port within 10s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// agent is one authprobe run attached to the server. Its stdout is counted,
// never kept: the span lines are what it produced; with a sink, the spans
// the sink received during the run are.
type agent struct {
	cmd        *exec.Cmd
	lines      *lineCounter
	stderr     *tail
	metrics    string
	sink       *otlpsink.Sink
	sinkBefore int
	done       chan struct{}
	waitErr    error
}

func startAgent(ctx context.Context, bin, cfg string, pid int, sink *otlpsink.Sink, env string, extra ...string) (*agent, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--config", cfg, "--pid", strconv.Itoa(pid), "--metrics-addr", addr, "--log-level", "warn"}
	if sink != nil {
		args = append(args, "--otlp-endpoint", sink.Addr())
	}
	args = append(args, extra...)
	cmd := command(ctx, bin, args...)
	if env != "" {
		cmd.Env = append(os.Environ(), strings.Split(env, ",")...)
	}
	a := &agent{cmd: cmd, lines: &lineCounter{}, stderr: &tail{max: 1 << 20},
		metrics: "http://" + addr, sink: sink, done: make(chan struct{})}
	if sink != nil {
		a.sinkBefore = sink.Count()
	}
	cmd.Stdout, cmd.Stderr = a.lines, a.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	if err := a.waitReady(ctx, 60*time.Second); err != nil {
		a.dumpAndKill()
		return nil, err
	}
	return a, nil
}

// dumpAndKill asks a stuck agent for its goroutines (SIGQUIT) and keeps
// its whole stderr in a file that outlives the bench's temp dir.
func (a *agent) dumpAndKill() {
	_ = a.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
	}
	a.kill()
	path := fmt.Sprintf("%s/authprobe-bench-agent-%d.log", os.TempDir(), a.cmd.Process.Pid)
	if err := os.WriteFile(path, []byte(a.stderr.String()), 0o600); err == nil {
		fmt.Fprintf(os.Stderr, "bench: stuck agent's stderr and goroutines saved in %s\n", path)
	}
}

func (a *agent) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get(a.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-a.done:
			return fmt.Errorf("agent exited before ready (%v):\n%s", a.waitErr, a.stderr.last(4096))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("agent not ready after %s", limit)
}

// agentSample is the agent's CPU time and counters at one moment.
type agentSample struct {
	cpu       float64 // seconds, user+system
	spans     float64 // authprobe_spans_total
	stages    stageCounts
	drops     labelCounts
	spanDrops labelCounts
	backend   string // authprobe_capture_backend_info's backend
	// resident is authprobe_resident_bytes by part: what the resident
	// set is made of when sampled.
	resident labelCounts
}

func (a *agent) sample() (agentSample, error) {
	var s agentSample
	cpu, err := procCPUSeconds(a.cmd.Process.Pid)
	if err != nil {
		return s, err
	}
	m, err := scrape(a.metrics + "/metrics")
	if err != nil {
		return s, err
	}
	s.cpu = cpu
	s.spans = m.sum("authprobe_spans_total")
	s.stages = stageCounts{
		Matched:   uint64(m.byLabel("authprobe_requests_total", "filter")["matched"]),
		Exchanges: uint64(m.sum("authprobe_exchanges_total")),
		Built:     uint64(s.spans),
		Exported:  uint64(m.sum("authprobe_spans_exported_total")),
	}
	s.drops = m.byLabel("authprobe_drops_total", "reason")
	s.spanDrops = m.byLabel("authprobe_spans_dropped_total", "reason")
	s.resident = m.byLabel("authprobe_resident_bytes", "part")
	for b := range m.byLabel("authprobe_capture_backend_info", "backend") {
		s.backend = b
	}
	return s, nil
}

// stageCounts follow logins through the agent, to tell where one was lost:
// request heads the kernel route filter matched, HTTP exchanges decoded,
// spans built, spans the exporter accepted.
type stageCounts struct {
	Matched   uint64 `json:"matched"`
	Exchanges uint64 `json:"exchanges"`
	Built     uint64 `json:"built"`
	Exported  uint64 `json:"exported"`
}

func (c stageCounts) sub(b stageCounts) stageCounts {
	return stageCounts{Matched: c.Matched - b.Matched, Exchanges: c.Exchanges - b.Exchanges,
		Built: c.Built - b.Built, Exported: c.Exported - b.Exported}
}

func (c stageCounts) add(o stageCounts) stageCounts {
	return stageCounts{Matched: c.Matched + o.Matched, Exchanges: c.Exchanges + o.Exchanges,
		Built: c.Built + o.Built, Exported: c.Exported + o.Exported}
}

func (c stageCounts) String() string {
	return fmt.Sprintf("%d / %d / %d / %d", c.Matched, c.Exchanges, c.Built, c.Exported)
}

// settle waits until the agent built the spans it is expected to and its
// exporter took or dropped each of them, or until those counts stopped
// moving for a second: the work of a run includes the events still in
// flight when the load generator stopped.
func (a *agent) settle(ctx context.Context, want uint64) {
	deadline := time.Now().Add(15 * time.Second)
	last, still := -1.0, 0
	for time.Now().Before(deadline) && still < 5 {
		m, err := scrape(a.metrics + "/metrics")
		if err != nil {
			return
		}
		built := m.sum("authprobe_spans_total")
		handled := m.sum("authprobe_spans_exported_total") + m.sum("authprobe_spans_dropped_total")
		if built >= float64(want) && handled >= built {
			return
		}
		if built+handled == last {
			still++
		} else {
			last, still = built+handled, 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, which flushes the exporter, and returns the number
// of span lines the agent wrote.
func (a *agent) stop() (uint64, error) {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		a.kill()
		return 0, fmt.Errorf("agent did not exit 20s after SIGTERM:\n%s", a.stderr.last(4096))
	}
	if a.waitErr != nil {
		return 0, fmt.Errorf("agent exited with %v:\n%s", a.waitErr, a.stderr.last(4096))
	}
	if a.sink != nil {
		return uint64(a.sink.Count() - a.sinkBefore), nil
	}
	return a.lines.count(), nil
}

// peakRSS is the agent's peak resident memory so far (VmHWM), in bytes.
func (a *agent) peakRSS() (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("agent status: %w", err)
	}
	return parseVmHWM(string(b))
}

// parseVmHWM reads "VmHWM:    12345 kB" from /proc/PID/status.
func parseVmHWM(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse VmHWM line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM line %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// kill is the cleanup path; it is a no-op once the agent exited.
func (a *agent) kill() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Kill()
	<-a.done
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a metrics port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// procCPUSeconds is utime+stime of pid from /proc/<pid>/stat. The unit is
// USER_HZ, which Linux fixes at 100 for user space.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("agent cpu: %w", err)
	}
	return parseProcStatCPU(string(b))
}

func parseProcStatCPU(stat string) (float64, error) {
	// comm (field 2) may hold spaces and parentheses: fields are counted
	// from the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after comm", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	const userHZ = 100
	return float64(utime+stime) / userHZ, nil
}

// lineCounter counts newline-terminated lines written to it.
type lineCounter struct{ n atomic.Uint64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n.Add(uint64(bytes.Count(p, []byte{'\n'})))
	return len(p), nil
}

func (c *lineCounter) count() uint64 { return c.n.Load() }

// tail keeps the last max bytes written, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string { return t.last(t.max) }

// last is the last n bytes kept.
func (t *tail) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) > n {
		return string(t.buf[len(t.buf)-n:])
	}
	return string(t.buf)
}

// otherAgents counts authprobe processes; called before the bench starts
// its own, it counts other engineers' agents, which attach the same
// tracepoints and tax every process on the machine, baseline runs included.
func otherAgents() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "authprobe" {
			n++
		}
	}
	return n
}

func numCPU() int { return runtime.NumCPU() }

// loadAvg is the 1, 5 and 15 minute load of /proc/loadavg: the shared
// machine's noise, printed beside the numbers.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

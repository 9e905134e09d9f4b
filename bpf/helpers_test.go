package bpf

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SkipIfNotSupported skips tb when err says the kernel lacks a feature.
func SkipIfNotSupported(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ebpf.ErrNotSupported) {
		tb.Skipf("kernel feature missing: %v", err)
	}
}

func skipUnlessRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loads eBPF programs")
	}
}

// testRoutes are the auth route prefixes of the kernel tests.
var testRoutes = []string{"/login", "/api/auth/", "/oauth/token"}

// mustLoad loads a probe with the test routes on backend, closed at the
// end of the test.
func mustLoad(tb testing.TB, backend string, cfg Config) *Probe {
	tb.Helper()
	skipUnlessRoot(tb)
	cfg.Backend = backend
	if cfg.Routes == nil {
		cfg.Routes = testRoutes
	}
	if cfg.WakeupBytes == 0 {
		cfg.WakeupBytes = 1 // every event at once: tests wait on them
	}
	skipUnlessAvailable(tb, backend)
	p, err := Load(cfg)
	SkipIfNotSupported(tb, err)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, p.Close()) })
	require.Equal(tb, backend, p.Backend().Name)
	return p
}

// forEachBackend runs f as a subtest on every capture backend; one whose
// hooks this kernel lacks is skipped with what is missing, and so is one
// left out of AUTHPROBE_TEST_BACKENDS (comma-separated; the kernel matrix
// runs each backend's tests on the kernel where it is the natural one).
func forEachBackend(t *testing.T, f func(t *testing.T, backend string)) {
	only := os.Getenv("AUTHPROBE_TEST_BACKENDS")
	for _, b := range Backends() {
		t.Run(b, func(t *testing.T) {
			if only != "" && !slices.Contains(strings.Split(only, ","), b) {
				t.Skipf("not selected: AUTHPROBE_TEST_BACKENDS=%s", only)
			}
			f(t, b)
		})
	}
}

// skipUnlessAvailable skips tb when this kernel lacks a hook backend
// attaches to (the socket tracepoints before 6.3), saying which. Only
// that: a backend whose hooks exist must load.
func skipUnlessAvailable(tb testing.TB, backend string) {
	tb.Helper()
	if err := BackendAvailable(backend); errors.Is(err, ErrNoHook) {
		tb.Skipf("capture backend %s cannot run on this kernel: %v", backend, err)
	}
}

// naturalBackend is the backend Load picks on this kernel: the cheapest
// whose hooks it has. Tests of what every backend does alike (the proof,
// discovery) run on it.
func naturalBackend(tb testing.TB) string {
	tb.Helper()
	for _, b := range Backends() {
		err := BackendAvailable(b)
		if err == nil {
			return b
		}
		if !errors.Is(err, ErrNoHook) {
			tb.Fatalf("capture backend %s: %v", b, err)
		}
	}
	tb.Fatal("no capture backend has its hooks on this kernel")
	return ""
}

// recorder keeps copies of what the probe delivers.
type recorder struct {
	mu      sync.Mutex
	data    []ConnEvent
	closes  []ConnEvent
	execs   []ProcEvent
	forks   []ProcEvent
	exits   []ProcEvent
	listens []ProcEvent
}

func (r *recorder) Data(ev ConnEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.Data = append([]byte(nil), ev.Data...)
	r.data = append(r.data, ev)
}
func (r *recorder) Close(ev ConnEvent) { r.mu.Lock(); r.closes = append(r.closes, ev); r.mu.Unlock() }
func (r *recorder) Exec(ev ProcEvent)  { r.mu.Lock(); r.execs = append(r.execs, ev); r.mu.Unlock() }
func (r *recorder) Fork(ev ProcEvent)  { r.mu.Lock(); r.forks = append(r.forks, ev); r.mu.Unlock() }
func (r *recorder) Exit(ev ProcEvent)  { r.mu.Lock(); r.exits = append(r.exits, ev); r.mu.Unlock() }
func (r *recorder) Listen(ev ProcEvent) {
	r.mu.Lock()
	r.listens = append(r.listens, ev)
	r.mu.Unlock()
}
func (r *recorder) Drained() {}

// events returns the data events matching keep, in arrival order.
func (r *recorder) events(keep func(ConnEvent) bool) []ConnEvent {
	return r.eventsSince(0, keep)
}

// mark is a point in the data events, for eventsSince.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

// eventsSince returns the data events after mark that match keep.
func (r *recorder) eventsSince(mark int, keep func(ConnEvent) bool) []ConnEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ConnEvent
	for _, ev := range r.data[mark:] {
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// proc returns the process events of a kind matching keep.
func (r *recorder) proc(kind *[]ProcEvent, keep func(ProcEvent) bool) []ProcEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ProcEvent
	for _, ev := range *kind {
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvents waits until n data events match keep and returns them.
func (r *recorder) waitEvents(tb testing.TB, n int, keep func(ConnEvent) bool) []ConnEvent {
	tb.Helper()
	return r.waitEventsSince(tb, 0, n, keep)
}

// waitEventsSince waits until n data events after mark match keep.
func (r *recorder) waitEventsSince(tb testing.TB, mark, n int, keep func(ConnEvent) bool) []ConnEvent {
	tb.Helper()
	var got []ConnEvent
	deadline := time.Now().Add(patience(5 * time.Second))
	for time.Now().Before(deadline) {
		if got = r.eventsSince(mark, keep); len(got) >= n {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.Failf(tb, "events missing", "want %d events, have %d: %v", n, len(got), got)
	return nil
}

func mustRun(tb testing.TB, p *Probe) *recorder {
	tb.Helper()
	return mustRunEvery(tb, p, 20*time.Millisecond)
}

// mustRunEvery runs p into a recorder, draining the ring every tick
// besides when the kernel wakes the reader.
func mustRunEvery(tb testing.TB, p *Probe, tick time.Duration) *recorder {
	tb.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, rec, tick, func() {}) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
	return rec
}

func python() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

// helper is a running testdata/sockhelper.py: a process that does the
// socket syscalls the test tells it to.
type helper struct {
	tb  testing.TB
	pid int
	w   interface{ Write([]byte) (int, error) }
	out *bufio.Reader
}

// mustHelper starts a helper process, killed at the end of the test.
func mustHelper(tb testing.TB) *helper {
	tb.Helper()
	cmd := exec.Command(python(), "testdata/sockhelper.py")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(tb, err)
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	h := &helper{tb: tb, w: in, out: bufio.NewReader(out)}
	h.pid = h.ready()
	require.Equal(tb, cmd.Process.Pid, h.pid)
	return h
}

func (h *helper) ready() int {
	h.tb.Helper()
	line, err := h.out.ReadString('\n')
	require.NoError(h.tb, err)
	var pid int
	_, err = fmt.Sscanf(line, "ready %d", &pid)
	require.NoError(h.tb, err, line)
	return pid
}

// do runs one command and returns the fields of its answer.
func (h *helper) do(args ...any) []string {
	h.tb.Helper()
	var parts []string
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			s := hex.EncodeToString(v)
			if s == "" {
				s = "-"
			}
			parts = append(parts, s)
		default:
			parts = append(parts, fmt.Sprint(v))
		}
	}
	_, err := h.w.Write([]byte(strings.Join(parts, " ") + "\n"))
	require.NoError(h.tb, err)
	line, err := h.out.ReadString('\n')
	require.NoError(h.tb, err)
	f := strings.Fields(line)
	require.True(h.tb, len(f) > 0 && f[0] == "ok", "helper %d: %v: %s", h.pid, args, line)
	return f[1:]
}

func (h *helper) int(args ...any) int {
	h.tb.Helper()
	f := h.do(args...)
	n, err := strconv.Atoi(f[0])
	require.NoError(h.tb, err)
	return n
}

// listen opens a listening socket; it returns its fd and port.
func (h *helper) listen() (int, int) {
	f := h.do("listen")
	fd, _ := strconv.Atoi(f[0])
	port, _ := strconv.Atoi(f[1])
	return fd, port
}

// read does one read(2) and returns what it got.
func (h *helper) read(fd int) []byte {
	h.tb.Helper()
	return h.bytes("read", fd)
}

// bytes runs a command that answers "LEN HEX" and returns the bytes.
func (h *helper) bytes(args ...any) []byte {
	h.tb.Helper()
	f := h.do(args...)
	if f[1] == "-" {
		return nil
	}
	b, err := hex.DecodeString(f[1])
	require.NoError(h.tb, err)
	return b
}

// fork forks the helper; the child answers on FIFOs of its own.
func (h *helper) fork() *helper {
	h.tb.Helper()
	dir := h.tb.TempDir()
	cmdPath, respPath := filepath.Join(dir, "cmd"), filepath.Join(dir, "resp")
	require.NoError(h.tb, unix.Mkfifo(cmdPath, 0o600))
	require.NoError(h.tb, unix.Mkfifo(respPath, 0o600))
	pid := h.int("fork", cmdPath, respPath)
	h.tb.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL); _, _ = unix.Wait4(pid, nil, unix.WNOHANG, nil) })
	cmdF, err := os.OpenFile(cmdPath, os.O_WRONLY, 0)
	require.NoError(h.tb, err)
	respF, err := os.Open(respPath)
	require.NoError(h.tb, err)
	h.tb.Cleanup(func() { cmdF.Close(); respF.Close() })
	c := &helper{tb: h.tb, w: cmdF, out: bufio.NewReader(respF)}
	c.pid = c.ready()
	require.Equal(h.tb, pid, c.pid)
	return c
}

// watch watches pid under its real start time.
func watch(tb testing.TB, p *Probe, pid int) uint64 {
	tb.Helper()
	start, err := ProcStartTicks(pid)
	require.NoError(tb, err)
	require.NoError(tb, p.Watch(uint32(pid), start))
	return start
}

// watchFlags are the kernel's watch flags of pid (enum watch_flags).
func watchFlags(tb testing.TB, p *Probe, pid int) lifecycleWatchFlags {
	tb.Helper()
	var info lifecycleWatchInfo
	require.NoError(tb, p.maps["watched"].Lookup(uint32(pid), &info))
	return lifecycleWatchFlags(info.Flags)
}

// dial connects to port on 127.0.0.1 from 127.0.0.2.
func dial(tb testing.TB, port int) *net.TCPConn {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func mustWrite(tb testing.TB, c net.Conn, b []byte) {
	tb.Helper()
	_, err := c.Write(b)
	require.NoError(tb, err)
}

// fromClient selects the events of the connection c is the client end of.
func fromClient(c net.Conn) func(ConnEvent) bool {
	addr := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return func(ev ConnEvent) bool { return ev.Peer == addr }
}

func dirOf(d Direction, keep func(ConnEvent) bool) func(ConnEvent) bool {
	return func(ev ConnEvent) bool { return ev.Dir == d && keep(ev) }
}

// counterDelta reads the counters and returns a function giving how much
// one has grown since.
func counterDelta(tb testing.TB, p *Probe) func(name string) uint64 {
	tb.Helper()
	before, err := p.Counters()
	require.NoError(tb, err)
	return func(name string) uint64 {
		tb.Helper()
		now, err := p.Counters()
		require.NoError(tb, err)
		_, ok := now[name]
		require.True(tb, ok, "no counter %s", name)
		return now[name] - before[name]
	}
}

// joined concatenates the data of events.
func joined(evs []ConnEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		b.Write(ev.Data)
	}
	return b.String()
}

const (
	loginReq  = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nuser=a&pw=b"
	healthReq = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
	resp200   = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	resp401   = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
)

// patience stretches a bound on waiting for the kernel in the kernel
// matrix's guests, whose CPU is emulated (tens of times slower than the
// host's): a bound, never an assertion about speed.
func patience(d time.Duration) time.Duration {
	if os.Getenv("AUTHPROBE_GUEST") != "" {
		return 10 * d
	}
	return d
}

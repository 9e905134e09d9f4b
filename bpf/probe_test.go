package bpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
)

// SkipIfNotSupported skips tb when err says the kernel lacks a feature.
func SkipIfNotSupported(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ebpf.ErrNotSupported) {
		tb.Skipf("kernel feature missing: %v", err)
	}
}

func mustLoad(tb testing.TB, cfg Config) *Probe {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: loads eBPF programs")
	}
	p, err := Load(cfg)
	SkipIfNotSupported(tb, err)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, p.Close()) })
	return p
}

// mustStartServer runs testdata/server.py and returns its pid and address.
func mustStartServer(tb testing.TB) (int, string) {
	tb.Helper()
	cmd := exec.Command("python3", "testdata/server.py")
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(tb, err)
	var port int
	_, err = fmt.Sscanf(line, "listening %d", &port)
	require.NoError(tb, err)
	return cmd.Process.Pid, fmt.Sprintf("127.0.0.1:%d", port)
}

// recorder keeps copies of what the probe delivers.
type recorder struct {
	mu     sync.Mutex
	data   []ConnEvent
	closes []ConnEvent
	execs  []ProcEvent
}

func (r *recorder) Data(ev ConnEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.Data = append([]byte(nil), ev.Data...)
	r.data = append(r.data, ev)
}
func (r *recorder) Close(ev ConnEvent) { r.mu.Lock(); r.closes = append(r.closes, ev); r.mu.Unlock() }
func (r *recorder) Exec(ev ProcEvent)  { r.mu.Lock(); r.execs = append(r.execs, ev); r.mu.Unlock() }
func (r *recorder) Fork(ProcEvent)     {}
func (r *recorder) Exit(ProcEvent)     {}

func (r *recorder) snapshot() ([]ConnEvent, []ConnEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ConnEvent(nil), r.data...), append([]ConnEvent(nil), r.closes...)
}

func mustRun(tb testing.TB, p *Probe) *recorder {
	tb.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, rec, 100*time.Millisecond, func() {}) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
	return rec
}

func TestCaptureLoginOnly(t *testing.T) {
	p := mustLoad(t, Config{
		CaptureBytes:  4096,
		ResponseBytes: 1024,
		Routes:        []RoutePrefix{{Method: "POST", Prefix: "/login"}, {Prefix: "/api/"}, {Method: "POST", Prefix: "/oauth/token"}, {Method: "POST", Prefix: "/logout"}},
	})
	rec := mustRun(t, p)
	pid, addr := mustStartServer(t)
	require.NoError(t, p.Watch(uint32(pid)))

	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")},
	}).DialContext}}
	get, err := client.Get("http://" + addr + "/public")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, get.Body)
	get.Body.Close()
	resp, err := client.Post("http://"+addr+"/login", "application/x-www-form-urlencoded",
		strings.NewReader("user=alice&password=wrong"))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	client.CloseIdleConnections()

	require.Eventually(t, func() bool {
		_, closes := rec.snapshot()
		return len(closes) == 1
	}, 5*time.Second, 20*time.Millisecond)
	data, closes := rec.snapshot()

	var in, out strings.Builder
	for i, ev := range data {
		require.Equal(t, uint32(pid), ev.PID)
		require.Equal(t, uint32(i), ev.Seq, "sequence without gaps")
		require.Equal(t, "127.0.0.2", ev.Peer.Addr().String())
		require.Equal(t, addr, ev.Local.String())
		if ev.Dir == Ingress {
			in.Write(ev.Data)
		} else {
			out.Write(ev.Data)
		}
	}
	require.True(t, strings.HasPrefix(in.String(), "POST /login HTTP/1.1\r\n"), in.String())
	require.Contains(t, in.String(), "password=wrong")
	require.NotContains(t, in.String(), "GET /public", "non-auth request captured")
	require.True(t, strings.HasPrefix(out.String(), "HTTP/1.1 401"), out.String())
	require.Equal(t, data[0].Gen, closes[0].Gen)

	counters, err := p.Counters()
	require.NoError(t, err)
	require.Equal(t, uint64(1), counters["requests_matched"])
	require.Zero(t, counters["drop_ringbuf_full"])
}

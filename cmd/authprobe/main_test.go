package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/export"
	"github.com/authprobe/authprobe/spanbuilder"
)

// TestCommandLineErrors: a mistake on the command line or in the config
// is one clear line on stderr and a non-zero exit, never a stack trace.
func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("routes:\n  - name: auth.login\n    kind: logn\n    path: /login\ntargets:\n  - pid: 1\n"), 0o600))

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"run with an argument", []string{"run", "extra"}, 2, `unexpected argument "extra"`},
		{"check with an argument", []string{"check", "extra"}, 2, `unexpected argument "extra"`},
		{"run unknown flag", []string{"run", "--frob"}, 2, "flag provided but not defined: -frob"},
		{"bad pid", []string{"run", "--config", bad, "--pid", "x"}, 2, `"x" is not a process id`},
		{"bad exporter", []string{"run", "--config", bad, "--exporter", "kafka"}, 2, `--exporter "kafka"`},
		{"missing file", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}, 1, "nope.yaml"},
		{"bad kind with line", []string{"run", "--config", bad}, 1, `bad.yaml:3: routes[0].kind: "logn" is not one of`},
		{"bad log level", []string{"run", "--config", bad, "--log-level", "loud"}, 2, `--log-level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.stderr)
			require.NotContains(t, stderr.String(), "goroutine ", "no stack traces")
			require.Empty(t, stdout.String(), "stdout is for spans only")
		})
	}
}

// TestCheckReportsBadConfig: check says what is wrong and exits 1.
func TestCheckReportsBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("capture_bytes: 99999999\nroutes: []\n"), 0o600))
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config", bad}, &stdout, &stderr)
	require.Equal(t, 1, code)
	out := stdout.String()
	require.Contains(t, out, "INVALID")
	require.Contains(t, out, "capture_bytes")
	require.Contains(t, out, "kernel:")
	require.True(t, strings.Contains(out, "verdict:"), out)
}

func TestRoutePrefixes(t *testing.T) {
	tests := map[string]string{
		"/login":            "/login",
		"/api/**":           "/api/",
		"/users/{id}/login": "/users/",
		"/*/token":          "/",
	}
	for path, want := range tests {
		got := routePrefixes([]config.Route{{Method: "POST", Path: path}})
		require.Equal(t, []string{want}, got, path)
	}
}

// TestHelp: --help is asked for: the flags on stdout, exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"check", "-h"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		require.Equal(t, 0, code, "%v: stderr %s", args, stderr.String())
		require.Contains(t, stdout.String(), "config", "%v", args)
		require.Empty(t, stderr.String(), "%v", args)
	}
}

// TestDefaultsCommand prints the built-in config, which parses.
func TestDefaultsCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"defaults"}, &stdout, &stderr), stderr.String())
	require.Equal(t, string(config.DefaultYAML()), stdout.String())
	_, err := config.Parse("defaults", stdout.Bytes())
	require.NoError(t, err)
}

func mustNoDefaultFile(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(config.DefaultPath); err == nil {
		t.Skipf("%s exists on this machine; the built-in default is not used", config.DefaultPath)
	}
}

// TestConfigSources: --config, else the built-in default; a config without
// targets watches the default targets unless --pid names some.
func TestConfigSources(t *testing.T) {
	mustNoDefaultFile(t)
	dir := t.TempDir()
	routesOnly := filepath.Join(dir, "routes.yaml")
	require.NoError(t, os.WriteFile(routesOnly, []byte("routes:\n  - {name: auth.login, kind: login, method: POST, path: /login}\n"), 0o600))
	builtin, err := config.Default(nil)
	require.NoError(t, err)

	cfg, src, err := loadRunConfig(runFlags{})
	require.NoError(t, err)
	require.Contains(t, src.name, "built-in default")
	require.False(t, src.defaultTargets)
	require.Equal(t, builtin.Routes, cfg.Routes)
	require.True(t, cfg.Security.Username.RandomKey)

	cfg, src, err = loadRunConfig(runFlags{config: routesOnly})
	require.NoError(t, err)
	require.Equal(t, routesOnly, src.name)
	require.True(t, src.defaultTargets)
	require.Equal(t, builtin.Targets, cfg.Targets)
	require.True(t, cfg.Security.Username.RandomKey)

	cfg, src, err = loadRunConfig(runFlags{config: routesOnly, pids: pidList{4242}})
	require.NoError(t, err)
	require.False(t, src.defaultTargets)
	require.Equal(t, []config.Target{{PID: 4242}}, cfg.Targets)
}

// TestCheckWithoutConfig: check validates the built-in default and says so.
func TestCheckWithoutConfig(t *testing.T) {
	mustNoDefaultFile(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"check"}, &stdout, &stderr)
	out := stdout.String()
	require.Contains(t, out, "config built-in default")
	require.Contains(t, out, "  valid: ")
	require.Contains(t, out, "verdict:")
	if code != 0 {
		require.Contains(t, out, "cannot work on this machine", "a valid config fails only on the kernel side")
	}
}

// TestRoutesOnlyConfigRuns: the agent starts with a config that has only
// routes, and says in one warning line that usernames hash with a per-run
// key and how to set a stable one. Capture is scoped to a child it starts.
func TestRoutesOnlyConfigRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent loads eBPF programs")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "routes.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("routes:\n  - {name: auth.login, kind: login, method: POST, path: /login}\n"), 0o600))
	child := exec.Command("sleep", "60")
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runAgent(ctx, []string{"--config", cfgPath, "--pid", strconv.Itoa(child.Process.Pid), "--metrics-addr", addr}, &stdout, &stderr)
	}()
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "stderr:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not stop:\n%s", stderr.String())
	}
	var warnings []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "level=WARN") {
			warnings = append(warnings, line)
		}
	}
	require.Len(t, warnings, 1, "stderr:\n%s", stderr.String())
	require.Contains(t, warnings[0], "random per-run key")
	require.Contains(t, warnings[0], "key_file or key_env")
	require.Empty(t, stdout.String(), "no traffic, no spans")
}

// syncBuffer is written by the agent while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLossMetric: every export drop reason is a lost attempt, once; a
// reason two stages claim is refused.
func TestLossMetric(t *testing.T) {
	exp, err := export.New(context.Background(), export.Config{Kind: export.KindStdout, Stdout: io.Discard, BufferBytes: 1})
	require.NoError(t, err)
	exp.Emit(spanbuilder.Span{Name: "auth.login"}) // fills the buffer
	exp.Emit(spanbuilder.Span{Name: "auth.login"}) // does not fit: buffer_full
	require.NoError(t, exp.Shutdown(context.Background()))
	exp.Emit(spanbuilder.Span{Name: "auth.login"}) // after shutdown

	m, err := newLossMetric(exportLoss(exp), lossSource{stage: "kernel", reasons: []string{"ringbuf_full"}, read: func() []uint64 { return []uint64{7} }})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.Equal(t, "authprobe_auth_attempts_lost_total", mf.GetName())
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["stage"]+"/"+labels["reason"]] = mt.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{"export/buffer_full": 1, "export/shutdown": 1, "export/export_failed": 0,
		"export/spill_corrupt": 0, "kernel/ringbuf_full": 7}, got)

	_, err = newLossMetric(exportLoss(exp), lossSource{stage: "decoder", reasons: []string{"shutdown"}})
	require.ErrorContains(t, err, `"shutdown" counted by both export and decoder`)
}

// TestCheckReportsBackends: check names the backend run would use and
// why each cheaper one was refused; a forced backend is the one named,
// and a forced one that is refused fails the check.
func TestCheckReportsBackends(t *testing.T) {
	noHook := fmt.Errorf("capture backend sock: %w: no raw tracepoint sock_recv_length (kernel 6.3+)", bpf.ErrNoHook)
	checks := []bpf.BackendCheck{{Backend: "sock", Err: noHook}, {Backend: "syscalls"}}

	var out bytes.Buffer
	require.True(t, reportBackends(&out, checks, "auto"))
	require.Contains(t, out.String(), "  sock      no   kernel lacks the hook: no raw tracepoint sock_recv_length (kernel 6.3+)\n")
	require.Contains(t, out.String(), "  syscalls  yes  syscall tracepoints")
	require.Contains(t, out.String(), "capture backend: syscalls (the cheapest that works here); refused before it: sock: kernel lacks the hook: no raw tracepoint sock_recv_length (kernel 6.3+)\n")

	out.Reset()
	require.True(t, reportBackends(&out, checks, "syscalls"))
	require.Contains(t, out.String(), "capture backend: syscalls (forced with --capture-backend)\n")

	out.Reset()
	require.False(t, reportBackends(&out, checks, "sock"))
	require.Contains(t, out.String(), "capture backend: none (sock is forced with --capture-backend and refused here)\n")

	out.Reset()
	verifier := errors.New("capture backend syscalls: load programs: permission denied:\n\tcombined stack size of 5 calls is 544. Too large")
	require.False(t, reportBackends(&out, []bpf.BackendCheck{{Backend: "sock", Err: noHook}, {Backend: "syscalls", Err: verifier}}, "auto"))
	require.Contains(t, out.String(), "  syscalls  no   load programs: permission denied:\n                 \tcombined stack size")
	require.Contains(t, out.String(), "capture backend: none (every backend was refused)\n")

	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"check", "--capture-backend", "kprobes"}, &out, &stderr))
	require.Contains(t, stderr.String(), `--capture-backend "kprobes"`)
}

// TestCheckNamesMissingKernelFeature: a kernel without bpf_loop (5.15)
// gets a required "no" line naming the feature and the release that
// added it.
func TestCheckNamesMissingKernelFeature(t *testing.T) {
	fs := requirementFeatures([]bpf.RequirementCheck{
		{Requirement: bpf.Requirement{Name: "bpf_loop", Since: "5.17", Why: "loops"}, Err: fmt.Errorf("probe: %w", ebpf.ErrNotSupported)},
		{Requirement: bpf.Requirement{Name: "ring buffer", Since: "5.8", Why: "events"}},
	})
	require.Equal(t, []feature{
		{name: "bpf_loop", ok: false, required: true, detail: "not supported by this kernel: needs kernel 5.17+ (loops)"},
		{name: "ring buffer", ok: true, required: true, detail: "available (kernel 5.8+): events"},
	}, fs)
}

// TestCheckListsTLSLibraries: `check --pid` names the TLS library a
// process maps (a Python that imported ssl: the shared libssl) and says
// it is probed.
func TestCheckListsTLSLibraries(t *testing.T) {
	mustNoDefaultFile(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 (its ssl module maps the shared libssl)")
	}
	cmd := exec.Command("/usr/bin/python3", "-c", "import ssl, sys; print('ready', flush=True); sys.stdin.read()")
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 6)
	_, err = io.ReadFull(out, buf)
	require.NoError(t, err)

	var stdout, stderr bytes.Buffer
	run([]string{"check", "--pid", strconv.Itoa(cmd.Process.Pid)}, &stdout, &stderr)
	got := stdout.String()
	require.Contains(t, got, "TLS libraries of process "+strconv.Itoa(cmd.Process.Pid)+":")
	require.Regexp(t, `libssl\.so\.3: openssl 3\.\S+\n    probed: yes  \d+ functions \(.*SSL_read.*SSL_write.*\)`, got)
}

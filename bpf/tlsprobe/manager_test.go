package tlsprobe

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/bpf/uprobe"
	"github.com/stretchr/testify/require"
)

type fakeProbes struct{ closed *int }

func (f fakeProbes) Close() error { *f.closed++; return nil }

// startSSLProcess starts a Python that has imported ssl (it maps the
// system's libssl) and waits until it has.
func startSSLProcess(t *testing.T) uint32 {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 (its ssl module uses the shared libssl)")
	}
	cmd := exec.Command(py, "-c", "import ssl, sys; print('ready', flush=True); sys.stdin.read()")
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 6)
	_, err = io.ReadFull(out, buf)
	require.NoError(t, err)
	require.Equal(t, "ready\n", string(buf))
	return uint32(cmd.Process.Pid)
}

// TestOneSetPerFile: two processes mapping the same libssl share one
// uprobe set, attached with the first and detached with the last.
func TestOneSetPerFile(t *testing.T) {
	a, b := startSSLProcess(t), startSSLProcess(t)
	attached, closed := 0, 0
	var paths []string
	m, err := New(Config{
		Resolver: uprobe.NewResolver(uprobe.Config{}),
		AttachOpenSSL: func(path string, funcs map[string]uint64) (io.Closer, error) {
			require.Contains(t, funcs, "SSL_read")
			attached++
			paths = append(paths, path)
			return fakeProbes{&closed}, nil
		},
	})
	require.NoError(t, err)
	m.Sync([]uint32{a})
	require.Equal(t, 1, attached)
	require.True(t, strings.HasPrefix(paths[0], "/proc/"), "attached through the process's root: %s", paths[0])
	m.Sync([]uint32{a, b})
	m.Sync([]uint32{a, b})
	require.Equal(t, 1, attached, "one set per file")
	files := m.Files()
	require.Len(t, files, 1)
	require.Equal(t, 2, files[0].Users)
	require.Contains(t, files[0].Library, "openssl 3")
	require.Contains(t, files[0].Path, "libssl.so")
	m.Sync([]uint32{b})
	require.Equal(t, 0, closed)
	m.Sync(nil)
	require.Equal(t, 1, closed, "detached with the last process")
	require.Empty(t, m.Files())
	require.NoError(t, m.Close())
}

// TestUnsupportedGoSkipped: a stripped Go binary of a release with no
// struct layout (go1.25: no DWARF, not in the version table) is never
// probed, and the agent says so in one log line however often it syncs.
func TestUnsupportedGoSkipped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with go1.25 (GOTOOLCHAIN fetches it)")
	}
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "test", "servers", "goserver", "main.go"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module goserver\n\ngo 1.25\n"), 0o644))
	bin := filepath.Join(dir, "goserver")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOTOOLCHAIN=go1.25.5")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("go1.25.5 not available: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make([]byte, len("listening "))
	_, err = io.ReadFull(out, line)
	require.NoError(t, err)

	var logs bytes.Buffer
	m, err := New(Config{
		Resolver: uprobe.NewResolver(uprobe.Config{}),
		AttachOpenSSL: func(string, map[string]uint64) (io.Closer, error) {
			t.Fatal("no OpenSSL here")
			return nil, nil
		},
		AttachGo: func(string, *uprobe.GoTarget) (io.Closer, error) {
			t.Fatal("an unsupported Go binary must not be probed")
			return nil, nil
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	for range 3 {
		m.Sync([]uint32{uint32(cmd.Process.Pid)})
	}
	t.Log(logs.String())
	require.Empty(t, m.Files())
	require.Equal(t, 1, strings.Count(logs.String(), "TLS library not probed"), logs.String())
	require.Contains(t, logs.String(), "unsupported Go binary")
	require.Contains(t, logs.String(), "go1.25.5")
}

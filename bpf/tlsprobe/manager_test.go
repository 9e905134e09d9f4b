package tlsprobe

import (
	"io"
	"os"
	"os/exec"
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

package bpf

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/bpf/uprobe"
	"github.com/authprobe/authprobe/test/testutil"
	"github.com/stretchr/testify/require"
)

// startTLSPython starts test/servers/python/login_server.py serving HTTPS
// with a fresh self-signed certificate; it returns its pid and port.
func startTLSPython(tb testing.TB) (int, int) {
	tb.Helper()
	cert, key := testutil.SelfSignedCert(tb)
	cmd := exec.Command(python(), filepath.Join("..", "test", "servers", "python", "login_server.py"), "0")
	cmd.Env = append(os.Environ(), "TLS_CERT="+cert, "TLS_KEY="+key)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	require.NoError(tb, cmd.Start())
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(tb, err)
	var port int
	_, err = fmt.Sscanf(line, "listening %d", &port)
	require.NoError(tb, err, line)
	return cmd.Process.Pid, port
}

// attachTLS attaches the OpenSSL probes to every OpenSSL file pid maps,
// detached at the end of the test; it returns how many files.
func attachTLS(tb testing.TB, p *Probe, pid int) int {
	tb.Helper()
	targets, err := uprobe.NewResolver(uprobe.Config{}).Process(pid)
	require.NoError(tb, err)
	n := 0
	for _, t := range targets {
		if t.OpenSSL == nil || !t.Probeable() {
			continue
		}
		u, err := p.AttachOpenSSL(t.File.OpenPath, t.OpenSSL.Funcs)
		require.NoError(tb, err)
		tb.Cleanup(func() { require.NoError(tb, u.Close()) })
		n++
	}
	return n
}

// curlTLS runs curl -k against port from 127.0.0.2 with args and returns
// its output (status code last).
func curlTLS(tb testing.TB, port int, args ...string) string {
	tb.Helper()
	base := []string{"-sk", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}\n"}
	out, err := exec.Command("curl", append(base, args...)...).CombinedOutput()
	require.NoError(tb, err, string(out))
	return string(out)
}

// TestTLSOpenSSLShared: a Python ssl server (shared libssl.so.3). The
// plaintext of its SSL_read_ex/SSL_write_ex reaches user space as the
// socket's streams (source TLS, boundary at the first request), the
// ciphertext never does, and every plaintext I/O is attributed.
func TestTLSOpenSSLShared(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{TLS: true})
		rec := mustRun(t, p)
		pid, port := startTLSPython(t)
		require.Equal(t, 1, attachTLS(t, p, pid), "libssl files")
		watch(t, p, pid)
		delta := counterDelta(t, p)

		url := fmt.Sprintf("https://127.0.0.1:%d", port)
		// Two logins and a health check on one keep-alive connection.
		out := curlTLS(t, port, "--http1.1", "-d", "username=alice&password=wrong", url+"/login",
			"--next", "-sk", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}\n", url+"/health",
			"--next", "-sk", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}\n", "-d", "username=alice&password=correct-horse", url+"/login")
		require.Equal(t, "401\n200\n200\n", out)

		mine := func(ev ConnEvent) bool { return ev.PID == uint32(pid) }
		in := rec.waitEvents(t, 1, func(ev ConnEvent) bool {
			return mine(ev) && ev.Dir == Ingress && strings.Contains(string(ev.Data), "correct-horse")
		})
		require.Equal(t, SourceTLS, in[0].Source)
		rec.waitEvents(t, 2, func(ev ConnEvent) bool {
			return mine(ev) && ev.Dir == Egress && strings.HasPrefix(string(ev.Data), "HTTP/1.")
		})
		all := rec.events(mine)
		require.NotEmpty(t, all)
		var ingress []ConnEvent
		for _, ev := range all {
			require.Equal(t, SourceTLS, ev.Source, "no event of the plaintext path")
			require.Equal(t, "127.0.0.2", ev.Peer.Addr().String())
			require.Equal(t, uint16(port), ev.Local.Port())
			require.NotContains(t, string(ev.Data), "\x16\x03", "no TLS record")
			if ev.Dir == Ingress {
				ingress = append(ingress, ev)
			}
		}
		require.True(t, ingress[0].Flags&FlagBoundary != 0, "the first request starts at a boundary: %+v", ingress[0])
		require.True(t, strings.HasPrefix(string(ingress[0].Data), "POST /login HTTP/1.1\r\n"), "%q", ingress[0].Data)
		require.Zero(t, ingress[0].Off)
		require.Equal(t, uint64(0), delta("drop_tls_unattributed"))
		require.GreaterOrEqual(t, delta("tls_connections"), uint64(1))
		require.Greater(t, delta("tls_io"), uint64(3))
	})
}

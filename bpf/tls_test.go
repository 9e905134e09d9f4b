package bpf

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		// Its first SSL call marked the process: its socket I/O is now
		// looked up among SSL calls in flight (none is before).
		require.NotZero(t, watchFlags(t, p, pid)&lifecycleWatchFlagsWATCH_SSL_CALLS)
		watch(t, p, pid) // watched again: the mark stays
		require.NotZero(t, watchFlags(t, p, pid)&lifecycleWatchFlagsWATCH_SSL_CALLS)
	})
}

// buildGoServer builds test/servers/goserver into a temp dir with extra
// go build flags (e.g. -ldflags=-s -w) and env (GOTOOLCHAIN).
func buildGoServer(tb testing.TB, env []string, flags ...string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "goserver")
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "./test/servers/goserver")...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build goserver %v: %v\n%s", flags, err, b)
	}
	return out
}

// startTLSGo starts a goserver binary serving HTTPS; pid and port.
func startTLSGo(tb testing.TB, bin string) (int, int) {
	tb.Helper()
	cert, key := testutil.SelfSignedCert(tb)
	cmd := exec.Command(bin, "0")
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

// TestTLSGo: a Go net/http server over crypto/tls, built normally and
// stripped: the plaintext of (*tls.Conn).Read/Write, taken at their RET
// instructions, is the socket's streams (source TLS) for HTTP/1.1 and
// HTTP/2, and every I/O is attributed.
func TestTLSGo(t *testing.T) {
	skipUnlessRoot(t)
	for _, build := range []struct {
		name  string
		env   []string
		flags []string
	}{
		{"go1.26", nil, nil},
		{"go1.26 stripped", nil, []string{"-ldflags=-s -w"}},
		// The module proxy has it (GOTOOLCHAIN fetches it once).
		{"go1.27.3 stripped", []string{"GOTOOLCHAIN=go1.27.3"}, []string{"-ldflags=-s -w"}},
	} {
		t.Run(build.name, func(t *testing.T) {
			bin := buildGoServer(t, build.env, build.flags...)
			target, err := uprobe.ResolveGo(bin)
			require.NoError(t, err)
			require.Equal(t, len(build.flags) > 0, target.Stripped)
			require.True(t, strings.HasPrefix(target.Version, strings.Fields(build.name)[0]), "built with %s", target.Version)
			p := mustLoad(t, BackendSock, Config{TLS: true})
			rec := mustRun(t, p)
			pid, port := startTLSGo(t, bin)
			u, err := p.AttachGoTLS(bin, goTLSOf(target))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, u.Close()) })
			start, err := ProcStartTicks(pid)
			require.NoError(t, err)
			require.NoError(t, p.WatchWith(uint32(pid), start, WatchOptions{Goroutines: true}))
			delta := counterDelta(t, p)
			url := fmt.Sprintf("https://127.0.0.1:%d/login", port)

			mine := func(ev ConnEvent) bool { return ev.PID == uint32(pid) }
			for _, proto := range []string{"--http1.1", "--http2"} {
				mark := rec.mark()
				require.Equal(t, "401\n", curlTLS(t, port, proto, "-d", "username=alice&password=wrong-"+proto[2:], url))
				in := rec.waitEventsSince(t, mark, 1, func(ev ConnEvent) bool {
					return mine(ev) && ev.Dir == Ingress && strings.Contains(string(ev.Data), "wrong-"+proto[2:])
				})
				require.Equal(t, SourceTLS, in[0].Source)
				first := rec.eventsSince(mark, func(ev ConnEvent) bool { return mine(ev) && ev.Dir == Ingress })[0]
				require.True(t, first.Flags&FlagBoundary != 0, "starts at a boundary: %+v", first)
				want := "POST /login HTTP/1.1\r\n"
				if proto == "--http2" {
					want = "PRI * HTTP/2.0\r\n"
				}
				require.True(t, strings.HasPrefix(string(first.Data), want), "%q", first.Data)
				rec.waitEventsSince(t, mark, 1, func(ev ConnEvent) bool { return mine(ev) && ev.Dir == Egress && ev.Source == SourceTLS })
				for _, ev := range rec.eventsSince(mark, mine) {
					require.Equal(t, SourceTLS, ev.Source)
				}
			}
			// A frame written as a connection closes finds its fd closed:
			// counted apart (tls_after_close), not as a loss.
			t.Logf("tls_after_close %d", delta("tls_after_close"))
			require.Equal(t, uint64(0), delta("drop_tls_unattributed"))
			require.GreaterOrEqual(t, delta("tls_connections"), uint64(2))
			// Go's crypto/tls makes no SSL_* call: its socket I/O costs no
			// lookup among them.
			require.Zero(t, watchFlags(t, p, pid)&lifecycleWatchFlagsWATCH_SSL_CALLS)
		})
	}
}

// goTLSOf is tlsprobe.GoTLS (not imported here: it imports this package).
func goTLSOf(t *uprobe.GoTarget) GoTLS {
	g := GoTLS{
		Read:        GoTLSFunc{Entry: t.Read.Offset, Returns: t.Read.Returns},
		Write:       GoTLSFunc{Entry: t.Write.Offset, Returns: t.Write.Returns},
		ConnConn:    t.Offsets.ConnConn,
		TCPConnFD:   t.Offsets.TCPConnFD,
		NetFDPfd:    t.Offsets.NetFDPfd,
		PollFDSysfd: t.Offsets.PollFDSysfd,
	}
	if !t.PIE {
		g.TCPConnItab = t.Offsets.TCPConnItab
	}
	return g
}

// TestTLSNodeStatic: Node's https (OpenSSL linked into the node
// executable, on memory BIOs: no socket I/O inside SSL_read). Each
// SSL_read is attributed to the socket whose ciphertext the event loop
// read just before it, remembered per SSL*; several concurrent
// keep-alive connections, each with its own logins, must each get only
// their own plaintext.
func TestTLSNodeStatic(t *testing.T) {
	skipUnlessRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	p := mustLoad(t, BackendSock, Config{TLS: true})
	rec := mustRun(t, p)
	cert, key := testutil.SelfSignedCert(t)
	cmd := exec.Command(node, filepath.Join("..", "test", "servers", "node", "login_server.js"), "0")
	cmd.Env = append(os.Environ(), "TLS_CERT="+cert, "TLS_KEY="+key)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	var port int
	_, err = fmt.Sscanf(line, "listening %d", &port)
	require.NoError(t, err, line)
	pid := cmd.Process.Pid
	require.Equal(t, 1, attachTLS(t, p, pid), "the node executable")
	watch(t, p, pid)
	delta := counterDelta(t, p)

	const conns, logins = 4, 3
	url := fmt.Sprintf("https://127.0.0.1:%d/login", port)
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			// One curl, one keep-alive connection, several logins.
			args := []string{"-sk", "--http1.1", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}\n"}
			var all []string
			for j := range logins {
				if j > 0 {
					all = append(all, "--next")
				}
				all = append(all, args...)
				all = append(all, "-d", fmt.Sprintf("username=user%d&password=pw-%d-%d", i, i, j), url)
			}
			b, err := exec.Command("curl", all...).CombinedOutput()
			if err == nil && string(b) != strings.Repeat("401\n", logins) {
				err = fmt.Errorf("curl %d: %q", i, b)
			}
			errs <- err
		}()
	}
	for range conns {
		require.NoError(t, <-errs)
	}
	mine := func(ev ConnEvent) bool { return ev.PID == uint32(pid) && ev.Dir == Ingress }
	rec.waitEvents(t, conns*logins, func(ev ConnEvent) bool { return mine(ev) && strings.Contains(string(ev.Data), "password=pw-") })
	// Every connection's plaintext names one user only.
	users := map[uint64]string{}
	for _, ev := range rec.events(mine) {
		require.Equal(t, SourceTLS, ev.Source)
		d := string(ev.Data)
		i := strings.Index(d, "username=user")
		if i < 0 {
			continue
		}
		u := d[i : i+len("username=user0")]
		if prev, ok := users[ev.Sock]; ok {
			require.Equal(t, prev, u, "connection %#x carries two clients' logins", ev.Sock)
		}
		users[ev.Sock] = u
	}
	require.Len(t, users, conns, "one connection per client")
	require.Equal(t, uint64(0), delta("drop_tls_unattributed"))
}

// TestTLSBodyInRecords: a login whose head and body arrive in separate
// TLS records (one Write each from a crypto/tls client) reaches user
// space whole, in order, from the boundary; and the server keeps
// answering correctly while the probes attach and detach repeatedly
// under traffic.
func TestTLSBodyInRecords(t *testing.T) {
	p := mustLoad(t, BackendSock, Config{TLS: true})
	rec := mustRun(t, p)
	pid, port := startTLSPython(t)
	watch(t, p, pid)
	require.Equal(t, 1, attachTLS(t, p, pid))

	d := tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}},
		Config:    &tls.Config{InsecureSkipVerify: true},
	}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	defer c.Close()
	body := "username=alice&password=split-secret"
	parts := []string{
		fmt.Sprintf("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", len(body)),
		body[:9], body[9:20], body[20:],
	}
	for _, part := range parts {
		_, err := c.Write([]byte(part))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond) // separate records, separate reads
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	in := rec.waitEvents(t, len(parts), func(ev ConnEvent) bool { return ev.Peer == local && ev.Dir == Ingress })
	require.Equal(t, strings.Join(parts, ""), joined(in))
	for i := 1; i < len(in); i++ {
		require.Equal(t, in[i-1].Off+uint64(in[i-1].Len), in[i].Off, "contiguous")
	}

	// Attach and detach under traffic: every answer stays right.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("https://127.0.0.1:%d/health", port)
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			out, err := exec.Command("curl", "-sk", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}", url).CombinedOutput()
			if err != nil || string(out) != "200" {
				done <- fmt.Errorf("curl: %v %q", err, out)
				return
			}
		}
	}()
	targets, err := uprobe.NewResolver(uprobe.Config{}).Process(pid)
	require.NoError(t, err)
	for range 20 {
		for _, tg := range targets {
			if tg.OpenSSL == nil {
				continue
			}
			u, err := p.AttachOpenSSL(tg.File.OpenPath, tg.OpenSSL.Funcs)
			require.NoError(t, err)
			time.Sleep(10 * time.Millisecond)
			require.NoError(t, u.Close())
		}
	}
	close(stop)
	require.NoError(t, <-done)
}

// TestTLSMemoryBIOGuess: OpenSSL on memory BIOs with the socket read
// outside any SSL call (Node's way), driven step by step. Connection A is
// mapped by its first login; then the helper reads B's ciphertext, then
// A's, and only then runs SSL_read on B, whose SSL* is not mapped yet:
// the last socket its thread read is A's, which A's SSL* owns, so B's
// takes the read before it. Each login stays on its own connection.
func TestTLSMemoryBIOGuess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{TLS: true})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		cert, key := testutil.SelfSignedCert(t)
		h.do("tls-init", cert, key)
		require.Equal(t, 1, attachTLS(t, p, h.pid), "libssl files")
		delta := counterDelta(t, p)

		clientFrom := func(ip string) (*tls.Conn, int) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			raw, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			require.NoError(t, err)
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
			t.Cleanup(func() { c.Close() })
			fd := h.int("accept", lfd)
			h.do("tls-wrap", fd)
			done := make(chan error, 1)
			go func() { done <- c.Handshake() }()
			h.do("tls-handshake", fd)
			require.NoError(t, <-done)
			return c, fd
		}
		login := func(user string) []byte {
			body := "username=" + user + "&password=wrong"
			return fmt.Appendf(nil, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		answer := func(c *tls.Conn, fd int) {
			h.do("tls-write", fd, []byte(resp401))
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			buf := make([]byte, len(resp401))
			_, err := io.ReadFull(c, buf)
			require.NoError(t, err)
		}
		a, afd := clientFrom("127.0.0.2")
		b, bfd := clientFrom("127.0.0.3")

		// A's first login maps A's SSL* to A's socket.
		_, err := a.Write(login("userA"))
		require.NoError(t, err)
		h.do("tls-recv", afd)
		require.Contains(t, string(h.bytes("tls-read", afd)), "username=userA")
		answer(a, afd)

		// B's ciphertext is read, then A's, then B's SSL_read runs.
		_, err = b.Write(login("userB"))
		require.NoError(t, err)
		_, err = a.Write(login("userA"))
		require.NoError(t, err)
		h.do("tls-recv", bfd) // each blocks until its record is there
		h.do("tls-recv", afd)
		require.Contains(t, string(h.bytes("tls-read", bfd)), "username=userB")
		require.Contains(t, string(h.bytes("tls-read", afd)), "username=userA")
		answer(b, bfd)
		answer(a, afd)

		mine := func(ev ConnEvent) bool {
			return ev.PID == uint32(h.pid) && ev.Dir == Ingress && strings.Contains(string(ev.Data), "username=")
		}
		evs := rec.waitEvents(t, 3, mine)
		want := map[string]string{"127.0.0.2": "username=userA", "127.0.0.3": "username=userB"}
		for _, ev := range rec.events(mine) {
			require.Equal(t, SourceTLS, ev.Source)
			require.Contains(t, string(ev.Data), want[ev.Peer.Addr().String()],
				"a login on the connection from %s", ev.Peer.Addr())
		}
		require.Len(t, evs, 3)
		require.GreaterOrEqual(t, delta("tls_guess_refused"), uint64(1), "A's socket refused for B's SSL*")
		require.Equal(t, uint64(0), delta("drop_tls_unattributed"))
	})
}

package chain

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// Languages of the backends.
const (
	Python = "python"
	Java   = "java"
	Go     = "go"
)

const (
	pythonPath = "/usr/bin/python3" // Debian's: psycopg2 is python3-psycopg2
	javaPath   = "/usr/bin/java"
	jdbcJar    = "/usr/share/java/postgresql.jar" // libpostgresql-jdbc-java
	// goBackend is the Go backend's package under test/servers/chain and
	// its executable's name.
	goBackend = "chain-go"
	// backendAccount runs the backends, as a legacy service's own user.
	backendAccount = "nobody"
)

// Backend is a running login/authorize service in one language.
type Backend struct {
	Lang string
	Addr string // 127.0.0.1:port
	PID  int
	proc *process
}

// BackendOptions shape a backend.
type BackendOptions struct {
	Lang string
	// DBAddr is where the backend connects (default: the Postgres); a
	// recording proxy may sit there.
	DBAddr string
	// DBPassword replaces the app role's password (a wrong one makes every
	// database login fail with 28P01).
	DBPassword string
	// PoolSize connections are kept and shared by the request threads; 0
	// takes 4; PerRequest opens one connection per request instead.
	PoolSize   int
	PerRequest bool
	// PollInterval of the background query outside any request; 0 takes
	// one second, negative turns it off.
	PollInterval time.Duration
	// Threads serving requests (Java; Python starts one per request).
	Threads int
	// Port to listen on; 0 takes a free one.
	Port int
}

// URL is the backend's address followed by path.
func (b *Backend) URL(path string) string { return "http://" + b.Addr + path }

// Stderr is what the backend wrote to stderr so far.
func (b *Backend) Stderr() string { return b.proc.stderr.String() }

// Request is one line of a backend's request log.
type Request struct {
	Method, Path string
	Status       int
	Traceparent  string // "" when none came
}

var requestLine = regexp.MustCompile(`^request (\S+) (\S+) (\d{3}) traceparent=(\S+)$`)

// Requests are the requests the backend answered so far.
func (b *Backend) Requests() []Request {
	var out []Request
	sc := bufio.NewScanner(strings.NewReader(b.Stderr()))
	for sc.Scan() {
		m := requestLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		st, _ := strconv.Atoi(m[3])
		tp := m[4]
		if tp == "-" {
			tp = ""
		}
		out = append(out, Request{Method: m[1], Path: m[2], Status: st, Traceparent: tp})
	}
	return out
}

// WaitRequests waits until the backend logged n requests and returns them.
func (b *Backend) WaitRequests(tb testing.TB, n int, timeout time.Duration) []Request {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := b.Requests()
		if len(r) >= n || time.Now().After(deadline) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MustStartBackend starts the backend of opts.Lang against pg, as the
// nobody account when root, and waits until it accepts connections.
func MustStartBackend(tb testing.TB, pg *Postgres, opts BackendOptions) *Backend {
	tb.Helper()
	src := filepath.Join(testutil.RepoRoot(tb), "test", "servers", "chain")
	// The services' own copy: the account they run as may not read the
	// work tree.
	dir := mustTempDir(tb, "chain-"+opts.Lang+"-")
	var cmd *exec.Cmd
	switch opts.Lang {
	case Python:
		if _, err := os.Stat(pythonPath); err != nil {
			tb.Skipf("%s missing: %v", pythonPath, err)
		}
		if out, err := exec.Command(pythonPath, "-c", "import psycopg2").CombinedOutput(); err != nil {
			tb.Skipf("psycopg2 missing for %s (Debian package python3-psycopg2): %v %s", pythonPath, err, out)
		}
		script := mustCopy(tb, filepath.Join(src, "python", "authz_server.py"), dir)
		cmd = exec.Command(pythonPath, "-u", script)
	case Java:
		for _, p := range []string{javaPath, jdbcJar} {
			if _, err := os.Stat(p); err != nil {
				tb.Skipf("%s missing (Debian packages default-jre-headless, libpostgresql-jdbc-java): %v", p, err)
			}
		}
		source := mustCopy(tb, filepath.Join(src, "java", "AuthzServer.java"), dir)
		cmd = exec.Command(javaPath, "-XX:-UsePerfData", "-Xmx128m", "-XX:TieredStopAtLevel=1",
			"-cp", jdbcJar, source)
	case Go:
		// Built into the services' dir: the account they run as runs it.
		bin := filepath.Join(dir, goBackend)
		if err := testutil.GoBuild(bin, "./test/servers/chain/"+goBackend); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			tb.Fatal(err)
		}
		cmd = exec.Command(bin)
	default:
		tb.Fatalf("no backend in %q", opts.Lang)
	}
	dbAddr := opts.DBAddr
	if dbAddr == "" {
		dbAddr = pg.Addr()
	}
	dbHost, dbPort, err := net.SplitHostPort(dbAddr)
	if err != nil {
		tb.Fatal(err)
	}
	password := opts.DBPassword
	if password == "" {
		password = AppPassword
	}
	pool := opts.PoolSize
	if pool == 0 {
		pool = 4
	}
	if opts.PerRequest {
		pool = 0
	}
	poll := opts.PollInterval
	if poll == 0 {
		poll = time.Second
	}
	threads := opts.Threads
	if threads == 0 {
		threads = 8
	}
	port := opts.Port
	if port == 0 {
		port = FreePort(tb)
	}
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=/usr/bin:/bin", "HOME=" + dir, "LANG=C.UTF-8",
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(port),
		"DB_HOST=" + dbHost, "DB_PORT=" + dbPort, "DB_NAME=" + Database,
		"DB_USER=" + AppUser, "DB_PASSWORD=" + password,
		"DB_POOL=" + strconv.Itoa(pool), "POLL_MS=" + strconv.FormatInt(max(poll.Milliseconds(), 0), 10),
		"THREADS=" + strconv.Itoa(threads),
	}
	b := &Backend{Lang: opts.Lang, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	b.proc = mustStart(tb, "backend "+opts.Lang, cmd, backendAccount, syscall.SIGTERM)
	b.PID = cmd.Process.Pid
	err = waitFor(b.proc, 60*time.Second, func() error {
		if !strings.Contains(b.proc.stdout.String(), "listening ") {
			return fmt.Errorf("no listening line yet")
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		tb.Fatalf("backend %s: %v\nstderr: %s", opts.Lang, err, testutil.Tail(b.Stderr(), 3000))
	}
	return b
}

func mustCopy(tb testing.TB, src, dir string) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dst
}

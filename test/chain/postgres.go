package chain

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// The database the schema creates and the role the backends log in as
// (test/servers/chain/schema.sql).
const (
	Database    = "authdb"
	AppUser     = "app"
	AppPassword = "app-db-secret"
	// Superuser is the bootstrap superuser; it logs in over the Unix socket
	// only (trust), never over TCP.
	Superuser = "postgres"
	// pgAccount runs the server: PostgreSQL refuses to run as root.
	pgAccount = "postgres"
)

// Postgres is a running PostgreSQL server of its own, in a temp dir, on a
// loopback port.
type Postgres struct {
	Host string // 127.0.0.1
	Port int
	bin  string
	dir  string // socket and logs
	proc *process
}

// PostgresOptions shape the server.
type PostgresOptions struct {
	// HBA lines go before the defaults (scram-sha-256 for every TCP login
	// from 127.0.0.1), so tests can ask for md5 or password for a role.
	HBA []string
	// NoSchema leaves out test/servers/chain/schema.sql (and the authdb
	// database).
	NoSchema bool
}

// Addr is host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Bin is the path of one of the server's programs (psql, pg_isready, ...).
func (p *Postgres) Bin(name string) string { return filepath.Join(p.bin, name) }

// PostgresBin is the directory of the newest installed Debian PostgreSQL
// server, or "" when there is none.
func PostgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(dirs[j]))))
		return vi < vj
	})
	if len(dirs) == 0 {
		return ""
	}
	return filepath.Dir(dirs[len(dirs)-1])
}

// MustStartPostgres initialises a cluster in a temp dir and starts it on a
// free 127.0.0.1 port as the postgres account (the test's own user when not
// root), with the chain schema loaded. Logs are JSON lines (LogEntries);
// pg_stat_statements is loaded. Cleanup stops it and removes the dir.
func MustStartPostgres(tb testing.TB, opts PostgresOptions) *Postgres {
	tb.Helper()
	bin := PostgresBin()
	if bin == "" {
		tb.Skip("PostgreSQL server not installed (Debian package postgresql)")
	}
	p := &Postgres{Host: "127.0.0.1", Port: FreePort(tb), bin: bin, dir: mustTempDir(tb, "chain-pg-")}
	mustChown(tb, p.dir, pgAccount)
	data := filepath.Join(p.dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", Superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "-N")
	initdb.Dir = p.dir
	if out, err := runAs(tb, initdb, pgAccount); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	hba := strings.Join(append(append([]string{"local all all trust"}, opts.HBA...),
		"host all all 127.0.0.1/32 scram-sha-256"), "\n") + "\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		tb.Fatal(err)
	}
	mustChown(tb, filepath.Join(data, "pg_hba.conf"), pgAccount)
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=60",
		"-c", "shared_preload_libraries=pg_stat_statements",
		"-c", "logging_collector=on", "-c", "log_destination=jsonlog",
		"-c", "log_directory="+filepath.Join(p.dir, "log"), "-c", "log_filename=postgresql.log",
		"-c", "log_connections=on", "-c", "log_disconnections=off",
		// The statement of a failed query would carry the test's
		// literals into the log: not needed, the SQLSTATE is.
		"-c", "log_min_error_statement=panic")
	// SIGINT: fast shutdown, the server removes its shared memory.
	p.proc = mustStart(tb, "postgres", cmd, pgAccount, syscall.SIGINT)
	err := waitFor(p.proc, 30*time.Second, func() error {
		_, err := p.Exec("postgres", "SELECT 1")
		return err
	})
	if err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	if !opts.NoSchema {
		p.MustExec(tb, "postgres", "CREATE DATABASE "+Database)
		schema := filepath.Join(testutil.RepoRoot(tb), "test", "servers", "chain", "schema.sql")
		if out, err := p.psql(Database, "-f", schema); err != nil {
			tb.Fatalf("load %s: %v\n%s", schema, err, out)
		}
	}
	return p
}

// runAs runs cmd to its end as account (see mustStart) and returns its
// combined output.
func runAs(tb testing.TB, cmd *exec.Cmd, account string) ([]byte, error) {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: mustCredential(tb, account)}
	return cmd.CombinedOutput()
}

func (p *Postgres) psql(db string, args ...string) (string, error) {
	all := append([]string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", p.dir, "-p", strconv.Itoa(p.Port), "-U", Superuser, "-d", db}, args...)
	cmd := exec.Command(filepath.Join(p.bin, "psql"), all...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// Exec runs sql as the superuser over the Unix socket in db and returns
// its output (unaligned, tuples only).
func (p *Postgres) Exec(db, sql string) (string, error) {
	out, err := p.psql(db, "-c", sql)
	if err != nil {
		return out, fmt.Errorf("psql %q: %w: %s", sql, err, out)
	}
	return out, nil
}

// MustExec is Exec that fails the test.
func (p *Postgres) MustExec(tb testing.TB, db, sql string) string {
	tb.Helper()
	out, err := p.Exec(db, sql)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// LogEntry is one line of the server's JSON log.
type LogEntry struct {
	User        string `json:"user"`
	DB          string `json:"dbname"`
	PID         int    `json:"pid"`
	Severity    string `json:"error_severity"`
	Code        string `json:"state_code"`
	Message     string `json:"message"`
	Application string `json:"application_name"`
	BackendType string `json:"backend_type"`
}

// LogEntries is the server's log so far.
func (p *Postgres) LogEntries(tb testing.TB) []LogEntry {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "log", "postgresql.json"))
	if err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	var out []LogEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a line still being written
		}
		out = append(out, e)
	}
	return out
}

// Failures counts the ERROR and FATAL log entries of application app (any
// application when ""), by SQLSTATE.
func (p *Postgres) Failures(tb testing.TB, app string) map[string]int {
	tb.Helper()
	n := map[string]int{}
	for _, e := range p.LogEntries(tb) {
		if (e.Severity == "ERROR" || e.Severity == "FATAL") && (app == "" || e.Application == app) {
			n[e.Code]++
		}
	}
	return n
}

// WaitFailures waits until Failures(app) has at least want of each code
// (the log collector writes a moment later) and returns it.
func (p *Postgres) WaitFailures(tb testing.TB, app string, want map[string]int, timeout time.Duration) map[string]int {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := p.Failures(tb, app)
		ok := true
		for code, n := range want {
			ok = ok && got[code] >= n
		}
		if ok || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StatementCalls is pg_stat_statements' calls per normalised query text,
// for the queries run as role.
func (p *Postgres) StatementCalls(tb testing.TB, role string) map[string]int {
	tb.Helper()
	out := p.MustExec(tb, Database, fmt.Sprintf(
		"SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '%s'", role))
	calls := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		n, q, ok := strings.Cut(line, "|")
		if !ok {
			continue
		}
		v, _ := strconv.Atoi(n)
		calls[q] += v
	}
	return calls
}

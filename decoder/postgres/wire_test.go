package postgres

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/test/chain"
)

// Roles of the wire tests besides the chain schema's app: one asked for an
// MD5 password, one for a cleartext password (pg_hba.conf md5, password).
const (
	md5Role       = "wire_md5"
	md5Password   = "md5-secret-pw"
	clearRole     = "wire_clear"
	clearPassword = "clear-secret-pw"
)

// secrets must never appear in anything the parser gives: passwords, the
// literal values the clients put in their queries, the application names
// and user names of the startup packets.
var secrets = []string{
	chain.AppPassword, "wrong-" + chain.AppPassword, md5Password, clearPassword, "not-the-pw",
	"correct-horse", "alice", "'bob'", "secret-", "wire-psycopg2", "wire-jdbc", "psql-app",
	md5Role, clearRole,
}

// feedAll feeds a recording in its order, each read as one chunk, except
// that side's stream is cut once more at byte splitAt (when >= 0), and
// returns the operations and the stats.
func feedAll(cfg Config, rec []recorded, side Side, splitAt int) ([]Operation, Stats) {
	c := NewConn(cfg)
	var ops []Operation
	off := map[Side]uint64{}
	for i, ch := range rec {
		data := ch.data
		if ch.side == side && splitAt >= 0 && uint64(splitAt) > off[side] && uint64(splitAt) < off[side]+uint64(len(data)) {
			cut := uint64(splitAt) - off[side]
			ops = append(ops, c.Feed(side, off[side], uint64(i), data[:cut])...)
			off[side] += cut
			data = data[cut:]
		}
		ops = append(ops, c.Feed(ch.side, off[ch.side], uint64(i), data)...)
		off[ch.side] += uint64(len(data))
	}
	return append(ops, c.Close()...), c.Stats()
}

// feedBytes feeds a recording one byte at a time and checks every step
// that the parser holds none of the forbidden byte strings.
func feedBytes(t *testing.T, rec []recorded, forbidden [][]byte) ([]Operation, Stats) {
	c := NewConn(Config{})
	var ops []Operation
	off := map[Side]uint64{}
	for i, ch := range rec {
		for j := range ch.data {
			ops = append(ops, c.Feed(ch.side, off[ch.side], uint64(i), ch.data[j:j+1])...)
			off[ch.side]++
		}
		if err := retains(c, forbidden); err != nil {
			t.Fatalf("after chunk %d (%s): %v", i, ch.side, err)
		}
	}
	return append(ops, c.Close()...), c.Stats()
}

// describe is an operation in one line: what the tests compare.
func describe(op Operation) string {
	parts := []string{op.Kind.String(), op.Status.String()}
	if n := op.OperationName(); n != "" {
		parts = append(parts, n)
	}
	if op.Error != nil {
		parts = append(parts, op.Error.Code)
	}
	if op.Kind == KindStartup {
		parts = append(parts, "auth="+op.Auth, "db="+op.Namespace)
	}
	return strings.Join(parts, " ")
}

func describeAll(ops []Operation) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i] = describe(op)
	}
	return out
}

type wireClient struct {
	name string
	cmd  func(host, port string) *exec.Cmd
	// want is one describe line per operation, per recorded session.
	want [][]string
}

func psql(user, password string, cmds ...string) func(host, port string) *exec.Cmd {
	return func(host, port string) *exec.Cmd {
		args := []string{"-X", "-A", "-t", "host=" + host + " port=" + port + " dbname=authdb user=" + user +
			" sslmode=prefer gssencmode=disable application_name=psql-app"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		cmd := exec.Command(filepath.Join(chain.PostgresBin(), "psql"), args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
		return cmd
	}
}

func wireClients(dir string) []wireClient {
	startup := func(auth string) string { return "startup ok auth=" + auth + " db=authdb" }
	refused := "startup error 28P01 auth=scram-sha-256 db=authdb"
	return []wireClient{
		{
			name: "psql",
			cmd: psql(chain.AppUser, chain.AppPassword,
				"SELECT id, role FROM users WHERE username = 'alice' AND password_hash = crypt('correct-horse', password_hash)",
				"SET ROLE app_guest; SELECT title FROM documents WHERE owner = 'bob'",
				"SELEC 'psql-secret-1'",
				"BEGIN; SET LOCAL ROLE app_reader; SELECT set_config('app.user', 'alice', true); SELECT title FROM documents; COMMIT"),
			want: [][]string{{
				// psql asks SSL first; the server says no; the password goes
				// by SCRAM.
				startup("scram-sha-256"),
				"query ok SELECT",
				"query error BATCH 42501",
				"query error SELEC 42601",
				"query ok BATCH",
			}},
		},
		{name: "psql bad password", cmd: psql(chain.AppUser, "not-the-pw", "SELECT 1"), want: [][]string{{refused}}},
		{name: "psql md5", cmd: psql(md5Role, md5Password, "SELECT 1"), want: [][]string{{startup("md5"), "query ok SELECT"}}},
		{name: "psql cleartext", cmd: psql(clearRole, clearPassword, "SELECT 1"), want: [][]string{{startup("password"), "query ok SELECT"}}},
		{
			name: "psycopg2",
			cmd: func(host, port string) *exec.Cmd {
				return exec.Command("/usr/bin/python3", filepath.Join(dir, "psycopg_client.py"), host, port, chain.AppPassword)
			},
			want: [][]string{{refused}, {
				startup("scram-sha-256"),
				// Every statement is a simple Query, the parameters
				// interpolated by the client; autocommit off sends BEGIN.
				"query ok BEGIN", "query ok SELECT", "query ok ROLLBACK",
				"query ok BEGIN", "query ok SET", "query ok SELECT", "query error SELECT 42501", "query ok ROLLBACK",
				"query ok BEGIN", "query ok SET", "query ok SELECT", "query ok SELECT", "query ok SELECT", "query ok COMMIT",
				"query ok BEGIN", "query error SELEC 42601", "query ok ROLLBACK",
				"query ok SELECT", "query ok BATCH SELECT",
			}},
		},
		{
			name: "jdbc",
			cmd: func(host, port string) *exec.Cmd {
				return exec.Command("java", "-XX:TieredStopAtLevel=1", "-cp", "/usr/share/java/postgresql.jar",
					filepath.Join(dir, "JdbcClient.java"), host, port, chain.AppPassword)
			},
			want: [][]string{{refused}, {
				startup("scram-sha-256"),
				// The driver sets two parameters after the startup, with the
				// extended protocol like every statement after them.
				"execute ok SET", "execute ok SET",
				"execute ok SELECT", "execute ok SELECT", "execute ok SELECT", "execute ok SELECT",
				"execute ok SELECT", "execute ok SELECT", "execute ok SELECT",
				"execute ok BEGIN", "execute ok SET", "execute error SELECT 42501", "execute ok ROLLBACK",
				"execute error SELEC 42601",
				"execute ok CREATE TABLE",
				"execute ok INSERT", "execute ok INSERT", "execute error INSERT 23505",
				"execute ok SELECT",
			}},
		},
	}
}

// TestWire records real clients against a real PostgreSQL through a
// loopback proxy and checks what the parser makes of it: the operations
// and their SQLSTATEs, the same result at every split of either stream
// and one byte at a time, no secret in any output, no password message
// byte held, and the same message framing as pgproto3.
func TestWire(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL and three real clients")
	}
	pg := chain.MustStartPostgres(t, chain.PostgresOptions{HBA: []string{
		"host all " + md5Role + " 127.0.0.1/32 md5",
		"host all " + clearRole + " 127.0.0.1/32 password",
	}})
	pg.MustExec(t, chain.Database, "SET password_encryption = 'md5'; CREATE ROLE "+md5Role+" LOGIN PASSWORD '"+md5Password+"'")
	pg.MustExec(t, chain.Database, "CREATE ROLE "+clearRole+" LOGIN PASSWORD '"+clearPassword+"'")
	rec := mustRecorder(t, pg.Addr())
	host, port, _ := strings.Cut(rec.Addr, ":")
	dir, err := filepath.Abs(filepath.Join("testdata", "clients"))
	if err != nil {
		t.Fatal(err)
	}
	for _, wc := range wireClients(dir) {
		t.Run(wc.name, func(t *testing.T) {
			if wc.name == "jdbc" {
				if _, err := os.Stat("/usr/share/java/postgresql.jar"); err != nil {
					t.Skip("JDBC driver missing (Debian package libpostgresql-jdbc-java)")
				}
			}
			if wc.name == "psycopg2" {
				if out, err := exec.Command("/usr/bin/python3", "-c", "import psycopg2").CombinedOutput(); err != nil {
					t.Skipf("psycopg2 missing (Debian package python3-psycopg2): %v %s", err, out)
				}
			}
			out, err := wc.cmd(host, port).CombinedOutput()
			t.Logf("client output (%v):\n%s", err, out)
			sessions := rec.mustSessions(t)
			if len(sessions) != len(wc.want) {
				t.Fatalf("%d sessions recorded, want %d", len(sessions), len(wc.want))
			}
			for i, s := range sessions {
				checkSession(t, fmt.Sprintf("session %d", i), s, wc.want[i])
				if strings.HasPrefix(wc.name, "psycopg2") || strings.HasPrefix(wc.name, "jdbc") {
					// SCRAM sessions only: no password travels in clear.
					writeCorpus(t, fmt.Sprintf("%s-%d", wc.name, i), s)
				}
			}
		})
	}
}

func checkSession(t *testing.T, name string, s []recorded, want []string) {
	t.Helper()
	ops, st := feedAll(Config{}, s, 0, -1)
	if got := describeAll(ops); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: operations\n  got  %q\n  want %q", name, got, want)
	}
	if st.GapBytes+st.Resyncs+st.ResyncBytes+st.DamagedMessages+st.Mismatches+st.Orphans+st.Unpaired+
		st.UnexpectedMessages+st.UnsafeQueries+st.AsyncErrors+st.UnknownStatements != 0 {
		t.Errorf("%s: a clean recording counted drops: %+v", name, st)
	}
	for _, op := range ops {
		checkRanges(t, name, op)
	}
	if dump := fmt.Sprintf("%+v %+v", ops, st); containsSecret(dump) != "" {
		t.Errorf("%s: %q in the output: %s", name, containsSecret(dump), dump)
	}
	// The same at every split point of either stream.
	for _, side := range []Side{Frontend, Backend} {
		var n int
		for _, ch := range s {
			if ch.side == side {
				n += len(ch.data)
			}
		}
		for k := 1; k < n; k++ {
			if got, _ := feedAll(Config{}, s, side, k); !reflect.DeepEqual(got, ops) {
				t.Fatalf("%s: split of the %s stream at %d changes the result:\n  got  %q\n  want %q",
					name, side, k, describeAll(got), describeAll(ops))
			}
		}
	}
	forbidden := passwordMessages(t, s)
	if got, _ := feedBytes(t, s, forbidden); !reflect.DeepEqual(got, ops) {
		t.Errorf("%s: one byte at a time changes the result:\n  got  %q\n  want %q", name, describeAll(got), describeAll(ops))
	}
	checkFraming(t, name, s)
	checkMidStream(t, name, s, ops)
}

// checkMidStream starts the capture at every read of the recording, as an
// agent started while the session was open would: what it pairs must be
// what the whole recording gives, and every request sent after the first
// answer it sees must be there.
func checkMidStream(t *testing.T, name string, s []recorded, ref []Operation) {
	t.Helper()
	byStart := map[uint64]Operation{}
	for _, op := range ref {
		if op.Kind != KindStartup {
			byStart[op.Request.Start] = op
		}
	}
	for i := 1; i < len(s); i++ {
		c := NewConn(Config{})
		off := map[Side]uint64{}
		for _, ch := range s[:i] {
			off[ch.side] += uint64(len(ch.data))
		}
		var ops []Operation
		for j, ch := range s[i:] {
			ops = append(ops, c.Feed(ch.side, off[ch.side], uint64(i+j), ch.data)...)
			off[ch.side] += uint64(len(ch.data))
		}
		ops = append(ops, c.Close()...)
		got := map[uint64]bool{}
		for _, op := range ops {
			if op.Status == StatusLost || op.Status == StatusClosed || op.Kind == KindStartup {
				continue
			}
			r, ok := byStart[op.Request.Start]
			if ok && op.OperationName() == "" {
				// A failed Execute of a statement prepared before the
				// capture: nothing names its operation.
				r.Query, r.Command = Query{}, ""
			}
			if !ok || describe(r) != describe(op) || r.Rows != op.Rows {
				t.Errorf("%s, capture from read %d: %s (rows %d) at %d; the whole recording has %s (rows %d)",
					name, i, describe(op), op.Rows, op.Request.Start, describe(r), r.Rows)
				continue
			}
			got[op.Request.Start] = true
		}
		// The first answer completed after the cut.
		first := uint64(1 << 62)
		for _, r := range ref {
			if r.Response.EndTime >= uint64(i) && r.Response.EndTime < first {
				first = r.Response.EndTime
			}
		}
		for _, r := range ref {
			if r.Kind != KindStartup && r.Request.StartTime > first && !got[r.Request.Start] {
				t.Errorf("%s, capture from read %d: %s (asked at read %d) is missing: got %q",
					name, i, describe(r), r.Request.StartTime, describeAll(ops))
			}
		}
	}
}

func checkRanges(t *testing.T, name string, op Operation) {
	t.Helper()
	if op.Request.End <= op.Request.Start {
		t.Errorf("%s: %s: empty request range %+v", name, describe(op), op.Request)
	}
	if op.Kind != KindCancel && op.Status != StatusClosed && op.Response.End <= op.Response.Start {
		t.Errorf("%s: %s: empty response range %+v", name, describe(op), op.Response)
	}
	if op.Response.StartTime != 0 && op.Response.StartTime < op.Request.StartTime {
		t.Errorf("%s: %s: answered before it was asked: %+v %+v", name, describe(op), op.Request, op.Response)
	}
}

func containsSecret(s string) string {
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			return sec
		}
	}
	return ""
}

// passwordMessages are the bodies of the frontend's 'p' messages in a
// recording (found by a walk of the plaintext framing of its own), less
// their NULs: the parser must never hold them.
func passwordMessages(t *testing.T, s []recorded) [][]byte {
	t.Helper()
	var fe []byte
	for _, ch := range s {
		if ch.side == Frontend {
			fe = append(fe, ch.data...)
		}
	}
	var out [][]byte
	untyped := true // the first packet, and the one after an SSLRequest
	for i := 0; i+5 <= len(fe); {
		if untyped {
			n := int(be32(fe[i:]))
			if n < 8 || i+n > len(fe) {
				break
			}
			code := be32(fe[i+4:])
			untyped = code == codeSSL || code == codeGSSENC
			i += n
			continue
		}
		n := int(be32(fe[i+1:]))
		if n < 4 || i+1+n > len(fe) {
			break
		}
		if fe[i] == 'p' {
			body := bytes.Trim(fe[i+5:i+1+n], "\x00")
			if len(body) > 12 {
				// Its distinctive end: SASL and MD5 responses share a prefix.
				body = body[len(body)-12:]
			}
			out = append(out, body)
		}
		i += 1 + n
	}
	return out
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// retains walks everything reachable from v (unexported fields, slice
// capacity beyond its length, maps) and reports a forbidden byte string
// found in it.
func retains(v any, forbidden [][]byte) error {
	seen := map[uintptr]bool{}
	var found error
	var walk func(reflect.Value, string)
	check := func(b []byte, path string) {
		for _, f := range forbidden {
			if len(f) > 0 && bytes.Contains(b, f) {
				found = fmt.Errorf("%s holds %q", path, f)
			}
		}
	}
	walk = func(v reflect.Value, path string) {
		if found != nil || !v.IsValid() {
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			walk(v.Elem(), path)
		case reflect.Interface:
			walk(v.Elem(), path)
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				check(v.Slice3(0, v.Cap(), v.Cap()).Bytes(), path)
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Array:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				b := make([]byte, v.Len())
				for i := range b {
					b[i] = byte(v.Index(i).Uint())
				}
				check(b, path)
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), path)
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				walk(it.Key(), path+"{key}")
				walk(it.Value(), path+"{value}")
			}
		case reflect.String:
			check([]byte(v.String()), path)
		}
	}
	walk(reflect.ValueOf(v), "Conn")
	return found
}

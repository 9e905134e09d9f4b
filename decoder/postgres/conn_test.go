package postgres

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Wire builders for hand-made exchanges.

func cstr(s string) []byte { return append([]byte(s), 0) }

func i16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

func i32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func msg(t byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(append([]byte{t}, i32(len(body)+4)...), body...)
}

func packet(code int, parts ...[]byte) []byte {
	body := i32(code)
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(i32(len(body)+4), body...)
}

func startupMsg(params ...string) []byte {
	var kv []byte
	for _, p := range params {
		kv = append(kv, cstr(p)...)
	}
	return packet(codeProtocol3, kv, []byte{0})
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func errResp(code string) []byte {
	return msg('E', []byte{'S'}, cstr("ERROR"), []byte{'V'}, cstr("ERROR"), []byte{'C'}, cstr(code),
		[]byte{'M'}, cstr(`duplicate key value violates unique constraint: Key (email)=(leak@example.org)`), []byte{0})
}

var (
	authOK   = msg('R', i32(0))
	ready    = msg('Z', []byte{'I'})
	rowDesc  = msg('T', i16(1), cstr("id"), i32(0), i16(0), i32(23), i16(4), i32(-1), i16(0))
	dataRow  = msg('D', i16(1), i32(5), []byte("row-1"))
	parseOK  = msg('1')
	bindOK   = msg('2')
	noData   = msg('n')
	syncMsg  = msg('S')
	cmdSel1  = msg('C', cstr("SELECT 1"))
	loggedIn = cat(authOK, msg('S', cstr("standard_conforming_strings"), cstr("on")), msg('K', i32(1), i32(2)), ready)
)

func query(q string) []byte { return msg('Q', cstr(q)) }

func parse(name, q string) []byte { return msg('P', cstr(name), cstr(q), i16(0)) }

func bind(portal, stmt string, params ...string) []byte {
	b := cat(cstr(portal), cstr(stmt), i16(0), i16(len(params)))
	for _, p := range params {
		b = append(b, cat(i32(len(p)), []byte(p))...)
	}
	return msg('B', b, i16(0))
}

func execute(portal string) []byte { return msg('E', cstr(portal), i32(0)) }

// step is one read of one side.
type step struct {
	side Side
	data []byte
}

// run feeds steps in order (offsets counted per side, gaps as given) and
// returns the operations, Close's included.
func run(c *Conn, steps []step) []Operation {
	var ops []Operation
	off := map[Side]uint64{}
	for i, s := range steps {
		ops = append(ops, c.Feed(s.side, off[s.side], uint64(i+1), s.data)...)
		off[s.side] += uint64(len(s.data))
	}
	return append(ops, c.Close()...)
}

func fe(b ...[]byte) step { return step{Frontend, cat(b...)} }
func be(b ...[]byte) step { return step{Backend, cat(b...)} }

func TestExchanges(t *testing.T) {
	session := fe(startupMsg("user", "alice-db-user", "database", "authdb", "application_name", "secret-app"))
	cases := []struct {
		name  string
		steps []step
		want  []string
		check func(t *testing.T, ops []Operation, st Stats)
	}{
		{
			name:  "simple query",
			steps: []step{session, be(loggedIn), fe(query("SELECT id FROM users WHERE name = 'bob'")), be(rowDesc, dataRow, dataRow, msg('C', cstr("SELECT 2")), ready)},
			want:  []string{"startup ok auth=trust db=authdb", "query ok SELECT"},
			check: func(t *testing.T, ops []Operation, _ Stats) {
				if q := ops[1]; q.Rows != 2 || q.Affected != 2 || q.Query.Text != "SELECT id FROM users WHERE name = ?" || q.Query.Collection() != "users" {
					t.Errorf("query: %+v", q)
				}
			},
		},
		{
			name: "extended: an error at Bind fails its Execute and aborts the next",
			steps: []step{session, be(loggedIn),
				fe(parse("", "INSERT INTO t VALUES ($1)"), bind("", "", "param-secret"), execute(""),
					parse("s2", "SELECT 1"), bind("", "s2"), execute(""), syncMsg),
				be(parseOK, errResp("22P02"), ready)},
			want: []string{"startup ok auth=trust db=authdb", "execute error INSERT 22P02", "execute aborted SELECT"},
		},
		{
			name: "extended: a Parse that fails with no Execute is kept",
			steps: []step{session, be(loggedIn),
				fe(parse("s1", "SELEC broken"), msg('D', []byte{'S'}, cstr("s1")), syncMsg),
				be(errResp("42601"), ready)},
			want: []string{"startup ok auth=trust db=authdb", "prepare error SELEC 42601"},
		},
		{
			name: "extended: named statement, row limit, pipelined syncs",
			steps: []step{session, be(loggedIn),
				fe(parse("S_1", "SELECT * FROM docs WHERE id = $1"), syncMsg, bind("p", "S_1", "7"), execute("p"), syncMsg, bind("", "S_1", "8"), execute(""), syncMsg),
				be(parseOK, ready, bindOK, dataRow, msg('s'), ready, bindOK, dataRow, cmdSel1, ready)},
			want: []string{"startup ok auth=trust db=authdb", "execute ok SELECT", "execute ok SELECT"},
			check: func(t *testing.T, ops []Operation, _ Stats) {
				if !ops[1].Suspended || ops[2].Suspended || ops[1].Query.Text != "SELECT * FROM docs WHERE id = $1" {
					t.Errorf("ops: %+v", ops)
				}
			},
		},
		{
			name: "SCRAM refused",
			steps: []step{session, be(msg('R', i32(10), cstr("SCRAM-SHA-256-PLUS"), cstr("SCRAM-SHA-256"), []byte{0})),
				fe(msg('p', cstr("SCRAM-SHA-256"), i32(20), []byte("n,,n=,r=client-nonce"))),
				be(msg('R', i32(11), []byte("r=client-nonce-server,s=c2FsdA==,i=4096"))),
				fe(msg('p', []byte("c=biws,r=client-nonce-server,p=proof-secret"))),
				be(msg('E', []byte{'S'}, cstr("FATAL"), []byte{'V'}, cstr("FATAL"), []byte{'C'}, cstr("28P01"), []byte{'M'}, cstr(`password authentication failed for user "alice-db-user"`), []byte{0}))},
			want: []string{"startup error 28P01 auth=scram-sha-256 db=authdb"},
		},
		{
			name:  "SSL accepted: the rest is ciphertext",
			steps: []step{fe(packet(codeSSL)), be([]byte("S")), fe([]byte("\x16\x03\x01\x02\x00client-hello")), be([]byte("\x16\x03\x03server-hello"))},
			want:  []string{"startup ok auth= db="},
			check: func(t *testing.T, ops []Operation, st Stats) {
				if !ops[0].Encrypted || st.EncryptedBytes == 0 || st.UnexpectedMessages != 0 {
					t.Errorf("ops %+v stats %+v", ops, st)
				}
			},
		},
		{
			name:  "SSL refused, GSS refused, then plaintext",
			steps: []step{fe(packet(codeGSSENC)), be([]byte("N")), fe(packet(codeSSL)), be([]byte("N")), session, be(loggedIn)},
			want:  []string{"startup ok auth=trust db=authdb"},
		},
		{
			name:  "cancel request",
			steps: []step{fe(packet(codeCancel, i32(42), i32(12345)))},
			want:  []string{"cancel ok"},
		},
		{
			name: "mid-stream: the first ReadyForQuery aligns",
			steps: []step{
				// The tail of a DataRow and the end of a query before the capture.
				be([]byte("ow-2"), cmdSel1, ready),
				fe(query("SELECT 1")),
				be(rowDesc, dataRow, cmdSel1, ready)},
			want: []string{"query ok SELECT"},
			check: func(t *testing.T, ops []Operation, st Stats) {
				if ops[0].Resynced || ops[0].Namespace != "" || st.ResyncBytes != 4 || st.Resyncs != 2 {
					t.Errorf("op %+v stats %+v", ops[0], st)
				}
			},
		},
		{
			name: "mid-stream: a request queued before alignment is paired by order",
			steps: []step{
				fe([]byte("\x00\x00\x00\x05param"), query("SELECT 2")),
				be(rowDesc, dataRow, cmdSel1, ready)},
			want: []string{"query ok SELECT"},
			check: func(t *testing.T, ops []Operation, st Stats) {
				if !ops[0].Resynced || ops[0].Rows != 1 || ops[0].Query.Text != "SELECT ?" {
					t.Errorf("op %+v stats %+v", ops[0], st)
				}
			},
		},
		{
			name:  "connection closed with a query pending",
			steps: []step{session, be(loggedIn), fe(query("SELECT pg_sleep(10)"))},
			want:  []string{"startup ok auth=trust db=authdb", "query closed SELECT"},
		},
		{
			name: "backslash strings: the server said standard_conforming_strings=off",
			steps: []step{session, be(authOK, msg('S', cstr("standard_conforming_strings"), cstr("off")), ready),
				fe(query(`SELECT 'a\' , leak-secret'`)), be(cmdSel1, ready)},
			want: []string{"startup ok auth=trust db=authdb", "query ok SELECT"},
			check: func(t *testing.T, ops []Operation, _ Stats) {
				if ops[1].Query.Text != "SELECT ?" {
					t.Errorf("text %q", ops[1].Query.Text)
				}
			},
		},
		{
			name:  "notice and an error with no request pending",
			steps: []step{session, be(loggedIn), fe(query("VACUUM")), be(msg('N', []byte{'V'}, cstr("WARNING"), []byte{'C'}, cstr("01000"), []byte{0}), msg('C', cstr("VACUUM")), ready, errResp("57P01"))},
			want:  []string{"startup ok auth=trust db=authdb", "query ok VACUUM"},
			check: func(t *testing.T, ops []Operation, st Stats) {
				if ops[1].Notices != 1 || st.AsyncErrors != 1 {
					t.Errorf("op %+v stats %+v", ops[1], st)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConn(Config{})
			ops := run(c, tc.steps)
			if got := describeAll(ops); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, ops, c.Stats())
			}
			dump := strings.ToLower(describeAll(ops)[0]) + " " + strings.Join(describeAll(ops), " ")
			for _, op := range ops {
				dump += " " + op.Query.Text + " " + op.Query.Summary
			}
			for _, s := range []string{"alice-db-user", "secret", "leak", "row-1", "proof", "nonce", "bob"} {
				if strings.Contains(dump, s) {
					t.Errorf("%q in the output: %s", s, dump)
				}
			}
		})
	}
}

// TestGaps: bytes that were never seen. Inside a message of known length
// the framing survives; over a header it resyncs, counted.
func TestGaps(t *testing.T) {
	c := NewConn(Config{})
	var ops []Operation
	feed := func(s Side, off uint64, b []byte) { ops = append(ops, c.Feed(s, off, 0, b)...) }
	start := startupMsg("database", "db")
	feed(Frontend, 0, start)
	feed(Backend, 0, loggedIn)
	fo, bo := uint64(len(start)), uint64(len(loggedIn))
	q := query("SELECT body FROM docs")
	feed(Frontend, fo, q)
	big := msg('D', i16(1), i32(1000), []byte(strings.Repeat("x", 1000)))
	// 900 bytes of the row were not captured.
	feed(Backend, bo, cat(rowDesc, big[:50]))
	bo += uint64(len(rowDesc)) + 50 + 900
	feed(Backend, bo, cat(big[950:], msg('C', cstr("SELECT 1")), ready))
	bo += uint64(len(big)-950) + uint64(len(msg('C', cstr("SELECT 1")))) + uint64(len(ready))
	if got := describeAll(ops); !reflect.DeepEqual(got, []string{"startup ok auth=trust db=db", "query ok SELECT"}) || ops[1].Rows != 1 {
		t.Fatalf("a gap inside a row: %q %+v", got, ops)
	}
	if st := c.Stats(); st.GapBytes != 900 || st.Resyncs != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Now lose the start of the next answer: the query is lost, the
	// connection resyncs at the next ReadyForQuery.
	ops = nil
	fo += uint64(len(q))
	feed(Frontend, fo, q)
	fo += uint64(len(q))
	answer := cat(rowDesc, dataRow, cmdSel1, ready)
	feed(Backend, bo+3, answer[3:])
	bo += uint64(len(answer))
	feed(Frontend, fo, query("SELECT 3"))
	feed(Backend, bo, cat(rowDesc, dataRow, cmdSel1, ready))
	if got := describeAll(ops); !reflect.DeepEqual(got, []string{"query lost SELECT", "query ok SELECT"}) {
		t.Fatalf("a gap over a header: %q", got)
	}
	if st := c.Stats(); st.Resyncs != 1 || st.Unpaired != 1 || st.GapBytes != 903 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBounds: every limit holds and every drop is counted.
func TestBounds(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		c := NewConn(Config{MaxPending: 4})
		steps := []step{fe(startupMsg("database", "db")), be(loggedIn)}
		for i := 0; i < 6; i++ {
			steps = append(steps, fe(query("SELECT 1")))
		}
		ops := run(c, steps)
		st := c.Stats()
		if st.PendingOverflow != 4 || st.Unpaired != 6 || len(ops) != 7 {
			t.Fatalf("ops %q stats %+v", describeAll(ops), st)
		}
	})
	t.Run("statements", func(t *testing.T) {
		c := NewConn(Config{MaxStatements: 2})
		steps := []step{fe(startupMsg("database", "db")), be(loggedIn)}
		for _, n := range []string{"a", "b", "c"} {
			steps = append(steps, fe(parse(n, "SELECT "+n+" FROM t")), be(parseOK))
		}
		steps = append(steps, fe(bind("", "a"), execute(""), syncMsg), be(bindOK, cmdSel1, ready))
		ops := run(c, steps)
		st := c.Stats()
		if st.Evicted != 1 || st.UnknownStatements != 1 || ops[1].Query.Text != "" || ops[1].OperationName() != "SELECT" {
			t.Fatalf("ops %+v stats %+v", ops, st)
		}
	})
	t.Run("query text", func(t *testing.T) {
		c := NewConn(Config{MaxQueryBytes: 40})
		q := "SELECT id FROM users WHERE password = 'a-very-long-secret-value-that-is-cut'"
		ops := run(c, []step{fe(startupMsg("database", "db")), be(loggedIn), fe(query(q)), be(cmdSel1, ready)})
		st := c.Stats()
		if ops[1].Query.Text != "SELECT id FROM users WHERE password = ?" || !ops[1].Query.Truncated || st.TruncatedQueries != 1 {
			t.Fatalf("op %+v stats %+v", ops[1], st)
		}
	})
	t.Run("resync window", func(t *testing.T) {
		c := NewConn(Config{MaxResyncBytes: 1024})
		junk := []byte(strings.Repeat("\xff", 5000))
		ops := run(c, []step{fe(junk), be(junk)})
		st := c.Stats()
		if len(ops) != 0 || st.ResyncBytes != 10000 || cap(c.fe.scan) > 2048 {
			t.Fatalf("ops %q stats %+v scan cap %d", describeAll(ops), st, cap(c.fe.scan))
		}
	})
}

func TestParseTag(t *testing.T) {
	for tag, want := range map[string]struct {
		cmd string
		n   int64
	}{
		"SELECT 5": {"SELECT", 5}, "INSERT 0 1": {"INSERT", 1}, "CREATE TABLE": {"CREATE TABLE", -1},
		"UPDATE 12": {"UPDATE", 12}, "weird 'x'": {"", -1}, "": {"", -1},
	} {
		if cmd, n := parseTag(tag); cmd != want.cmd || n != want.n {
			t.Errorf("parseTag(%q) = %q %d, want %q %d", tag, cmd, n, want.cmd, want.n)
		}
	}
}

// TestNothingRetained feeds values that must never be held one byte at a
// time and looks through everything the connection holds: a password, a
// Bind parameter, a row value and COPY data after every byte (they are
// never copied at all); the user name, a parameter status value and an
// error message after every read (they pass through the parse buffer of
// their message and are wiped with it).
func TestNothingRetained(t *testing.T) {
	const never, notKept = "NEVERHELD", "NOTKEPT"
	steps := []step{
		fe(startupMsg("user", notKept+"-user", "database", "db")),
		be(msg('R', i32(3))),
		fe(msg('p', cstr(never+"-password"))),
		be(authOK, msg('S', cstr("session_authorization"), cstr(notKept+"-user")), ready),
		fe(parse("s", "SELECT $1"), bind("", "s", never+"-param"), execute(""), syncMsg),
		be(parseOK, bindOK, msg('D', i16(1), i32(len(never)+4), []byte(never+"-row")), cmdSel1, ready),
		fe(query("COPY t FROM STDIN"), msg('d', []byte(never+"-copy")), msg('c')),
		be(msg('G', []byte{0}, i16(0)), msg('C', cstr("COPY 1")), ready),
		fe(query("SELECT 1")),
		be(msg('E', []byte{'S'}, cstr("ERROR"), []byte{'C'}, cstr("23505"), []byte{'M'}, cstr(notKept+"-message"),
			[]byte{'D'}, cstr("Key (email)=("+notKept+")"), []byte{0}), ready),
	}
	c := NewConn(Config{})
	off := map[Side]uint64{}
	var ops []Operation
	for n, s := range steps {
		for i := range s.data {
			ops = append(ops, c.Feed(s.side, off[s.side], 0, s.data[i:i+1])...)
			off[s.side]++
			if err := retains(c, [][]byte{[]byte(never)}); err != nil {
				t.Fatalf("after byte %d of read %d: %v", i, n, err)
			}
		}
		if err := retains(c, [][]byte{[]byte(notKept)}); err != nil {
			t.Fatalf("after read %d: %v", n, err)
		}
	}
	if got := describeAll(ops); !reflect.DeepEqual(got, []string{"startup ok auth=password db=db", "execute ok SELECT", "query ok COPY", "query error SELECT 23505"}) {
		t.Fatalf("ops %q", got)
	}
	if dump := fmt.Sprintf("%+v", ops); strings.Contains(dump, never) || strings.Contains(dump, notKept) {
		t.Fatal(dump)
	}
}

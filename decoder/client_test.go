package decoder

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/decoder/postgres"
)

// pgMsg is one PostgreSQL message: type, length, body.
func pgMsg(t byte, body string) string {
	var b [5]byte
	b[0] = t
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return string(b[:]) + body
}

func pgStartup(params ...string) string {
	body := "\x00\x03\x00\x00" + strings.Join(params, "\x00") + "\x00\x00"
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)+4))
	return string(n[:]) + body
}

type clientFeed struct {
	t    *testing.T
	d    *Decoder
	info ConnInfo
	seq  [2]uint32
	off  [2]uint64
	time uint64
	out  []Exchange
}

func newClientFeed(t *testing.T, sock uint64) *clientFeed {
	return &clientFeed{t: t, d: New(Config{Interesting: func(string, string) bool { return false }}), info: ConnInfo{
		Key:   ConnKey{Sock: sock, Gen: 1},
		Local: netip.MustParseAddrPort("127.0.0.1:40000"),
		Peer:  netip.MustParseAddrPort("127.0.0.1:5432"),
		Role:  RoleClient,
	}}
}

// io feeds one I/O of dir; sent false makes it one the kernel did not
// send (outside a served request): only the offset moves.
func (f *clientFeed) io(dir Direction, data string, task uint64, sent bool) {
	f.time += 1000
	i := dir - 1
	if sent {
		ch := Chunk{Conn: f.info, PID: 7, TID: uint32(task), Task: task, Dir: dir, Seq: f.seq[i],
			Offset: f.off[i], Time: f.time, Len: uint32(len(data)), Data: []byte(data), Other: f.off[1-i]}
		if f.off[i] == 0 {
			ch.Flags = Boundary
		}
		f.seq[i]++
		for _, ex := range f.d.Feed(ch) {
			if ex.Database != nil {
				op := *ex.Database
				ex.Database = &op
			}
			f.out = append(f.out, ex)
		}
	}
	f.off[i] += uint64(len(data))
}

func TestClientHTTP(t *testing.T) {
	f := newClientFeed(t, 1)
	req := "GET /users/alice?token=secret HTTP/1.1\r\nHost: idp:8080\r\n\r\n"
	resp := "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
	f.io(Egress, req, 11, true)
	opened := f.d.Opened()
	if len(opened) != 1 || opened[0].ID == 0 || opened[0].Task != 11 || opened[0].Request == nil ||
		opened[0].Request.Target != "/users/alice?token=secret" {
		t.Fatalf("opened = %+v", opened)
	}
	f.io(Ingress, resp, 11, true)
	// Outside a served request: neither is sent; the next served call
	// starts after a hole.
	f.io(Egress, req, 11, false)
	f.io(Ingress, resp, 11, false)
	f.io(Egress, strings.Replace(req, "alice", "bob", 1), 12, true)
	f.io(Ingress, strings.Replace(resp, "403 Forbidden", "200 OK", 1), 12, true)
	if len(f.out) != 2 {
		t.Fatalf("got %d exchanges, want 2: %+v", len(f.out), f.out)
	}
	for i, want := range []struct {
		target string
		status int
		task   uint64
	}{{"/users/alice?token=secret", 403, 11}, {"/users/bob?token=secret", 200, 12}} {
		ex := f.out[i]
		if ex.Conn.Role != RoleClient || ex.Request.Target != want.target || ex.Response == nil ||
			ex.Response.StatusCode != want.status || ex.Task != want.task || ex.ID == 0 {
			t.Errorf("exchange %d = %+v %+v, want %+v", i, ex, ex.Request, want)
		}
	}
	st := f.d.Stats()
	if st.ClientHTTP != 1 || st.LostAttempts != [NumLoss]uint64{} || st.Desyncs != 0 {
		t.Errorf("stats: %+v", st)
	}
	if v := f.d.Verdicts(); len(v) != 0 {
		t.Errorf("verdicts for a client connection: %+v", v)
	}
}

func TestClientPostgres(t *testing.T) {
	f := newClientFeed(t, 2)
	ready := pgMsg('Z', "I")
	f.io(Egress, pgStartup("user", "app", "database", "authdb"), 5, true)
	f.io(Ingress, pgMsg('R', "\x00\x00\x00\x00")+pgMsg('S', "standard_conforming_strings\x00on\x00")+ready, 5, true)
	f.io(Egress, pgMsg('Q', "SELECT id FROM users WHERE username = 'alice' AND password_hash = crypt('hunter2', password_hash)\x00"), 5, true)
	f.io(Ingress, pgMsg('T', "\x00\x00")+pgMsg('C', "SELECT 0\x00")+ready, 5, true)
	// A query of another request, not sent; then a denied one.
	f.io(Egress, pgMsg('Q', "SELECT 1\x00"), 6, false)
	f.io(Ingress, pgMsg('C', "SELECT 1\x00")+ready, 6, false)
	f.io(Egress, pgMsg('Q', "SELECT title FROM documents WHERE id = 2\x00"), 9, true)
	f.io(Ingress, pgMsg('E', "SERROR\x00VERROR\x00C42501\x00Mpermission denied for table documents\x00\x00")+pgMsg('Z', "E"), 9, true)
	if len(f.out) != 3 {
		t.Fatalf("got %d exchanges, want 3: %+v", len(f.out), f.out)
	}
	start, login, denied := f.out[0].Database, f.out[1].Database, f.out[2].Database
	if start.Kind != postgres.KindStartup || start.Namespace != "authdb" || f.out[0].Task != 5 {
		t.Errorf("startup = %+v", start)
	}
	if login.Query.Text != "SELECT id FROM users WHERE username = ? AND password_hash = crypt(?, password_hash)" ||
		login.Error != nil || f.out[1].Task != 5 {
		t.Errorf("login query = %+v", login)
	}
	if denied.Error == nil || denied.Error.Code != "42501" || f.out[2].Task != 9 || denied.Query.Collection() != "documents" {
		t.Errorf("denied query = %+v task %d", denied, f.out[2].Task)
	}
	for _, ex := range f.out {
		if strings.Contains(ex.Database.Query.Text, "hunter2") {
			t.Errorf("a literal reached the operation: %q", ex.Database.Query.Text)
		}
	}
	if st := f.d.Stats(); st.ClientPostgres != 1 || st.DatabaseOps != 3 || st.DatabaseUnplaced != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// A client connection whose first write is neither protocol, or whose
// first write was not seen, is turned off: never guessed from a later chunk.
func TestClientUnknownOff(t *testing.T) {
	for name, first := range map[string]func(*clientFeed){
		"binary":       func(f *clientFeed) { f.io(Egress, "\x16\x03\x01\x00\xa5hello", 1, true) },
		"not at zero":  func(f *clientFeed) { f.io(Egress, "x", 1, false); f.io(Egress, "GET / HTTP/1.1\r\n\r\n", 1, true) },
		"server first": func(f *clientFeed) { f.io(Ingress, "220 smtp ready\r\n", 1, true) },
	} {
		t.Run(name, func(t *testing.T) {
			f := newClientFeed(t, 3)
			first(f)
			v := f.d.Verdicts()
			if len(v) != 1 || v[0].Kind != VerdictOff {
				t.Fatalf("verdicts = %+v, want one VerdictOff", v)
			}
			f.io(Egress, "GET / HTTP/1.1\r\n\r\n", 1, true)
			if st := f.d.Stats(); st.ClientUnknown != 1 || len(f.out) != 0 {
				t.Errorf("stats %+v, exchanges %+v", st, f.out)
			}
		})
	}
}

package postgres

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// marker is put inside a literal or comment by FuzzSanitizeQuery: it must
// never come out.
const marker = "Zq7MARKERx"

// literalOf makes s into a literal (or comment) of kind that the server
// reads as such under mode, or reports it cannot.
func literalOf(kind uint8, s string, backslash bool) (string, bool) {
	switch kind % 5 {
	case 0:
		s = strings.ReplaceAll(s, "'", "''")
		if backslash {
			s = strings.ReplaceAll(s, `\`, `\\`)
		}
		return "'" + s + "'", true
	case 1:
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'", true
	case 2:
		for i := 0; i < 100; i++ {
			tag := "$q" + strconv.Itoa(i) + "$"
			if body := s + tag; strings.Index(body, tag) == len(s) {
				return tag + s + tag, true
			}
		}
		return "", false
	case 3:
		if strings.ContainsAny(s, "\r\n") {
			return "", false
		}
		return "-- " + s + "\n", true
	default:
		if strings.Contains(s, "*/") || strings.Contains(s, "/*") || strings.HasSuffix(s, "/") || strings.HasSuffix(s, "*") {
			return "", false
		}
		return "/* " + s + " */", true
	}
}

// cleanEnd: prefix ends between two tokens (no open literal, comment or
// name), so what follows a space starts a token of its own.
func cleanEnd(prefix string, backslash bool) bool {
	toks := lex([]byte(prefix+" "), backslash)
	last := toks[len(toks)-1]
	return last.kind == tkSpace && last.start == len(prefix)
}

func FuzzSanitizeQuery(f *testing.F) {
	for _, s := range []struct {
		prefix, body string
		kind, mode   uint8
		suffix       string
	}{
		{"SELECT id FROM users WHERE password =", "correct-horse", 0, 0, "AND id = 1"},
		{"SELECT", `it's \ here`, 1, 1, "FROM t"},
		{"INSERT INTO t VALUES (", "$q0$ $$", 2, 2, ")"},
		{"SELECT 1", "note", 3, 0, "FROM t"},
		{"SELECT /* a */ 1", "*", 4, 3, ";"},
		{"SELECT U&'x' UESCAPE '!',", "a'b", 0, 1, "$1"},
		{`SELECT "q""i",`, `\'`, 0, 2, "'tail"},
	} {
		f.Add(s.prefix, s.body, s.kind, s.mode, s.suffix)
	}
	f.Fuzz(func(t *testing.T, prefix, body string, kind, mode uint8, suffix string) {
		backslash := mode&1 == 1 // what the server does
		if strings.Contains(prefix+suffix, marker[:4]) || !cleanEnd(prefix, backslash) {
			return
		}
		lit, ok := literalOf(kind, body+marker+body, backslash)
		if !ok {
			return
		}
		q := prefix + " " + lit + " " + suffix
		told := StringsStandard
		if backslash {
			told = StringsBackslash
		}
		if mode&2 == 2 {
			told = StringsUnknown
		}
		out := SanitizeQuery([]byte(q), told, false)
		all := out.Text + " " + out.Summary + " " + out.Operation + " " + strings.Join(out.Collections, " ")
		if strings.Contains(all, marker) {
			t.Fatalf("a literal leaked:\n  query %q (told %d)\n  out   %+v", q, told, out)
		}
		if out.Unsafe && told != StringsUnknown {
			t.Fatalf("unsafe with a known mode: %+v", out)
		}
		if again := SanitizeQuery([]byte(out.Text), told, false); !out.Unsafe && again.Text != out.Text {
			t.Fatalf("not stable: %q -> %q", out.Text, again.Text)
		}
	})
}

const fuzzPassword = "FUZZSECRETPW"

func FuzzConn(f *testing.F) {
	f.Add(cat(query("SELECT 'a'"), parse("s", "SELECT $1"), bind("", "s", "v"), execute(""), syncMsg),
		cat(rowDesc, dataRow, cmdSel1, ready, parseOK, bindOK, cmdSel1, ready), uint16(7), false)
	f.Add([]byte("\x00\x00\x00\x05xQ\x00\x00\x00\x0dSELECT 1\x00"), cat([]byte("ow"), cmdSel1, ready), uint16(3), true)
	f.Add(cat(parse("", "SELEC"), syncMsg), cat(errResp("42601"), ready), uint16(0), false)
	f.Fuzz(func(t *testing.T, fe, be []byte, cut uint16, midStream bool) {
		c := NewConn(Config{MaxPending: 8, MaxStatements: 4, MaxQueryBytes: 64, MaxResyncBytes: 512})
		var steps []step
		if !midStream {
			steps = []step{
				{Frontend, startupMsg("user", "u", "database", "d")},
				{Backend, msg('R', i32(3))},
				{Frontend, msg('p', cstr(fuzzPassword))},
				{Backend, loggedIn},
			}
		}
		k := min(int(cut), len(fe), len(be))
		steps = append(steps, step{Frontend, fe[:k]}, step{Backend, be[:k]}, step{Frontend, fe[k:]}, step{Backend, be[k:]})
		var ops []Operation
		off := map[Side]uint64{}
		for i, s := range steps {
			ops = append(ops, c.Feed(s.side, off[s.side], uint64(i), s.data)...)
			off[s.side] += uint64(len(s.data))
		}
		if err := retains(c, [][]byte{[]byte(fuzzPassword)}); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, c.Close()...)
		st := c.Stats()
		if st.Operations != uint64(len(ops)) {
			t.Fatalf("%d operations counted, %d given", st.Operations, len(ops))
		}
		if dump := fmt.Sprintf("%+v %+v", ops, st); strings.Contains(dump, fuzzPassword) {
			t.Fatalf("the password in the output: %s", dump)
		}
		for _, op := range ops {
			if op.Request.End < op.Request.Start || op.Response.End < op.Response.Start && op.Response.End != 0 {
				t.Fatalf("ranges: %+v", op)
			}
			if op.Error != nil && op.Error.Code != "" && !ValidSQLSTATE(op.Error.Code) {
				t.Fatalf("SQLSTATE %q", op.Error.Code)
			}
		}
		if c.Pending() > 8 || len(c.stmts.m) > 5 || len(c.portals.m) > 5 || cap(c.fe.scan) > 4096 || cap(c.be.scan) > 4096 {
			t.Fatalf("bounds: pending %d stmts %d portals %d scan %d/%d", c.Pending(), len(c.stmts.m), len(c.portals.m), cap(c.fe.scan), cap(c.be.scan))
		}
	})
}

// FuzzFraming is the differential check: pgproto3 and our framers cut the
// same bytes into the same messages, as far as pgproto3 reads them.
func FuzzFraming(f *testing.F) {
	f.Add(cat(query("SELECT 1"), parse("a", "SELECT $1"), bind("p", "a", "x"), msg('D', []byte{'P'}, cstr("p")), execute("p"), syncMsg, msg('X')), false)
	f.Add(cat(authOK, rowDesc, dataRow, cmdSel1, errResp("42501"), msg('N', []byte{'C'}, cstr("01000"), []byte{0}), ready), true)
	f.Add(cat(msg('t', i16(1), i32(23)), noData, msg('s'), msg('3'), msg('A', i32(1), cstr("ch"), cstr("x")), msg('G', []byte{0}, i16(0))), true)
	f.Fuzz(func(t *testing.T, stream []byte, backend bool) {
		start := startupMsg("user", "u", "database", "d")
		rec := []recorded{{Frontend, cat(start, stream)}}
		if backend {
			rec = []recorded{{Frontend, start}, {Backend, stream}}
		}
		if err := compareFraming(rec, false); err != nil {
			t.Fatal(err)
		}
	})
}

// writeCorpus adds a recorded session to the committed fuzz corpora (run
// TestWire with AUTHPROBE_WRITE_CORPUS=1 to refresh them).
func writeCorpus(t *testing.T, name string, rec []recorded) {
	if os.Getenv("AUTHPROBE_WRITE_CORPUS") == "" {
		return
	}
	var fe, be []byte
	for _, ch := range rec {
		if ch.side == Frontend {
			fe = append(fe, ch.data...)
		} else {
			be = append(be, ch.data...)
		}
	}
	q := func(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")\n" }
	name = strings.NewReplacer(" ", "-", "/", "-").Replace(name)
	write := func(target, file, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzConn", "wire-"+name, q(fe)+q(be)+"uint16(64)\nbool(true)\n")
	write("FuzzFraming", "wire-"+name+"-frontend", q(fe)+"bool(false)\n")
	write("FuzzFraming", "wire-"+name+"-backend", q(be)+"bool(true)\n")
}

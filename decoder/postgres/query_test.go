package postgres

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestSanitizeQuery(t *testing.T) {
	cases := []struct {
		q, text, op, summary, collection string
	}{
		{"SELECT id FROM users WHERE username = 'alice' AND pw = crypt('x''y', pw)",
			"SELECT id FROM users WHERE username = ? AND pw = crypt(?, pw)", "SELECT", "SELECT users", "users"},
		{"select * from a.b x join \"Docs\" d on d.id=x.id where v > 3.5e-3 -- note\n limit 10",
			`select * from a.b x join "Docs" d on d.id=x.id where v > ? limit ?`, "SELECT", `SELECT a.b "Docs"`, ""},
		{"SELECT E'it\\'s', $$dollar$$, $t$ a $ b $t$, B'0101', X'1F', N'nat', U&'d\\0061t' UESCAPE '!', 0x1F, 1_000, .5, 1e+5",
			"SELECT ?, ?, ?, ?, ?, ?, ? UESCAPE ?, ?, ?, ?, ?", "SELECT", "SELECT", ""},
		{"SELECT /* outer /* inner */ still comment */ 1", "SELECT ?", "SELECT", "SELECT", ""},
		{"INSERT INTO shipping_details (a, b) SELECT * FROM orders WHERE z = $1",
			"INSERT INTO shipping_details (a, b) SELECT * FROM orders WHERE z = $1", "INSERT", "INSERT shipping_details SELECT orders", ""},
		{"WITH r AS (SELECT id FROM roles) DELETE FROM sessions USING r WHERE s = 'x'",
			"WITH r AS (SELECT id FROM roles) DELETE FROM sessions USING r WHERE s = ?", "DELETE", "SELECT roles DELETE sessions", ""},
		{"UPDATE ONLY accounts SET balance = balance - 100.25 WHERE id = 7 RETURNING id",
			"UPDATE ONLY accounts SET balance = balance - ? WHERE id = ? RETURNING id", "UPDATE", "UPDATE accounts", "accounts"},
		{"SELECT extract(year FROM ts), substring(s FROM 2) FROM events WHERE a IS DISTINCT FROM b FOR UPDATE",
			"SELECT extract(year FROM ts), substring(s FROM ?) FROM events WHERE a IS DISTINCT FROM b FOR UPDATE", "SELECT", "SELECT events", "events"},
		{"BEGIN; SET LOCAL ROLE app_guest; COMMIT", "BEGIN; SET LOCAL ROLE app_guest; COMMIT", "BATCH", "BEGIN SET COMMIT", ""},
		{"SELECT 1; SELECT 2;", "SELECT ?; SELECT ?;", "BATCH SELECT", "SELECT", ""},
		{"CREATE TABLE IF NOT EXISTS t (id int DEFAULT 4)", "CREATE TABLE IF NOT EXISTS t (id int DEFAULT ?)", "CREATE TABLE", "CREATE TABLE", ""},
		{"COPY users (id) FROM STDIN", "COPY users (id) FROM STDIN", "COPY", "COPY users", "users"},
		{"SELECT * FROM generate_series(1, 3) g, users u, \"Odd\"\"Name\" o",
			`SELECT * FROM generate_series(?, ?) g, users u, "Odd""Name" o`, "SELECT", "SELECT", ""},
		{"select x$$y$$ from t", "select x$$y$$ from t", "SELECT", "SELECT t", "t"}, // x$$y$$ is one name
		{"SELECT 1$$secret$$", "SELECT ??", "SELECT", "SELECT", ""},
		{"SELECT 'unterminated", "SELECT ?", "SELECT", "SELECT", ""},
		{"SELECT \"unterminated", "SELECT ?", "SELECT", "SELECT", ""},
		{"", "", "", "", ""},
	}
	for _, c := range cases {
		got := SanitizeQuery([]byte(c.q), StringsStandard, false)
		if got.Text != c.text || got.Operation != c.op || got.Summary != c.summary || got.Collection() != c.collection {
			t.Errorf("SanitizeQuery(%q)\n  = %q op %q summary %q collection %q\n  want %q op %q summary %q collection %q",
				c.q, got.Text, got.Operation, got.Summary, got.Collection(), c.text, c.op, c.summary, c.collection)
		}
	}
}

// TestSanitizeBackslashes: where a plain string ends depends on
// standard_conforming_strings; unknown and ambiguous, the text goes.
func TestSanitizeBackslashes(t *testing.T) {
	q := []byte(`SELECT 'a\' , 'secret'`)
	std := SanitizeQuery(q, StringsStandard, false)
	bs := SanitizeQuery(q, StringsBackslash, false)
	unk := SanitizeQuery(q, StringsUnknown, false)
	// With backslash escapes the first string runs to the second quote, and
	// secret is a name to the server too.
	if std.Text != "SELECT ? , ?" || bs.Text != "SELECT ?secret?" || unk.Text != "" || !unk.Unsafe || unk.Operation != "SELECT" {
		t.Fatalf("standard %q, backslash %q, unknown %+v", std.Text, bs.Text, unk)
	}
	if q := SanitizeQuery([]byte(`SELECT 'no backslash'`), StringsUnknown, false); q.Text != "SELECT ?" || q.Unsafe {
		t.Fatalf("unambiguous text dropped: %+v", q)
	}
}

// TestSQLSTATENames checks the condition and class names against the
// server's own list, when the server is installed.
func TestSQLSTATENames(t *testing.T) {
	bin := "/usr/share/postgresql"
	dirs, _ := os.ReadDir(bin)
	var path string
	for _, d := range dirs {
		if p := bin + "/" + d.Name() + "/errcodes.txt"; fileExists(p) {
			path = p
		}
	}
	if path == "" {
		t.Skip("no errcodes.txt (Debian package postgresql-15)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	server := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 4 && ValidSQLSTATE(fields[0]) {
			server[fields[0]] = fields[3]
		}
	}
	for code, name := range sqlstateNames {
		if server[code] != name {
			t.Errorf("%s: %q here, %q in %s", code, name, server[code], path)
		}
	}
	for class, name := range sqlstateClasses {
		if server[class+"000"] != name {
			t.Errorf("class %s: %q here, %q in %s", class, name, server[class+"000"], path)
		}
	}
	if !AuthorizationFailure("42501") || !AuthorizationFailure("28P01") || AuthorizationFailure("42601") {
		t.Error("AuthorizationFailure")
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

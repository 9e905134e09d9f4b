package postgres

import (
	"bytes"
	"strings"
)

// StringMode is how the server reads backslashes in plain '...' strings:
// the standard_conforming_strings setting, which the server reports at
// startup (ParameterStatus). It decides where a string literal ends, so a
// wrong guess could leak the rest of a literal as if it were SQL text.
type StringMode uint8

const (
	// StringsUnknown: the setting was not seen (a connection first seen
	// mid-stream). The query is lexed both ways; when the two readings
	// differ the text is dropped.
	StringsUnknown StringMode = iota
	// StringsStandard: standard_conforming_strings=on (the default since
	// PostgreSQL 9.1): a backslash in '...' is an ordinary character.
	StringsStandard
	// StringsBackslash: standard_conforming_strings=off: '...' strings
	// take backslash escapes, as E'...' strings always do.
	StringsBackslash
)

// Query is what may be exported of one query text: the text with every
// literal replaced and what OpenTelemetry's database conventions derive
// from it.
type Query struct {
	// Text is the query with every string, dollar-quoted string, bit
	// string and number replaced by '?', comments removed and whitespace
	// collapsed; identifiers, keywords, operators and $n placeholders are
	// kept. Empty when the text could not be lexed safely.
	Text string
	// Operation is db.operation.name: the first statement's command
	// ("SELECT", "CREATE TABLE"), "BATCH SELECT" or "BATCH" for several
	// statements.
	Operation string
	// Collections are the tables the statements name (FROM, JOIN, INTO,
	// UPDATE, COPY, TRUNCATE, LOCK), in order, without duplicates.
	Collections []string
	// Summary is db.query.summary: each statement's operations and
	// collections ("INSERT orders SELECT carts"), at most maxSummary bytes.
	Summary string
	// Statements is how many non-empty statements the text holds.
	Statements int
	// Truncated: the text is a prefix of the query (the capture was cut).
	Truncated bool
	// Unsafe: the two readings of backslashes disagreed (StringsUnknown)
	// and Text, Collections and Summary were dropped.
	Unsafe bool
}

// Collection is db.collection.name: set only when the query names exactly
// one table.
func (q *Query) Collection() string {
	if len(q.Collections) == 1 {
		return q.Collections[0]
	}
	return ""
}

const (
	maxSummary = 255 // db.query.summary is meant to be short and low-cardinality
	literal    = "?"
)

type tokKind uint8

const (
	tkIdent   tokKind = iota + 1 // unquoted name or keyword
	tkQIdent                     // "quoted" or U&"quoted" name
	tkLiteral                    // any constant: replaced
	tkParam                      // $1
	tkOp                         // one operator or punctuation byte
	tkSpace                      // whitespace or a comment
)

type token struct {
	kind       tokKind
	start, end int
}

// SanitizeQuery lexes q as PostgreSQL does and returns it with its
// literals replaced. truncated says q is a prefix of the real text; an
// unterminated literal, comment or quoted name at its end is dropped.
func SanitizeQuery(q []byte, mode StringMode, truncated bool) Query {
	var toks []token
	switch mode {
	case StringsStandard, StringsBackslash:
		toks = lex(q, mode == StringsBackslash)
	default:
		std, bs := lex(q, false), lex(q, true)
		if render(q, std) != render(q, bs) {
			return Query{Truncated: truncated, Unsafe: true, Operation: firstOperation(q, std, bs)}
		}
		toks = std
	}
	out := Query{Text: render(q, toks), Truncated: truncated}
	summarize(q, toks, &out)
	return out
}

// firstOperation keeps db.operation.name when both readings agree on it:
// the command keyword comes before any literal in nearly every statement.
func firstOperation(q []byte, a, b []token) string {
	var qa, qb Query
	summarize(q, a, &qa)
	summarize(q, b, &qb)
	if qa.Operation == qb.Operation && qa.Statements == 1 && qb.Statements == 1 {
		return qa.Operation
	}
	return ""
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') || c >= 0x80
}

func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lex splits q into tokens the way the server's scanner does as far as
// where literals, comments and quoted names begin and end matters.
// backslash is the StringsBackslash reading of plain strings.
func lex(q []byte, backslash bool) []token {
	var toks []token
	add := func(k tokKind, s, e int) {
		if k == tkSpace && len(toks) > 0 && toks[len(toks)-1].kind == tkSpace {
			toks[len(toks)-1].end = e
			return
		}
		toks = append(toks, token{k, s, e})
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case isSpace(c):
			j := i + 1
			for j < len(q) && isSpace(q[j]) {
				j++
			}
			add(tkSpace, i, j)
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := bytes.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			add(tkSpace, i, i+j)
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := blockCommentEnd(q, i)
			add(tkSpace, i, j)
			i = j
		case c == '\'':
			j := stringEnd(q, i+1, backslash)
			add(tkLiteral, i, j)
			i = j
		case (c|0x20 == 'e') && i+1 < len(q) && q[i+1] == '\'':
			j := stringEnd(q, i+2, true)
			add(tkLiteral, i, j)
			i = j
		case (c|0x20 == 'b' || c|0x20 == 'x' || c|0x20 == 'n') && i+1 < len(q) && q[i+1] == '\'':
			// Bit and hex strings have no escapes; N'' reads like ''.
			j := stringEnd(q, i+2, backslash && c|0x20 == 'n')
			add(tkLiteral, i, j)
			i = j
		case c|0x20 == 'u' && i+2 < len(q) && q[i+1] == '&' && q[i+2] == '\'':
			// U&'' strings only exist with standard strings: quotes double.
			j := stringEnd(q, i+3, false)
			add(tkLiteral, i, j)
			i = j
		case c|0x20 == 'u' && i+2 < len(q) && q[i+1] == '&' && q[i+2] == '"':
			j, ok := quotedEnd(q, i+3)
			if ok {
				add(tkQIdent, i, j)
			} else {
				add(tkLiteral, i, j)
			}
			i = j
		case c == '"':
			j, ok := quotedEnd(q, i+1)
			if ok {
				add(tkQIdent, i, j)
			} else {
				// An unterminated name at the end of a cut text: no telling
				// what follows, so it goes.
				add(tkLiteral, i, j)
			}
			i = j
		case c == '$' && i+1 < len(q) && isDigit(q[i+1]):
			j := i + 1
			for j < len(q) && isDigit(q[j]) {
				j++
			}
			add(tkParam, i, j)
			i = j
		case c == '$':
			if j, ok := dollarEnd(q, i); ok {
				add(tkLiteral, i, j)
				i = j
			} else {
				add(tkOp, i, i+1)
				i++
			}
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			j := numberEnd(q, i)
			add(tkLiteral, i, j)
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && isIdentCont(q[j]) {
				j++
			}
			add(tkIdent, i, j)
			i = j
		default:
			add(tkOp, i, i+1)
			i++
		}
	}
	return toks
}

// blockCommentEnd is the end of the comment opening at i; the server nests
// them, and an unclosed one runs to the end.
func blockCommentEnd(q []byte, i int) int {
	depth := 0
	for j := i; j+1 < len(q); {
		switch {
		case q[j] == '/' && q[j+1] == '*':
			depth++
			j += 2
		case q[j] == '*' && q[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j
			}
		default:
			j++
		}
	}
	return len(q)
}

// stringEnd is the end of a quoted string whose body starts at i: a
// doubled quote is one quote, and with backslash escapes "\x" is one
// character whatever x is.
func stringEnd(q []byte, i int, backslash bool) int {
	for j := i; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if backslash {
				j++
			}
		case '\'':
			if j+1 < len(q) && q[j+1] == '\'' {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// quotedEnd is the end of a "quoted" name whose body starts at i, and
// whether it was closed.
func quotedEnd(q []byte, i int) (int, bool) {
	for j := i; j < len(q); j++ {
		if q[j] == '"' {
			if j+1 < len(q) && q[j+1] == '"' {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return len(q), false
}

// dollarEnd is the end of a $tag$...$tag$ string opening at i, if the
// text at i is one; an unclosed one runs to the end.
func dollarEnd(q []byte, i int) (int, bool) {
	j := i + 1
	if j < len(q) && isIdentStart(q[j]) {
		for j < len(q) && isIdentCont(q[j]) && q[j] != '$' {
			j++
		}
	}
	if j >= len(q) || q[j] != '$' {
		return 0, false
	}
	tag := q[i : j+1]
	k := bytes.Index(q[j+1:], tag)
	if k < 0 {
		return len(q), true
	}
	return j + 1 + k + len(tag), true
}

// numberEnd is the end of a numeric constant at i. Letters, digits and
// underscores glued to it (0x1F, 1_000, 1e5) belong to it: newer servers
// read them as part of the number, older ones as an alias, and either way
// dropping them keeps any value out.
func numberEnd(q []byte, i int) int {
	j := i
	for j < len(q) && (isDigit(q[j]) || q[j] == '.' || q[j] == '_' || isIdentStart(q[j])) {
		if (q[j]|0x20 == 'e') && j+1 < len(q) && (q[j+1] == '+' || q[j+1] == '-') {
			j++
		}
		j++
	}
	return j
}

// render joins the tokens: literals become '?', whitespace and comments
// one space.
func render(q []byte, toks []token) string {
	var b strings.Builder
	b.Grow(len(q))
	for i, t := range toks {
		switch t.kind {
		case tkSpace:
			if i > 0 && i < len(toks)-1 {
				b.WriteByte(' ')
			}
		case tkLiteral:
			b.WriteString(literal)
		default:
			b.Write(q[t.start:t.end])
		}
	}
	return b.String()
}

// keywords that start a statement whose target is the next name.
var (
	dmlOps = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true}
	// ddlObjects name what CREATE, ALTER and DROP act on.
	ddlObjects = map[string]bool{
		"TABLE": true, "INDEX": true, "VIEW": true, "FUNCTION": true, "PROCEDURE": true, "ROLE": true,
		"USER": true, "SCHEMA": true, "DATABASE": true, "EXTENSION": true, "POLICY": true, "TRIGGER": true,
		"SEQUENCE": true, "TYPE": true, "DOMAIN": true, "MATERIALIZED": true, "PUBLICATION": true,
		"SUBSCRIPTION": true, "SERVER": true, "RULE": true, "OWNED": true, "TABLESPACE": true,
	}
	// notAlias ends a FROM item: what follows a table name that is not
	// its alias.
	notAlias = map[string]bool{
		"WHERE": true, "JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true, "FULL": true, "CROSS": true,
		"NATURAL": true, "ON": true, "USING": true, "GROUP": true, "ORDER": true, "LIMIT": true, "OFFSET": true,
		"HAVING": true, "WINDOW": true, "UNION": true, "INTERSECT": true, "EXCEPT": true, "FOR": true,
		"RETURNING": true, "SET": true, "VALUES": true, "SELECT": true, "DEFAULT": true, "FETCH": true,
		"TABLESAMPLE": true, "LATERAL": true, "OVERRIDING": true, "WITH": true, "AS": true, "ONLY": true,
	}
	// notTable are words after FROM or INTO that are not tables.
	notTable = map[string]bool{"STDIN": true, "STDOUT": true, "PROGRAM": true, "LATERAL": true, "SELECT": true}
)

// summarize fills Operation, Collections, Summary and Statements from the
// tokens of a sanitised query. It reads only keywords and names, never
// literals, so it cannot leak one either.
func summarize(q []byte, toks []token, out *Query) {
	// Drop whitespace: the walk looks at neighbours.
	words := make([]token, 0, len(toks))
	for _, t := range toks {
		if t.kind != tkSpace {
			words = append(words, t)
		}
	}
	upper := func(t token) string {
		if t.kind != tkIdent {
			return ""
		}
		return strings.ToUpper(string(q[t.start:t.end]))
	}
	isOp := func(t token, c byte) bool { return t.kind == tkOp && q[t.start] == c }

	var ops []string
	var summary []string
	seen := map[string]bool{}
	addSummary := func(s string) {
		if n := len(summary); n > 0 && summary[n-1] == s {
			return
		}
		summary = append(summary, s)
	}
	addTable := func(name string) {
		addSummary(name)
		if !seen[name] {
			seen[name] = true
			out.Collections = append(out.Collections, name)
		}
	}
	// name reads a possibly qualified name at i: a.b."c".
	name := func(i int) (string, int) {
		var b strings.Builder
		j := i
		for j < len(words) && (words[j].kind == tkIdent || words[j].kind == tkQIdent) {
			b.Write(q[words[j].start:words[j].end])
			j++
			if j+1 < len(words) && isOp(words[j], '.') && (words[j+1].kind == tkIdent || words[j+1].kind == tkQIdent) {
				b.WriteByte('.')
				j++
				continue
			}
			break
		}
		return b.String(), j
	}
	// tableAt reads the table named at i, if any, skipping ONLY.
	tableAt := func(i int, funcs bool) (string, int) {
		if i < len(words) && upper(words[i]) == "ONLY" {
			i++
		}
		if i >= len(words) || notTable[upper(words[i])] {
			return "", i
		}
		n, j := name(i)
		if n == "" || (funcs && j < len(words) && isOp(words[j], '(')) {
			return "", j
		}
		return n, j
	}

	start := true // at the start of a statement
	// query[d] says whether parenthesis depth d holds a query (the top
	// level, a subquery) rather than a function's arguments, where FROM
	// is EXTRACT(... FROM x) or SUBSTRING(... FROM n).
	query := []bool{true}
	var stmtOp string
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case isOp(w, ';'):
			if len(query) == 1 {
				start, stmtOp = true, ""
			}
			continue
		case isOp(w, '('):
			sub := false
			if i+1 < len(words) {
				k := upper(words[i+1])
				sub = k == "SELECT" || k == "WITH" || k == "VALUES" || k == "TABLE"
			}
			query = append(query, sub)
			continue
		case isOp(w, ')'):
			if len(query) > 1 {
				query = query[:len(query)-1]
			}
			continue
		}
		inQuery := query[len(query)-1]
		kw := upper(w)
		if start && kw != "" {
			start = false
			out.Statements++
			stmtOp = kw
			if kw == "WITH" {
				stmtOp = mainAfterWith(words, i, upper, isOp)
			}
			if kw == "CREATE" || kw == "ALTER" || kw == "DROP" {
				for j := i + 1; j < len(words) && j < i+5; j++ {
					if o := upper(words[j]); ddlObjects[o] {
						stmtOp = kw + " " + o
						break
					}
				}
			}
			if kw == "START" && i+1 < len(words) && upper(words[i+1]) == "TRANSACTION" {
				stmtOp = "START TRANSACTION"
			}
			ops = append(ops, stmtOp)
			if !dmlOps[kw] && kw != "WITH" {
				addSummary(stmtOp)
			}
		} else if start && w.kind != tkIdent {
			// A statement that starts with something other than a word
			// (a stray literal): count it, name nothing.
			start = false
			out.Statements++
			ops = append(ops, "")
		}
		switch kw {
		case "SELECT", "INSERT", "DELETE", "MERGE":
			addSummary(kw)
		case "UPDATE":
			// FOR UPDATE and DO UPDATE SET lock or upsert: no new target.
			if i > 0 && (upper(words[i-1]) == "FOR" || upper(words[i-1]) == "DO") {
				continue
			}
			addSummary(kw)
			if t, _ := tableAt(i+1, false); t != "" {
				addTable(t)
			}
		case "FROM":
			if !inQuery || stmtOp == "FETCH" || stmtOp == "MOVE" || (i > 0 && upper(words[i-1]) == "DISTINCT") {
				continue
			}
			for j := i + 1; j < len(words); {
				t, k := tableAt(j, true)
				if t == "" {
					break
				}
				addTable(t)
				if k < len(words) && upper(words[k]) == "AS" {
					k++
				}
				if k < len(words) && words[k].kind == tkIdent && !notAlias[upper(words[k])] {
					k++
				}
				if k < len(words) && isOp(words[k], ',') {
					j = k + 1
					continue
				}
				break
			}
		case "JOIN", "INTO":
			if !inQuery {
				continue
			}
			if t, _ := tableAt(i+1, kw == "JOIN"); t != "" {
				addTable(t)
			}
		case "TRUNCATE", "LOCK", "COPY":
			if stmtOp != kw {
				continue
			}
			j := i + 1
			if j < len(words) && upper(words[j]) == "TABLE" {
				j++
			}
			if t, _ := tableAt(j, false); t != "" {
				addTable(t)
			}
		}
	}
	switch {
	case len(ops) == 1:
		out.Operation = ops[0]
	case len(ops) > 1:
		out.Operation = "BATCH"
		same := ops[0] != ""
		for _, o := range ops[1:] {
			same = same && o == ops[0]
		}
		if same {
			out.Operation = "BATCH " + ops[0]
		}
	}
	s := strings.Join(summary, " ")
	if len(s) > maxSummary {
		s = s[:maxSummary]
		if k := strings.LastIndexByte(s, ' '); k > 0 {
			s = s[:k]
		}
	}
	out.Summary = s
}

// mainAfterWith is the command of a WITH statement: the first DML keyword
// at the top level after the common table expressions.
func mainAfterWith(words []token, i int, upper func(token) string, isOp func(token, byte) bool) string {
	depth := 0
	for j := i + 1; j < len(words); j++ {
		switch {
		case isOp(words[j], '('):
			depth++
		case isOp(words[j], ')'):
			depth--
		case isOp(words[j], ';') && depth == 0:
			return "WITH"
		case depth == 0:
			if kw := upper(words[j]); dmlOps[kw] || kw == "VALUES" || kw == "TABLE" {
				return kw
			}
		}
	}
	return "WITH"
}

package secattr

import (
	"unicode/utf16"
	"unicode/utf8"
)

// jsonLexer gives the tokens encoding/json's Decoder.Token gives for a
// body read with UseNumber, in the same order and up to the same error,
// without allocating: strings are decoded into scratch.buf, numbers are
// ranges of the body. FuzzBodyDifferential holds it to that.
type jsonLexer struct {
	b     []byte
	p     int
	state jsonState
	stack []jsonState
}

// jsonState is where the lexer is (Decoder's tokenState).
type jsonState uint8

const (
	jsonTop jsonState = iota
	jsonArrayStart
	jsonArrayValue
	jsonArrayComma
	jsonObjectStart
	jsonObjectKey
	jsonObjectColon
	jsonObjectValue
	jsonObjectComma
)

// jsonToken is a token kind.
type jsonToken uint8

const (
	jsonBeginObject jsonToken = iota + 1
	jsonEndObject
	jsonBeginArray
	jsonEndArray
	jsonString // a key or a value: its decoded bytes are buf[from:to]
	jsonNumber // its text is the body's [from:to]
	jsonTrue
	jsonFalse
	jsonNull
)

func (l *jsonLexer) valueAllowed() bool {
	switch l.state {
	case jsonTop, jsonArrayStart, jsonArrayValue, jsonObjectValue:
		return true
	}
	return false
}

func (l *jsonLexer) valueEnd() {
	switch l.state {
	case jsonArrayStart, jsonArrayValue:
		l.state = jsonArrayComma
	case jsonObjectValue:
		l.state = jsonObjectComma
	}
}

func (l *jsonLexer) push(s jsonState) {
	l.stack = append(l.stack, l.state)
	l.state = s
}

func (l *jsonLexer) pop() {
	l.state = l.stack[len(l.stack)-1]
	l.stack = l.stack[:len(l.stack)-1]
}

// next returns the next token; ok is false at the end of the body or at
// a syntax error, after which there are no more tokens.
func (l *jsonLexer) next(sc *scratch) (tok jsonToken, from, to int32, ok bool) {
	for {
		for l.p < len(l.b) && isJSONSpace(l.b[l.p]) {
			l.p++
		}
		if l.p >= len(l.b) {
			return 0, 0, 0, false
		}
		switch c := l.b[l.p]; c {
		case '[', '{':
			if !l.valueAllowed() {
				return 0, 0, 0, false
			}
			l.p++
			if c == '[' {
				l.push(jsonArrayStart)
				return jsonBeginArray, 0, 0, true
			}
			l.push(jsonObjectStart)
			return jsonBeginObject, 0, 0, true
		case ']':
			if l.state != jsonArrayStart && l.state != jsonArrayComma {
				return 0, 0, 0, false
			}
			l.p++
			l.pop()
			l.valueEnd()
			return jsonEndArray, 0, 0, true
		case '}':
			if l.state != jsonObjectStart && l.state != jsonObjectComma {
				return 0, 0, 0, false
			}
			l.p++
			l.pop()
			l.valueEnd()
			return jsonEndObject, 0, 0, true
		case ':':
			if l.state != jsonObjectColon {
				return 0, 0, 0, false
			}
			l.p++
			l.state = jsonObjectValue
			continue
		case ',':
			switch l.state {
			case jsonArrayComma:
				l.state = jsonArrayValue
			case jsonObjectComma:
				l.state = jsonObjectKey
			default:
				return 0, 0, 0, false
			}
			l.p++
			continue
		case '"':
			if l.state == jsonObjectStart || l.state == jsonObjectKey {
				from, to, ok := l.str(sc)
				if !ok {
					return 0, 0, 0, false
				}
				l.state = jsonObjectColon
				return jsonString, from, to, true
			}
		}
		if !l.valueAllowed() {
			return 0, 0, 0, false
		}
		tok, from, to, ok = l.scalar(sc)
		if !ok {
			return 0, 0, 0, false
		}
		l.valueEnd()
		return tok, from, to, true
	}
}

// scalar reads a string, number or literal at l.p, as the Decoder's
// scanner accepts them: a number ends at the first byte that cannot
// continue it (what follows is the next token's business), and must not
// end right after '-', '.', 'e' or an exponent sign.
func (l *jsonLexer) scalar(sc *scratch) (jsonToken, int32, int32, bool) {
	b, i := l.b, l.p
	switch c := b[i]; {
	case c == '"':
		from, to, ok := l.str(sc)
		return jsonString, from, to, ok
	case c == '-' || '0' <= c && c <= '9':
		if c == '-' {
			i++
			if i >= len(b) || b[i] < '0' || b[i] > '9' {
				return 0, 0, 0, false
			}
		}
		if b[i] == '0' {
			i++
		} else {
			for i < len(b) && isDigit(b[i]) {
				i++
			}
		}
		if i < len(b) && b[i] == '.' {
			i++
			if i >= len(b) || !isDigit(b[i]) {
				return 0, 0, 0, false
			}
			for i < len(b) && isDigit(b[i]) {
				i++
			}
		}
		if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
			i++
			if i < len(b) && (b[i] == '+' || b[i] == '-') {
				i++
			}
			if i >= len(b) || !isDigit(b[i]) {
				return 0, 0, 0, false
			}
			for i < len(b) && isDigit(b[i]) {
				i++
			}
		}
		from := int32(l.p)
		l.p = i
		return jsonNumber, from, int32(i), true
	}
	for _, lit := range [...]struct {
		text string
		tok  jsonToken
	}{{"true", jsonTrue}, {"false", jsonFalse}, {"null", jsonNull}} {
		if b[i] == lit.text[0] {
			if len(b)-i < len(lit.text) || string(b[i:i+len(lit.text)]) != lit.text {
				return 0, 0, 0, false
			}
			l.p = i + len(lit.text)
			return lit.tok, 0, 0, true
		}
	}
	return 0, 0, 0, false
}

// str reads the string at l.p (its opening quote) and appends it to
// sc.buf decoded as the Decoder decodes strings: escapes resolved, a
// \u surrogate pair joined, a lone surrogate or an invalid UTF-8 byte
// made U+FFFD.
func (l *jsonLexer) str(sc *scratch) (from, to int32, ok bool) {
	b := l.b
	i := l.p + 1
	plain := true // no escape and no byte outside ASCII: copied as is
	for {
		for i < len(b) && isPlainJSON(b[i]) {
			i++
		}
		if i >= len(b) {
			return 0, 0, false
		}
		c := b[i]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return 0, 0, false
		}
		plain = false
		if c != '\\' {
			i++
			continue
		}
		i++
		if i >= len(b) {
			return 0, 0, false
		}
		switch b[i] {
		case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
			i++
		case 'u':
			if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
				return 0, 0, false
			}
			i += 5
		default:
			return 0, 0, false
		}
	}
	s := b[l.p+1 : i]
	l.p = i + 1
	from = int32(len(sc.buf))
	if plain {
		sc.buf = append(sc.buf, s...)
		return from, int32(len(sc.buf)), true
	}
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				sc.buf = append(sc.buf, '\b')
			case 'f':
				sc.buf = append(sc.buf, '\f')
			case 'n':
				sc.buf = append(sc.buf, '\n')
			case 'r':
				sc.buf = append(sc.buf, '\r')
			case 't':
				sc.buf = append(sc.buf, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != utf8.RuneError {
						r += 6
						sc.buf = utf8.AppendRune(sc.buf, dec)
						continue
					}
					rr = utf8.RuneError
				}
				sc.buf = utf8.AppendRune(sc.buf, rr)
				continue
			default: // '"', '\\', '/'
				sc.buf = append(sc.buf, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			sc.buf = append(sc.buf, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			sc.buf = utf8.AppendRune(sc.buf, rr)
			r += size
		}
	}
	return from, int32(len(sc.buf)), true
}

// getu4 reads \uXXXX at the start of s; -1 when it is not one.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		if !isHex(c) {
			return -1
		}
		r = r<<4 | rune(unhex(c))
	}
	return r
}

// isPlainJSON: c stands for itself in a JSON string (printable ASCII but
// the quote and the backslash).
func isPlainJSON(c byte) bool { return c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' }

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

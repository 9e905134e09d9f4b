package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

const maxPgprotoBody = 1 << 20

// framed is one message as a framer cut it: what the differential check
// compares with pgproto3, an independent implementation of the protocol.
type framed struct {
	side Side
	typ  byte   // 0 for a startup-phase packet
	raw  []byte // the whole message as we cut it (ours only)
}

func (f framed) String() string {
	t := string(f.typ)
	if f.typ == 0 {
		t = "startup"
	}
	return fmt.Sprintf("%s %s/%d", f.side, t, len(f.raw))
}

func types(ms []framed) string {
	var b []byte
	for _, m := range ms {
		if m.typ == 0 {
			b = append(b, '0')
		} else {
			b = append(b, m.typ)
		}
	}
	return string(b)
}

// ourFraming feeds fe then be (each whole) and lists the messages the
// framers cut, single-byte answers left out.
func ourFraming(rec []recorded) []framed {
	c := NewConn(Config{})
	var out []framed
	streams := map[Side][]byte{}
	for _, ch := range rec {
		streams[ch.side] = append(streams[ch.side], ch.data...)
	}
	for _, f := range []*framer{&c.fe, &c.be} {
		f := f
		next := f.onMessage
		f.onMessage = func(m *message) {
			if !m.single {
				out = append(out, framed{f.side, m.typ, streams[f.side][m.r.Start:m.r.End]})
			}
			next(m)
		}
	}
	off := map[Side]uint64{}
	for _, ch := range rec {
		c.Feed(ch.side, off[ch.side], 0, ch.data)
		off[ch.side] += uint64(len(ch.data))
	}
	return out
}

// pgprotoFraming frames the same streams with pgproto3: the backend
// stream first (it tells which password message the frontend sends),
// then the frontend stream, each until its end or pgproto3's first error.
func pgprotoFraming(fe, be []byte, singleAnswer bool) (feMsgs, beMsgs []framed, err error) {
	if singleAnswer && len(be) > 0 && (be[0] == 'N' || be[0] == 'S') {
		be = be[1:]
	}
	front := pgproto3.NewFrontend(bytes.NewReader(be), io.Discard)
	// A claimed length is allocated up front: keep fuzzed ones small.
	front.SetMaxBodyLen(maxPgprotoBody)
	var authCodes []uint32 // the requests the client answers with a 'p'
	for {
		msg, err := front.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, beMsgs, fmt.Errorf("backend stream: %w", err)
			}
			break
		}
		switch msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			authCodes = append(authCodes, pgproto3.AuthTypeCleartextPassword)
		case *pgproto3.AuthenticationMD5Password:
			authCodes = append(authCodes, pgproto3.AuthTypeMD5Password)
		case *pgproto3.AuthenticationSASL:
			authCodes = append(authCodes, pgproto3.AuthTypeSASL)
		case *pgproto3.AuthenticationSASLContinue:
			authCodes = append(authCodes, pgproto3.AuthTypeSASLContinue)
		}
		enc, err := msg.Encode(nil)
		if err != nil {
			return nil, beMsgs, err
		}
		beMsgs = append(beMsgs, framed{side: Backend, typ: enc[0]})
	}
	back := pgproto3.NewBackend(bytes.NewReader(fe), io.Discard)
	back.SetMaxBodyLen(maxPgprotoBody)
	startup := true
	for {
		var msg pgproto3.FrontendMessage
		var err error
		if startup {
			msg, err = back.ReceiveStartupMessage()
		} else {
			if len(authCodes) > 0 {
				_ = back.SetAuthType(authCodes[0])
			}
			msg, err = back.Receive()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return feMsgs, beMsgs, fmt.Errorf("frontend stream: %w", err)
			}
			break
		}
		enc, err := msg.Encode(nil)
		if err != nil {
			return feMsgs, beMsgs, err
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			feMsgs = append(feMsgs, framed{side: Frontend})
			continue
		case *pgproto3.StartupMessage, *pgproto3.CancelRequest:
			feMsgs = append(feMsgs, framed{side: Frontend})
			startup = false
			continue
		case *pgproto3.PasswordMessage, *pgproto3.SASLInitialResponse, *pgproto3.SASLResponse:
			if len(authCodes) > 0 {
				authCodes = authCodes[1:]
			}
		}
		feMsgs = append(feMsgs, framed{side: Frontend, typ: enc[0]})
	}
	return feMsgs, beMsgs, nil
}

// decodesAlone: pgproto3 reads exactly one message of m's type from m's
// bytes: followed by a sentinel message, it reads m, then the sentinel,
// then nothing. Password messages are left out (their decoding depends
// on the authentication exchange).
func decodesAlone(m framed) error {
	if m.typ == 'p' {
		return nil
	}
	var got []byte
	var err error
	if m.side == Frontend {
		back := pgproto3.NewBackend(bytes.NewReader(cat(m.raw, msg('S'))), io.Discard)
		back.SetMaxBodyLen(maxPgprotoBody)
		var fm pgproto3.FrontendMessage
		if m.typ == 0 {
			_, err = back.ReceiveStartupMessage()
			got = append(got, 0)
		}
		for err == nil && len(got) < 2 {
			if fm, err = back.Receive(); err == nil {
				got = append(got, typeOf(fm))
			}
		}
		if err == nil {
			_, err = back.Receive()
		}
	} else {
		front := pgproto3.NewFrontend(bytes.NewReader(cat(m.raw, msg('Z', []byte{'I'}))), io.Discard)
		front.SetMaxBodyLen(maxPgprotoBody)
		var bm pgproto3.BackendMessage
		for err == nil && len(got) < 2 {
			if bm, err = front.Receive(); err == nil {
				got = append(got, typeOf(bm))
			}
		}
		if err == nil {
			_, err = front.Receive()
		}
	}
	sentinel := byte('S')
	if m.side == Backend {
		sentinel = 'Z'
	}
	if len(got) != 2 || got[0] != m.typ || got[1] != sentinel {
		return fmt.Errorf("%v: pgproto3 reads %q from it and a sentinel (%v)", m, got, err)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%v: pgproto3 finds more after it: %v", m, err)
	}
	return nil
}

// typeOf is a decoded message's type byte (0 when it cannot say).
func typeOf(m interface{ Encode([]byte) ([]byte, error) }) byte {
	enc, err := m.Encode(nil)
	if err != nil || len(enc) == 0 {
		return 0
	}
	return enc[0]
}

// compareFraming frames a recording both ways. exact: the whole of both
// streams must agree; else as far as pgproto3 reads.
func compareFraming(rec []recorded, exact bool) error {
	var fe, be []byte
	for _, ch := range rec {
		if ch.side == Frontend {
			fe = append(fe, ch.data...)
		} else {
			be = append(be, ch.data...)
		}
	}
	ours := map[Side][]framed{}
	for _, m := range ourFraming(rec) {
		ours[m.side] = append(ours[m.side], m)
	}
	single := len(fe) >= 8 && (be32(fe[4:]) == codeSSL || be32(fe[4:]) == codeGSSENC)
	theirsFE, theirsBE, perr := pgprotoFraming(fe, be, single)
	if exact && perr != nil {
		return fmt.Errorf("pgproto3: %w", perr)
	}
	for side, theirs := range map[Side][]framed{Frontend: theirsFE, Backend: theirsBE} {
		o, th := types(ours[side]), types(theirs)
		if exact && o != th || !exact && !strings.HasPrefix(o, th) {
			return fmt.Errorf("%s messages differ from pgproto3's:\n  ours   %q\n  theirs %q", side, o, th)
		}
		for _, m := range ours[side][:len(theirs)] {
			if err := decodesAlone(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFraming: our framers and pgproto3 cut a recording into the same
// messages.
func checkFraming(t *testing.T, name string, rec []recorded) {
	t.Helper()
	if err := compareFraming(rec, true); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

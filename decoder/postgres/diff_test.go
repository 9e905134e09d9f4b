package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// framed is one message as a framer cut it: what the differential check
// compares with pgproto3, an independent implementation of the protocol.
type framed struct {
	side   Side
	typ    byte // 0 for a startup-phase packet
	length uint32
}

func (f framed) String() string {
	t := string(f.typ)
	if f.typ == 0 {
		t = "startup"
	}
	return fmt.Sprintf("%s %s/%d", f.side, t, f.length)
}

// ourFraming feeds fe then be (each whole) and lists the messages the
// framers cut, single-byte answers left out.
func ourFraming(rec []recorded) []framed {
	c := NewConn(Config{})
	var out []framed
	for _, f := range []*framer{&c.fe, &c.be} {
		f := f
		next := f.onMessage
		f.onMessage = func(m *message) {
			if !m.single {
				out = append(out, framed{f.side, m.typ, m.length})
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
		beMsgs = append(beMsgs, framed{Backend, enc[0], uint32(len(enc) - 5)})
	}
	back := pgproto3.NewBackend(bytes.NewReader(fe), io.Discard)
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
			feMsgs = append(feMsgs, framed{Frontend, 0, uint32(len(enc) - 4)})
			continue
		case *pgproto3.StartupMessage, *pgproto3.CancelRequest:
			feMsgs = append(feMsgs, framed{Frontend, 0, uint32(len(enc) - 4)})
			startup = false
			continue
		case *pgproto3.PasswordMessage, *pgproto3.SASLInitialResponse, *pgproto3.SASLResponse:
			if len(authCodes) > 0 {
				authCodes = authCodes[1:]
			}
		}
		feMsgs = append(feMsgs, framed{Frontend, enc[0], uint32(len(enc) - 5)})
	}
	return feMsgs, beMsgs, nil
}

// checkFraming: our framers and pgproto3 cut a recording into the same
// messages.
func checkFraming(t *testing.T, name string, rec []recorded) {
	t.Helper()
	var fe, be []byte
	for _, ch := range rec {
		if ch.side == Frontend {
			fe = append(fe, ch.data...)
		} else {
			be = append(be, ch.data...)
		}
	}
	ours := ourFraming(rec)
	var oursFE, oursBE []framed
	for _, m := range ours {
		if m.side == Frontend {
			oursFE = append(oursFE, m)
		} else {
			oursBE = append(oursBE, m)
		}
	}
	single := len(fe) >= 8 && (be32(fe[4:]) == codeSSL || be32(fe[4:]) == codeGSSENC)
	theirsFE, theirsBE, err := pgprotoFraming(fe, be, single)
	if err != nil {
		t.Errorf("%s: pgproto3: %v", name, err)
	}
	if !reflect.DeepEqual(oursFE, theirsFE) {
		t.Errorf("%s: frontend framing differs from pgproto3's:\n  ours   %v\n  theirs %v", name, oursFE, theirsFE)
	}
	if !reflect.DeepEqual(oursBE, theirsBE) {
		t.Errorf("%s: backend framing differs from pgproto3's:\n  ours   %v\n  theirs %v", name, oursBE, theirsBE)
	}
	if len(oursFE) == 0 || len(oursBE) == 0 {
		t.Errorf("%s: nothing framed", name)
	}
}

package secattr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/authprobe/authprobe/config"
)

// MinKeyLen is the shortest accepted HMAC key, in bytes.
const MinKeyLen = 16

// HashPrefix starts every hashed auth.username value: "hmac:" followed by
// the first 16 bytes (32 hex digits) of HMAC-SHA256(key, normalised
// username). 128 bits keep collisions out of reach while staying short.
const HashPrefix = "hmac:"

const (
	maxKeyFile  = 4 << 10
	maxUsername = 1 << 10 // longer values are not usernames
)

// loadKey resolves the HMAC key. Privacy=hash needs a configured source
// unless RandomKey accepts a per-run key; plain and drop only need a key for
// UserKey, so they fall back to a random one silently (it never leaves the
// agent). random reports whether hashes use a random key.
func loadKey(cfg config.UsernameConfig, privacy string, env func(string) string, rnd io.Reader) (key []byte, random bool, err error) {
	switch {
	case cfg.KeyFile != "" && cfg.KeyEnv != "":
		return nil, false, errors.New("username: set only one of key_file and key_env")
	case cfg.KeyFile != "":
		key, err = readKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, false, err
		}
	case cfg.KeyEnv != "":
		if env == nil {
			env = os.Getenv
		}
		v := strings.TrimSpace(env(cfg.KeyEnv))
		if v == "" {
			return nil, false, fmt.Errorf("username: key_env %s is empty or unset", cfg.KeyEnv)
		}
		key = []byte(v)
	default:
		if privacy == config.PrivacyHash && !cfg.RandomKey {
			return nil, false, errors.New("username: privacy hash needs key_file or key_env (or random_key: true for a per-run key)")
		}
		key = make([]byte, 32)
		if _, err := io.ReadFull(rnd, key); err != nil {
			return nil, false, fmt.Errorf("username: random key: %w", err)
		}
		return key, privacy == config.PrivacyHash, nil
	}
	if len(key) < MinKeyLen {
		// The length only: the key itself never goes into an error.
		return nil, false, fmt.Errorf("username: key is %d bytes, need at least %d", len(key), MinKeyLen)
	}
	return key, false, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("username: key_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("username: read key_file %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("username: key_file %s is larger than %d bytes", path, maxKeyFile)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// username picks the username from, in order: the configured header,
// Basic credentials, the configured body fields, the same fields in the
// query string (Go's FormValue reads it when the body lacks the field),
// the username of an OAuth2 password grant. It returns it normalised, ""
// when none, and reports a request that names more than one: the header
// twice with different values, or two of the other sources, a body field
// repeated or spelled in another case (Go's encoding/json and ASP.NET
// match names in any case) with different values. Servers disagree on
// which one counts, so an attacker could otherwise pick the username the
// span shows. A configured header is authoritative: the operator said the
// username travels there.
func (e *Extractor) username(in Input, a authInfo, body, query fields) (u string, ambiguous bool) {
	if e.userHeader != "" && in.Request != nil {
		var c candidates
		for _, f := range in.Request.Header {
			if strings.EqualFold(f.Name, e.userHeader) {
				c.add(e.normaliseUsername(f.Value, in.Memory), false)
			}
		}
		if c.ambiguous || c.value != "" {
			return c.result()
		}
	}
	var c candidates
	if a.basicUser != "" || a.basicConflict {
		c.add(e.normaliseUsername(a.basicUser, in.Memory), a.basicConflict)
	}
	e.bodyUsername(&c, body, in.Memory)
	e.bodyUsername(&c, query, in.Memory)
	if a.grantUser != "" {
		c.add(e.normaliseUsername(a.grantUser, in.Memory), false)
	}
	return c.result()
}

// bodyUsername adds the first configured field a body has with a value
// that is not blank, in any case of its name. Spellings that disagree,
// blank or not, make the request ambiguous. A lowercased username is
// kept in mem.
func (e *Extractor) bodyUsername(c *candidates, body fields, mem *Memory) {
	if body.len() == 0 {
		return
	}
	for _, name := range e.bodyFields {
		var val string
		seen, blank, conflict := false, false, false
		for k, v := range body.all() {
			if !strings.EqualFold(k, name) {
				continue
			}
			if v.conflict {
				conflict = true
				continue
			}
			if !v.scalar {
				continue
			}
			switch n := e.normaliseUsername(v.val, mem); {
			case n == "":
				blank = true
			case !seen:
				val, seen = n, true
			case n != val:
				conflict = true
			}
		}
		if conflict || seen && blank {
			c.add("", true)
			return
		}
		if seen {
			c.add(val, false)
			return
		}
	}
}

// candidates collects the usernames a request names.
type candidates struct {
	value     string
	ambiguous bool
}

func (c *candidates) add(u string, conflict bool) {
	switch {
	case conflict:
		c.ambiguous = true
	case u == "":
	case c.value == "":
		c.value = u
	case c.value != u:
		c.ambiguous = true
	}
}

// result is the username, or none when the request named several.
func (c *candidates) result() (string, bool) {
	if c.ambiguous {
		return "", true
	}
	return c.value, false
}

// normaliseUsername trims and, when configured, lowercases email-looking
// usernames (the domain part is case-insensitive and users mix case). Other
// usernames keep their case: systems differ on whether it matters. A
// lowercased copy is kept in mem.
func (e *Extractor) normaliseUsername(s string, mem *Memory) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxUsername {
		return ""
	}
	if e.lowercase && looksLikeEmail(s) {
		s = mem.lower(s)
	}
	return s
}

func looksLikeEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t")
}

// usernameValue is the exported auth.username for privacy hash or plain,
// and the username's in-agent aggregation key (never 0). One HMAC gives
// both, in every mode: the exported hash is its first 16 bytes, the key
// the next 8, which never leave the agent.
func (e *Extractor) usernameValue(u string, mem *Memory) (string, uint64) {
	var sum [sha256.Size]byte
	e.mac(&sum, u)
	key := binary.BigEndian.Uint64(sum[16:24])
	if key == 0 {
		key = 1
	}
	switch e.privacy {
	case config.PrivacyPlain:
		return clean(u, MaxValueLen), key
	case config.PrivacyHash:
		var out [len(HashPrefix) + 32]byte
		copy(out[:], HashPrefix)
		hex.Encode(out[len(HashPrefix):], sum[:16])
		return mem.string(out[:]), key
	}
	return "", key
}

// mac computes HMAC-SHA256(key, u) into sum with a pooled keyed hash:
// building one costs two SHA-256 blocks, per login otherwise.
func (e *Extractor) mac(sum *[sha256.Size]byte, u string) {
	m, _ := e.macs.Get().(*keyedMAC)
	if m == nil {
		m = &keyedMAC{h: hmac.New(sha256.New, e.key)}
	}
	m.h.Reset()
	// Through a reused buffer: io.WriteString would copy each string to
	// the heap, the hash being an interface.
	m.buf = append(m.buf[:0], u...)
	m.h.Write(m.buf)
	// Into the pooled array: a caller's array handed to the interface
	// method would escape to the heap.
	copy(sum[:], m.h.Sum(m.sum[:0]))
	if cap(m.buf) > 4096 {
		m.buf = nil
	}
	e.macs.Put(m)
}

// keyedMAC is a pooled HMAC with its input buffer.
type keyedMAC struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

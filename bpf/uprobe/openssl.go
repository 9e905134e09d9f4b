package uprobe

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNoTLS is returned for a file that has no TLS functions to probe.
var ErrNoTLS = errors.New("no TLS functions")

// ErrUnsupportedTLS is wrapped by the error for a file that exports
// SSL_read/SSL_write but is not an OpenSSL authprobe supports.
var ErrUnsupportedTLS = errors.New("unsupported TLS library")

// Flavor is which library provides the SSL_* functions.
type Flavor string

const (
	FlavorOpenSSL   Flavor = "openssl"
	FlavorBoringSSL Flavor = "boringssl"
	FlavorLibreSSL  Flavor = "libressl"
	FlavorGnuTLS    Flavor = "gnutls-openssl" // GnuTLS's OpenSSL compatibility layer
	FlavorUnknown   Flavor = "unknown"
)

// The functions the OpenSSL probes attach to. SSL_read and SSL_write are
// required; the others are attached when present (the _ex variants exist
// from 1.1.1 on).
var (
	sslRequired = []string{"SSL_read", "SSL_write"}
	sslOptional = []string{"SSL_read_ex", "SSL_write_ex", "SSL_free", "SSL_shutdown", "SSL_do_handshake", "SSL_set_fd"}
)

// OpenSSLTarget is a file whose SSL_* functions the probes attach to: a
// shared libssl or an executable with OpenSSL linked in (Node.js).
type OpenSSLTarget struct {
	Flavor Flavor
	// Version is "3.0.19" when the version text was found (in the file, or
	// for a shared libssl in the libcrypto beside it), else the API level
	// the symbol versions give ("3", "1.1.1").
	Version string
	// Executable: SSL_* are defined in an executable, not a libssl.
	Executable bool
	// Funcs maps each function present to its file offset
	// (link.UprobeOptions.Address).
	Funcs map[string]uint64
}

// versionText matches OpenSSL's OPENSSL_VERSION_TEXT ("OpenSSL 3.0.19 27
// Jan 2026", "OpenSSL 1.1.1w  11 Sep 2023", "OpenSSL 3.0.13+quic 30 Jan
// 2024"), not prose that names a version ("OpenSSL 3.0 legacy").
var (
	opensslText  = regexp.MustCompile(`OpenSSL ([0-9]+\.[0-9]+\.[0-9]+[a-z]?)(\+[a-z]+)? +[0-9]{1,2} [A-Z][a-z]{2} [0-9]{4}`)
	libresslText = regexp.MustCompile(`LibreSSL [0-9]+\.[0-9]+\.[0-9]+`)
)

// ResolveOpenSSL analyses a file exporting SSL_* functions. For a shared
// libssl the version text is looked up in the libcrypto of the same
// release in the same directory.
func ResolveOpenSSL(path string) (*OpenSSLTarget, error) {
	ef, err := openELF(path)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	return resolveOpenSSL(ef, siblingCrypto(path))
}

// siblingCrypto names the libcrypto beside a libssl ("libssl.so.3" →
// "libcrypto.so.3"), or "" for anything else.
func siblingCrypto(path string) string {
	dir, base := filepath.Split(path)
	if rest, ok := strings.CutPrefix(base, "libssl"); ok && strings.HasPrefix(rest, ".so") {
		return filepath.Join(dir, "libcrypto"+rest)
	}
	return ""
}

func resolveOpenSSL(ef *elfFile, cryptoPath string) (*OpenSSLTarget, error) {
	_, dyn, err := ef.symbols()
	if err != nil {
		return nil, err
	}
	t := &OpenSSLTarget{Funcs: map[string]uint64{}, Executable: ef.elf.Type == elf.ET_EXEC || isPIEExecutable(ef)}
	wanted := map[string]bool{}
	for _, n := range append(append([]string{}, sslRequired...), sslOptional...) {
		wanted[n] = true
	}
	var apiLevel string // from symbol versions
	exports := map[string]bool{}
	for _, s := range dyn {
		if s.Section == elf.SHN_UNDEF {
			continue
		}
		exports[s.Name] = true
		if !wanted[s.Name] || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		off, err := ef.fileOffset(s.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		t.Funcs[s.Name] = off
		if l := symverLevel(s.Version); l > apiLevel {
			apiLevel = l
		}
	}
	for _, n := range sslRequired {
		if _, ok := t.Funcs[n]; !ok {
			return nil, fmt.Errorf("%w: %s not exported", ErrNoTLS, n)
		}
	}

	t.Flavor, t.Version, err = sslFlavor(ef, exports, cryptoPath)
	if err != nil {
		return nil, err
	}
	if t.Version == "" {
		t.Version = apiLevel
	}
	if t.Flavor == FlavorOpenSSL && t.Version == "" {
		t.Version = apiFromExports(exports)
	}
	switch {
	case t.Flavor != FlavorOpenSSL:
		return t, fmt.Errorf("%w: %s", ErrUnsupportedTLS, t.Flavor)
	case strings.HasPrefix(t.Version, "3"), strings.HasPrefix(t.Version, "1.1"):
		return t, nil
	case t.Version == "":
		return t, fmt.Errorf("%w: OpenSSL of unknown version", ErrUnsupportedTLS)
	}
	return t, fmt.Errorf("%w: OpenSSL %s (1.1 and 3 are supported)", ErrUnsupportedTLS, t.Version)
}

// symverLevel maps OpenSSL's symbol version tags to an API level:
// OPENSSL_3.0.0 → "3", OPENSSL_1_1_1 → "1.1.1".
func symverLevel(v string) string {
	rest, ok := strings.CutPrefix(v, "OPENSSL_")
	if !ok {
		return ""
	}
	if strings.HasPrefix(rest, "3") {
		return "3"
	}
	return strings.ReplaceAll(rest, "_", ".")
}

// apiFromExports dates an OpenSSL without symbol versions (linked into an
// executable) by functions that first appeared in a release.
func apiFromExports(exports map[string]bool) string {
	switch {
	case exports["SSL_get1_peer_certificate"]:
		return "3"
	case exports["SSL_read_ex"]:
		return "1.1.1"
	case exports["OPENSSL_init_ssl"]:
		return "1.1.0"
	case exports["SSL_library_init"]:
		return "1.0"
	}
	return ""
}

// sslFlavor tells OpenSSL from the libraries that export look-alike
// SSL_* functions, and finds the version text.
func sslFlavor(ef *elfFile, exports map[string]bool, cryptoPath string) (Flavor, string, error) {
	for name := range exports {
		if strings.HasPrefix(name, "gnutls_") {
			return FlavorGnuTLS, "", nil
		}
	}
	if libs, err := ef.elf.ImportedLibraries(); err == nil {
		for _, l := range libs {
			if strings.HasPrefix(l, "libgnutls") {
				return FlavorGnuTLS, "", nil
			}
		}
	}
	// BoringSSL-only API, exported by its shared libssl and by binaries
	// that re-export it.
	if exports["SSL_CTX_set_custom_verify"] || exports["CRYPTO_BUFFER_new"] || exports["SSL_set_custom_verify"] {
		return FlavorBoringSSL, "", nil
	}
	text, err := ef.scanVersionText()
	if err != nil {
		return "", "", err
	}
	if text.flavor == "" && cryptoPath != "" {
		if c, err := openELF(cryptoPath); err == nil {
			text, err = c.scanVersionText()
			c.Close()
			if err != nil {
				return "", "", err
			}
		}
	}
	if text.flavor == "" {
		return FlavorOpenSSL, "", nil
	}
	return text.flavor, text.version, nil
}

type versionText struct {
	flavor  Flavor
	version string
}

// scanVersionText looks for a library version text in .rodata, read in
// chunks (Node's is tens of MiB).
func (e *elfFile) scanVersionText() (vt versionText, err error) {
	defer recoverTo(&err, "scan .rodata")
	s := e.elf.Section(".rodata")
	if s == nil || s.Type == elf.SHT_NOBITS {
		return vt, nil
	}
	const chunk, overlap = 1 << 20, 64
	r := s.Open()
	buf := make([]byte, chunk+overlap)
	keep := 0
	for read := uint64(0); read < s.Size && read < maxSectionRead; {
		n, err := io.ReadFull(r, buf[keep:])
		read += uint64(n)
		b := buf[:keep+n]
		if bytes.Contains(b, []byte("BoringSSL")) {
			return versionText{flavor: FlavorBoringSSL}, nil
		}
		if m := libresslText.Find(b); m != nil {
			return versionText{flavor: FlavorLibreSSL, version: string(m[len("LibreSSL "):])}, nil
		}
		if m := opensslText.FindSubmatch(b); m != nil {
			return versionText{flavor: FlavorOpenSSL, version: string(m[1])}, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return vt, nil
			}
			return vt, fmt.Errorf("read .rodata: %w", err)
		}
		keep = copy(buf, b[len(b)-overlap:])
	}
	return vt, nil
}

// isPIEExecutable tells a position-independent executable from a shared
// library: both are ET_DYN, only the executable asks for an interpreter.
func isPIEExecutable(ef *elfFile) bool {
	if ef.elf.Type != elf.ET_DYN {
		return false
	}
	for _, p := range ef.elf.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

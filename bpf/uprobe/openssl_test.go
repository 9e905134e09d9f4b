package uprobe

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

const debianLibDir = "/usr/lib/x86_64-linux-gnu"

// libssl11Dir is where testdata/get-libssl1.1.sh puts Debian 11's
// libssl1.1 (Debian 12 has no OpenSSL 1.1).
func libssl11Dir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("AUTHPROBE_LIBSSL11_DIR")
	if dir == "" {
		dir = "/var/cache/authprobe/libssl1.1"
	}
	dir = filepath.Join(dir, "root", debianLibDir[1:])
	if _, err := os.Stat(filepath.Join(dir, "libssl.so.1.1")); err != nil {
		tb.Skipf("no libssl.so.1.1 in %s: run bpf/uprobe/testdata/get-libssl1.1.sh (Debian 12 does not ship OpenSSL 1.1)", dir)
	}
	return dir
}

func mustFile(tb testing.TB, p string) string {
	tb.Helper()
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("%s not installed: %v", p, err)
	}
	return p
}

// mustOpenSSLVersion asks the library itself for its version, through
// the openssl command (shared libssl3) or node.
func mustCommandOutput(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		tb.Skipf("%s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

func TestResolveOpenSSL(t *testing.T) {
	all := append(append([]string{}, sslRequired...), sslOptional...)
	cases := []struct {
		name, path string
		version    func(t *testing.T) string
		exe        bool
		funcs      []string
	}{
		{"libssl3", mustFile(t, debianLibDir+"/libssl.so.3"), func(t *testing.T) string {
			// "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)"
			return strings.Fields(mustCommandOutput(t, "openssl", "version"))[1]
		}, false, all},
		{"node", mustFile(t, "/usr/bin/node"), func(t *testing.T) string {
			return mustCommandOutput(t, "/usr/bin/node", "-p", "process.versions.openssl")
		}, true, all},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveOpenSSL(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", tc.path, got)
			if want := tc.version(t); got.Flavor != FlavorOpenSSL || got.Version != want {
				t.Errorf("flavor %s version %q, want openssl %q", got.Flavor, got.Version, want)
			}
			if got.Executable != tc.exe {
				t.Errorf("executable = %v", got.Executable)
			}
			mustFuncOffsets(t, tc.path, got, tc.funcs)
		})
	}
	t.Run("libssl1.1", func(t *testing.T) {
		dir := libssl11Dir(t)
		got, err := ResolveOpenSSL(filepath.Join(dir, "libssl.so.1.1"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", got)
		if got.Flavor != FlavorOpenSSL || got.Version != "1.1.1w" {
			t.Errorf("flavor %s version %q, want openssl 1.1.1w", got.Flavor, got.Version)
		}
		mustFuncOffsets(t, filepath.Join(dir, "libssl.so.1.1"), got, all)
	})
}

// mustFuncOffsets checks that every function is found and that its file
// offset holds the function: it lies in .text and the bytes there decode
// (a valid instruction, the first of the function per the symbol).
func mustFuncOffsets(t *testing.T, path string, got *OpenSSLTarget, want []string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text := f.Section(".text")
	syms, _ := f.DynamicSymbols()
	value := map[string]uint64{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			value[s.Name] = s.Value
		}
	}
	for _, name := range want {
		off, ok := got.Funcs[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if off < text.Offset || off >= text.Offset+text.Size {
			t.Errorf("%s: offset %#x outside .text", name, off)
			continue
		}
		// The same bytes through the section's addresses.
		b := make([]byte, 16)
		if _, err := text.ReadAt(b, int64(value[name]-text.Addr)); err != nil {
			t.Fatal(err)
		}
		fb := make([]byte, 16)
		fh, _ := os.Open(path)
		fh.ReadAt(fb, int64(off))
		fh.Close()
		if string(b) != string(fb) {
			t.Errorf("%s: bytes at offset %#x differ from the symbol's", name, off)
		}
		if _, err := x86asm.Decode(fb, 64); err != nil {
			t.Errorf("%s: no instruction at %#x: %v", name, off, err)
		}
	}
}

// TestResolveOpenSSLLookAlikes: files that export SSL_read but are not
// OpenSSL, and files with no TLS at all.
func TestResolveOpenSSLLookAlikes(t *testing.T) {
	gnutls := mustFile(t, debianLibDir+"/libgnutls-openssl.so.27")
	got, err := ResolveOpenSSL(gnutls)
	if !errors.Is(err, ErrUnsupportedTLS) || got == nil || got.Flavor != FlavorGnuTLS {
		t.Errorf("gnutls-openssl: %+v, %v; want flavor gnutls-openssl and ErrUnsupportedTLS", got, err)
	}
	for _, p := range []string{debianLibDir + "/libc.so.6", debianLibDir + "/libcrypto.so.3", "/bin/true"} {
		if _, err := ResolveOpenSSL(mustFile(t, p)); !errors.Is(err, ErrNoTLS) {
			t.Errorf("%s: err = %v, want ErrNoTLS", p, err)
		}
	}
}

// mustStart starts a command that prints one line when ready and runs
// until killed; the process is killed and reaped at cleanup.
func mustStart(tb testing.TB, cmd *exec.Cmd) (*exec.Cmd, string) {
	tb.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			tb.Fatalf("%s exited before it was ready", cmd.Path)
		}
		return cmd, l
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s not ready after 30s", cmd.Path)
	}
	return nil, ""
}

// pythonSSL starts Debian's python3 with ssl imported; extra is run
// before it says it is ready.
func pythonSSL(tb testing.TB, extra string) *exec.Cmd {
	tb.Helper()
	py := mustFile(tb, "/usr/bin/python3")
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	cmd, _ := mustStart(tb, exec.CommandContext(ctx, py, "-c",
		"import ssl, sys, time\n"+extra+"\nprint('ready', flush=True)\ntime.sleep(600)"))
	return cmd
}

package uprobe

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	in := "00400000-00452000 r-xp 00000000 fd:01 1234                               /usr/bin/prog\n" +
		"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n" +
		"7f1000000000-7f1000100000 r-xp 00022000 08:11 99 /opt/my app/lib ssl.so (deleted)\n" +
		"7ffd000000-7ffd021000 rw-p 00000000 00:00 0                          [stack]\n"
	got, err := ParseMaps(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{Start: 0x400000, End: 0x452000, Perms: "r-xp", Dev: unix.Mkdev(0xfd, 1), Inode: 1234, Path: "/usr/bin/prog"},
		{Start: 0x7f0000000000, End: 0x7f0000021000, Perms: "rw-p"},
		{Start: 0x7f1000000000, End: 0x7f1000100000, Perms: "r-xp", Offset: 0x22000, Dev: unix.Mkdev(8, 0x11), Inode: 99, Path: "/opt/my app/lib ssl.so", Deleted: true},
		{Start: 0x7ffd000000, End: 0x7ffd021000, Perms: "rw-p", Path: "[stack]"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"zz-1 r-xp 0 0:0 0", "2-1 r-xp 0 0:0 0", "1-2 r-x 0 0:0 0", "1-2 r-xp 0 00 0"} {
		if _, err := ParseMaps(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func mustRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("reading other processes' map_files needs root")
	}
}

// statID is the identity a path resolves to.
func statID(tb testing.TB, p string) FileID {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		tb.Fatal(err)
	}
	return FileID{Dev: st.Dev, Inode: st.Ino}
}

// onlyTarget returns the one target of the process whose path ends in
// suffix.
func onlyTarget(tb testing.TB, targets []Target, suffix string) Target {
	tb.Helper()
	var found []Target
	for _, tg := range targets {
		if strings.HasSuffix(tg.File.Path, suffix) {
			found = append(found, tg)
		}
	}
	if len(found) != 1 {
		tb.Fatalf("%d targets ending in %s among %+v", len(found), suffix, targets)
	}
	return found[0]
}

// TestProcessPython finds the libssl of a running Python that imported
// ssl, through its maps, and shares one result between two processes.
func TestProcessPython(t *testing.T) {
	mustRoot(t)
	r := NewResolver(Config{})
	a, b := pythonSSL(t, ""), pythonSSL(t, "")
	ta, err := r.Process(a.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := r.Process(b.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := onlyTarget(t, ta, "/libssl.so.3"), onlyTarget(t, tb, "/libssl.so.3")
	if !sa.Probeable() || sa.OpenSSL == nil || sa.OpenSSL.Version != strings.Fields(mustCommandOutput(t, "openssl", "version"))[1] {
		t.Fatalf("python libssl: %+v (%v)", sa.OpenSSL, sa.Err)
	}
	real, err := filepath.EvalSymlinks(debianLibDir + "/libssl.so.3")
	if err != nil {
		t.Fatal(err)
	}
	if sa.File.ID != statID(t, real) || sa.File.ID != sb.File.ID {
		t.Errorf("ids %v %v, want %v", sa.File.ID, sb.File.ID, statID(t, real))
	}
	if !strings.HasPrefix(sa.File.OpenPath, "/proc/") || !strings.Contains(sa.File.OpenPath, "/root/") {
		t.Errorf("open path %s, want /proc/PID/root/...", sa.File.OpenPath)
	}
	if sa.OpenSSL != sb.OpenSSL {
		t.Error("the same library was analysed twice")
	}
	for _, tg := range ta {
		if tg.File.ID != sa.File.ID {
			t.Errorf("unexpected target %s (%v)", tg.File.Path, tg.Err)
		}
	}
}

// TestProcessPythonLibssl11 loads OpenSSL 1.1 into a Python (beside its
// own OpenSSL 3) from a file that is then deleted: the target is still
// found, through map_files.
func TestProcessPythonLibssl11(t *testing.T) {
	mustRoot(t)
	src := libssl11Dir(t)
	dir := t.TempDir()
	for _, n := range []string{"libcrypto.so.1.1", "libssl.so.1.1"} {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	py := pythonSSL(t, "import ctypes\nctypes.CDLL('"+dir+"/libcrypto.so.1.1')\nctypes.CDLL('"+dir+"/libssl.so.1.1')")
	if err := os.Remove(filepath.Join(dir, "libssl.so.1.1")); err != nil {
		t.Fatal(err)
	}
	targets, err := NewResolver(Config{}).Process(py.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	s11 := onlyTarget(t, targets, "/libssl.so.1.1")
	s3 := onlyTarget(t, targets, "/libssl.so.3")
	if !s11.Probeable() || s11.OpenSSL.Version != "1.1.1w" || !s3.Probeable() {
		t.Fatalf("1.1: %+v (%v); 3: %v", s11.OpenSSL, s11.Err, s3.Err)
	}
	if !strings.Contains(s11.File.OpenPath, "/map_files/") {
		t.Errorf("deleted file opened at %s, want map_files", s11.File.OpenPath)
	}
}

// TestProcessMountNamespace runs Python in its own mount namespace where
// libssl.so.3 is a different file (a copy bind-mounted over it), as in a
// container: the target must be the process's file, reached through
// /proc/PID/root, not the agent's file of the same name.
func TestProcessMountNamespace(t *testing.T) {
	mustRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed")
	}
	real, err := filepath.EvalSymlinks(debianLibDir + "/libssl.so.3")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "libssl.so.3")
	if err := os.WriteFile(cp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd, _ := mustStart(t, exec.CommandContext(ctx, unshare, "--mount", "--propagation", "private", "sh", "-c",
		"mount --bind "+cp+" "+real+" && exec /usr/bin/python3 -c 'import ssl, time; print(\"ready\", flush=True); time.sleep(600)'"))
	targets, err := NewResolver(Config{}).Process(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	s := onlyTarget(t, targets, "/libssl.so.3")
	if s.File.ID != statID(t, cp) || s.File.ID == statID(t, real) {
		t.Errorf("target %v, want the copy %v (host file %v)", s.File.ID, statID(t, cp), statID(t, real))
	}
	if !s.Probeable() || !strings.Contains(s.File.OpenPath, "/root/") {
		t.Errorf("target %+v (%v)", s.File, s.Err)
	}
}

// TestProcessNodeAndGo finds OpenSSL inside the node executable and
// crypto/tls in a running Go server.
func TestProcessNodeAndGo(t *testing.T) {
	mustRoot(t)
	r := NewResolver(Config{})
	node, _ := mustStart(t, exec.Command(mustFile(t, "/usr/bin/node"), "-e", "require('tls'); console.log('ready'); setInterval(() => {}, 1000)"))
	targets, err := r.Process(node.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	n := onlyTarget(t, targets, "/node")
	if !n.Probeable() || n.OpenSSL == nil || !n.OpenSSL.Executable || n.File.ID != statID(t, "/usr/bin/node") {
		t.Errorf("node: %+v %+v (%v)", n.File, n.OpenSSL, n.Err)
	}

	for _, b := range []goBuild{{Toolchain: "local", Arch: "amd64"}, {Toolchain: "go1.27.3", Arch: "amd64", Stripped: true}} {
		srv, port := mustStart(t, exec.Command(mustGoBinary(t, b)))
		targets, err := r.Process(srv.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(targets) != 1 || targets[0].Go == nil || !targets[0].Probeable() {
			t.Fatalf("%s (port %s): targets %+v", b, port, targets)
		}
		if g := targets[0].Go; len(g.Read.Returns) == 0 || g.Offsets.TCPConnItab == 0 {
			t.Errorf("%s: %+v", b, g)
		}
	}
}

func TestProcessGone(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewResolver(Config{}).Process(cmd.Process.Pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exited process: %v, want ErrNotExist", err)
	}
}

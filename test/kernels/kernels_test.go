package kernels

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/test/kernels/guest"
)

// TestCPIO: the archive is one that GNU cpio (the reference reader of
// newc) lists and extracts with the same names, modes and contents.
func TestCPIO(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed (the reference reader this test compares with)")
	}
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.File("/authprobe/job.json", 0o644, []byte(`{"steps":[]}`))
	c.File("/authprobe/bin/odd", 0o755, []byte("abc")) // length not a multiple of 4
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.Dir("/proc")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idv", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for _, name := range []string{"authprobe", "authprobe/bin", "authprobe/job.json", "authprobe/bin/odd", "dev/console", "proc"} {
		if !strings.Contains(string(out), name) {
			t.Errorf("cpio did not list %s:\n%s", name, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "authprobe/bin/odd"))
	if err != nil || string(data) != "abc" {
		t.Errorf("odd: %q, %v", data, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "authprobe/bin/odd"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("odd mode: %v, %v", fi.Mode(), err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "authprobe/job.json")); string(data) != `{"steps":[]}` {
		t.Errorf("job.json: %q", data)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/net/9p/9pnet_virtio.ko.xz": "9pnet_virtio",
		"9pnet-virtio":                     "9pnet_virtio",
		"overlay.ko":                       "overlay",
		"virtio_pci":                       "virtio_pci",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResultParse: steps, exit codes, errors, a step the guest died in,
// and markers glued to the end of a line a step left unterminated.
func TestResultParse(t *testing.T) {
	m := func(mk guest.Marker) string { return strings.ReplaceAll(mk.Line(), "\n", "\r\n") }
	console := "[    0.000000] Linux version 6.1.0\r\n" +
		m(guest.Marker{Event: guest.EventInit, Uptime: -1}) +
		m(guest.Marker{Event: guest.EventReady, Uptime: 3.5}) +
		m(guest.Marker{Event: guest.EventStepStart, Step: "a", Uptime: 3.5}) +
		"--- PASS: TestX (0.01s)\r\nno newline at the end" +
		m(guest.Marker{Event: guest.EventStepEnd, Step: "a", Exit: 0, Uptime: 5}) +
		m(guest.Marker{Event: guest.EventStepStart, Step: "b", Uptime: 5}) +
		m(guest.Marker{Event: guest.EventStepEnd, Step: "b", Exit: -1, Error: "timeout after 1s", Uptime: 6}) +
		m(guest.Marker{Event: guest.EventStepStart, Step: "c", Uptime: 6}) +
		"[    7.000000] Kernel panic\r\n"
	r := &Result{Console: console}
	r.parse()
	if len(r.Steps) != 3 {
		t.Fatalf("steps: %+v", r.Steps)
	}
	a, b, c := r.Steps[0], r.Steps[1], r.Steps[2]
	if !a.OK() || a.Seconds != 1.5 || !strings.Contains(a.Output, "--- PASS: TestX") || !strings.Contains(a.Output, "no newline at the end") {
		t.Errorf("a: %+v", a)
	}
	if b.OK() || b.Error != "timeout after 1s" {
		t.Errorf("b: %+v", b)
	}
	if c.OK() || !strings.Contains(c.Output, "Kernel panic") {
		t.Errorf("c: %+v", c)
	}
	if r.Done || r.Err() == nil {
		t.Errorf("a guest that died mid-step is not done: %+v", r.Err())
	}
	if v := testVerdicts(a.Output); !strings.Contains(v, "--- PASS: TestX") {
		t.Errorf("verdicts: %q", v)
	}
}

func TestSelect(t *testing.T) {
	m := DefaultMatrix()
	all, err := Select(m, "all")
	if err != nil || len(all) != len(m) {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	two, err := Select(m, "6.1, arm64-6.12")
	if err != nil || len(two) != 2 || two[0].Name != "6.1" || two[1].Arch != "arm64" {
		t.Fatalf("two: %+v, %v", two, err)
	}
	if _, err := Select(m, "5.15"); err == nil {
		t.Error("an unknown kernel must be an error")
	}
}

// TestExtractBTF: the kernel's BTF is found inside image bytes around it,
// past a decoy that has the magic but no valid header.
func TestExtractBTF(t *testing.T) {
	b, err := btf.NewBuilder(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	task := &btf.Struct{Name: "task_struct", Size: 4, Members: []btf.Member{{Name: "pid", Type: &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}}}
	if _, err := b.Add(task); err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, &btf.MarshalOptions{Order: binary.LittleEndian})
	if err != nil {
		t.Fatal(err)
	}
	decoy := []byte{0x9f, 0xeb, 0x01, 0x00, 99, 0, 0, 0}
	image := append(append(append(bytes.Repeat([]byte{0xaa}, 1000), decoy...), raw...), bytes.Repeat([]byte{0x55}, 1000)...)
	got, err := ExtractBTF(image)
	if err != nil {
		t.Fatalf("extract: %v (blob %d bytes)", err, len(raw))
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("extracted %d bytes, want the %d of the blob", len(got), len(raw))
	}
	if _, err := ExtractBTF(bytes.Repeat([]byte{0xaa}, 4096)); err == nil {
		t.Error("no BTF must be an error")
	}
}

func TestGuestPath(t *testing.T) {
	if got := guestPath("/usr/local/go/bin:/usr/bin"); got != "/usr/local/go/bin:/usr/bin" {
		t.Errorf("a PATH without shims changes: %q", got)
	}
}

// TestMatrixBackends: every capture backend runs its bpf suite on a
// kernel where it is the natural choice, and each kernel's check and
// bpf suites say which backend the agent must pick there; a forced
// backend's suites name it.
func TestMatrixBackends(t *testing.T) {
	natural := map[string]string{}
	for _, k := range DefaultMatrix() {
		for _, s := range k.Suites {
			for _, kv := range s.Env {
				if b, ok := strings.CutPrefix(kv, "AUTHPROBE_WANT_BACKEND="); ok && s.Name == "bpf" {
					natural[b] = k.Name
				}
			}
			if s.Name == "check" && len(s.Want) == 0 {
				t.Errorf("%s: check does not say which backend it must pick", k.Name)
			}
		}
	}
	for _, b := range []string{"sock", "fentry"} {
		if natural[b] == "" {
			t.Errorf("backend %s is the natural choice of no kernel of the matrix", b)
		}
	}
	// The last resort is natural nowhere: it is forced on one kernel.
	forced := false
	for _, k := range DefaultMatrix() {
		for _, s := range k.Suites {
			if strings.Join(s.AgentArgs, " ") == "--capture-backend syscalls" {
				forced = true
			}
		}
	}
	if !forced {
		t.Error("no kernel of the matrix forces the syscalls backend")
	}
	if got := unmatched([]string{`^capture backend: syscalls \(`}, "kernel:\n  x\ncapture backend: syscalls (the cheapest that works here)\r\n"); len(got) != 0 {
		t.Errorf("unmatched: %v", got)
	}
	if got := unmatched([]string{`^capture backend: sock \(`}, "capture backend: syscalls (x)\n"); len(got) != 1 {
		t.Errorf("unmatched: %v", got)
	}
}

func TestFailureDigest(t *testing.T) {
	out := "=== RUN   TestEvasionMatrix/java\n" +
		"    evasion_test.go:497: java: server up in 3s, 31 spans (32 expected)\n" +
		"    evasion_test.go:560: java, variant \"pipelined\": answered 401, but no span\r\n" +
		"    --- FAIL: TestEvasionMatrix/java (63.64s)\n" +
		"--- FAIL: TestEvasionMatrix (0.04s)\n" +
		"FAIL\n"
	got := failureDigest("6.1/e2e-evasion", out, 3)
	require.Equal(t, []string{
		"6.1/e2e-evasion: --- FAIL: TestEvasionMatrix/java (63.64s)",
		"6.1/e2e-evasion: --- FAIL: TestEvasionMatrix (0.04s)",
		"6.1/e2e-evasion: evasion_test.go:497: java: server up in 3s, 31 spans (32 expected)",
		"6.1/e2e-evasion: (more in the suite's output above)",
	}, got)
	require.Equal(t, []string{"6.12/bpf: no FAIL line in its output; its tail is above"}, failureDigest("6.12/bpf", "ok\n", 3))
}

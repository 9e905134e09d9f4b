package targets

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/k8smeta"
)

func TestParseTCPLine(t *testing.T) {
	tests := []struct {
		line     string
		port     uint16
		ino      uint64
		listener bool
	}{
		{"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0", 8080, 12345, true},
		{"   1: 0100007F:1F90 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0", 0, 0, false},
		{"garbage", 0, 0, false},
		{"   0: 0100007F:ZZZZ 00000000:0000 0A 0 0 0 0 0 1", 0, 0, false},
	}
	for _, tt := range tests {
		port, ino, ok := parseTCPLine(tt.line)
		require.Equal(t, tt.listener, ok, tt.line)
		require.Equal(t, tt.port, port)
		require.Equal(t, tt.ino, ino)
	}
}

func TestMatch(t *testing.T) {
	self := uint32(os.Getpid())
	exe, err := os.Executable()
	require.NoError(t, err)

	m := NewMatcher([]config.Target{
		{Port: 1},
		{Exe: "/nonexistent/*"},
		{Exe: exe, ServiceName: "tests"},
	}, "", "/proc")
	p, ok := m.Match(self, "", nil)
	require.True(t, ok)
	require.Equal(t, "tests", p.ServiceName)
	require.Equal(t, exe, p.Exe)

	m = NewMatcher([]config.Target{{PID: int(self)}}, "svc", "/proc")
	p, ok = m.Match(self, "", nil)
	require.True(t, ok)
	require.True(t, p.Pinned)
	require.Equal(t, "svc", p.ServiceName)

	_, ok = m.Match(self+1, "", nil)
	require.False(t, ok)
}

func TestListeningPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	m := NewMatcher([]config.Target{{Port: int(port)}}, "", "/proc")
	require.True(t, m.HasPortTargets())
	self := uint32(os.Getpid())
	ports := m.ListeningPorts([]uint32{self})
	require.True(t, ports[self][port], "own listener on %d found: %v", port, ports)
	_, ok := m.Match(self, "", ports[self])
	require.True(t, ok)
}

// podsOf answers fixed identities: the matcher's combination logic; the
// real k8smeta against a real API server is tested in test/k8s.
type podsOf map[uint32]k8smeta.Identity

func (p podsOf) Process(pid uint32) k8smeta.Identity { return p[pid] }
func (p podsOf) Changes() <-chan struct{}            { return nil }

func TestMatchKubernetes(t *testing.T) {
	self := uint32(os.Getpid())
	exe, err := os.Executable()
	require.NoError(t, err)
	login := k8smeta.Identity{
		Container: k8smeta.Container{PodUID: "u1", ContainerID: "c1"}, Known: true,
		Namespace: "shop", PodName: "login-abc", Labels: map[string]string{"app": "login"},
		ContainerName: "server", ReplicaSet: "login-7d", Deployment: "login", ServiceName: "login",
	}
	cgroupOnly := k8smeta.Identity{Container: login.Container}
	tests := []struct {
		name    string
		targets []config.Target
		id      k8smeta.Identity
		ports   map[uint16]bool
		match   bool
		service string
		target  int
	}{
		{"namespace", []config.Target{{K8sNamespace: "shop"}}, login, nil, true, "login", 0},
		{"other namespace", []config.Target{{K8sNamespace: "bank"}}, login, nil, false, "", 0},
		{"labels and workload", []config.Target{{K8sPodLabels: map[string]string{"app": "login"}, K8sWorkload: config.K8sWorkload{Kind: "Deployment", Name: "login"}}}, login, nil, true, "login", 0},
		{"container", []config.Target{{K8sContainer: "sidecar"}, {K8sContainer: "server", ServiceName: "override"}}, login, nil, true, "override", 1},
		{"and a port it listens on", []config.Target{{K8sNamespace: "shop", Port: 8080}}, login, map[uint16]bool{8080: true}, true, "login", 0},
		{"and a port it does not", []config.Target{{K8sNamespace: "shop", Port: 8080}}, login, map[uint16]bool{9090: true}, false, "", 0},
		{"and its exe", []config.Target{{K8sNamespace: "shop", Exe: exe}}, login, nil, true, "login", 0},
		{"and another exe", []config.Target{{K8sNamespace: "shop", Exe: "/nonexistent"}}, login, nil, false, "", 0},
		{"pod unknown (API away): no selector match", []config.Target{{K8sNamespace: "shop"}}, cgroupOnly, nil, false, "", 0},
		{"pod unknown: exe target, exe name", []config.Target{{Exe: exe}}, cgroupOnly, nil, true, "", 0},
		{"exe target in a pod: the pod's name", []config.Target{{Exe: exe}}, login, nil, true, "login", 0},
		{"not in a pod", []config.Target{{K8sNamespace: "shop"}, {Exe: exe}}, k8smeta.Identity{}, nil, true, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMatcher(tt.targets, "", "/proc").WithPods(podsOf{self: tt.id})
			p, ok := m.Match(self, "", tt.ports)
			require.Equal(t, tt.match, ok)
			if !ok {
				return
			}
			want := tt.service
			if want == "" {
				want = filepath.Base(exe)
			}
			require.Equal(t, want, p.ServiceName)
			require.Equal(t, tt.target, p.Target)
			require.Equal(t, tt.id.Rev(), p.Meta)
		})
	}

	t.Run("refresh after the pod became known", func(t *testing.T) {
		pods := podsOf{self: cgroupOnly}
		m := NewMatcher([]config.Target{{Exe: exe}}, "default-svc", "/proc").WithPods(pods)
		p, ok := m.Match(self, "", nil)
		require.True(t, ok)
		require.Equal(t, "default-svc", p.ServiceName)
		pods[self] = login
		q := m.Refresh(p)
		require.Equal(t, "login", q.ServiceName)
		require.NotEqual(t, p.Meta, q.Meta, "a new identity is a new revision")
	})
	t.Run("no pods: meta stays 0", func(t *testing.T) {
		m := NewMatcher([]config.Target{{Exe: exe}}, "", "/proc")
		p, ok := m.Match(self, "", nil)
		require.True(t, ok)
		require.Zero(t, p.Meta)
		require.Nil(t, m.PodChanges())
		require.False(t, m.HasK8sTargets())
	})
}

// startAs runs a copy of sleep (or, with link, a symlink to it) at path,
// as an interpreter installed there would run, and returns its pid.
func startAs(t *testing.T, path string, link bool) uint32 {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	if link {
		require.NoError(t, os.Symlink(sleep, path))
	} else {
		data, err := os.ReadFile(sleep)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, data, 0o755))
	}
	cmd := exec.Command(path, "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// /proc/pid/exe names the new program once exec is done.
	require.Eventually(t, func() bool {
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "exe"))
		return err == nil && !strings.HasSuffix(exe, ".test")
	}, 5*time.Second, 10*time.Millisecond)
	return uint32(cmd.Process.Pid)
}

// TestMatchInstalledInterpreters: exe targets by base name and with "**"
// find interpreters where images, pyenv and virtualenvs put them.
func TestMatchInstalledInterpreters(t *testing.T) {
	root := t.TempDir()
	pyenv := startAs(t, filepath.Join(root, ".pyenv/versions/3.11.7/bin/python3.11"), false)
	image := startAs(t, filepath.Join(root, "usr/local/bin/python3"), false)
	venvPath := filepath.Join(root, "app/.venv/bin/python")
	venv := startAs(t, venvPath, true) // bin/python links to the interpreter

	tests := []struct {
		name    string
		pattern string
		pid     uint32
		execArg string // the path exec was given, "" when found by a scan
		want    bool
	}{
		{"pyenv by base name", "python3*", pyenv, "", true},
		{"image by base name", "python3*", image, "", true},
		{"pyenv by **", root + "/**/versions/*/bin/python3*", pyenv, "", true},
		{"image by **", root + "/**/bin/python3*", image, "", true},
		{"exact path elsewhere", "/usr/bin/python3*", image, "", false},
		{"virtualenv link at exec", "python*", venv, venvPath, true},
		{"virtualenv link by ** at exec", root + "/**/.venv/bin/python", venv, venvPath, true},
		// Found by a scan only the resolved executable is known: here the
		// link points at sleep; a real virtualenv points at python3.x,
		// which the base name matches.
		{"virtualenv link by scan", "python*", venv, "", false},
		{"other program", "node", pyenv, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMatcher([]config.Target{{Exe: tt.pattern}}, "", "/proc")
			p, ok := m.Match(tt.pid, tt.execArg, nil)
			require.Equal(t, tt.want, ok, "pattern %q pid %d exe %q", tt.pattern, tt.pid, m.Exe(tt.pid))
			if ok {
				require.Equal(t, filepath.Base(p.Exe), p.ServiceName)
			}
		})
	}
}

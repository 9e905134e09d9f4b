package targets

import (
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/config"
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

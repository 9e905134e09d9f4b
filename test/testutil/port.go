package testutil

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut are the ports FreePort gave this test binary. The kernel may
// give a just-closed ephemeral port again to the next bind to port 0, so
// two "free" ports asked for in a row (a collector's receiver and its
// health check) could be the same one; FreePort never repeats itself.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago and that
// no earlier FreePort call of this process returned.
func FreePort(tb testing.TB) int {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	tb.Fatal("free port: the kernel kept giving ports already handed out")
	return 0
}

// FreeAddr is FreePort as a host:port on 127.0.0.1.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

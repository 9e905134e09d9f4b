package bpf

import (
	"context"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
)

func TestBackendAuto(t *testing.T) {
	skipUnlessRoot(t)
	p, err := Load(Config{Routes: testRoutes})
	SkipIfNotSupported(t, err)
	require.NoError(t, err)
	defer p.Close()
	// This kernel (6.3+) has the socket tracepoints: the cheapest wins.
	require.Equal(t, BackendInfo{Name: BackendSock}, p.Backend())

	for _, c := range CheckBackends(Config{Routes: testRoutes}) {
		require.NoError(t, c.Err, c.Backend)
	}
	_, err = Load(Config{Routes: testRoutes, Backend: "kprobes"})
	require.ErrorContains(t, err, `capture backend "kprobes"`)
}

// A backend that does not attach is refused with its reason, and the next
// one is used; nothing of the refused one stays attached.
func TestBackendFallback(t *testing.T) {
	skipUnlessRoot(t)
	broken := backend{name: "broken", spec: func() (*ebpf.CollectionSpec, error) {
		spec, err := loadCaptureSock()
		if err != nil {
			return nil, err
		}
		spec.Programs["authprobe_sock_send_length"].SectionName = "raw_tp/authprobe_no_such_tracepoint"
		return spec, nil
	}}
	cfg := Config{Routes: testRoutes, WakeupBytes: 1}
	require.NoError(t, cfg.defaults())
	keys, err := routeKeys(cfg.Routes)
	require.NoError(t, err)
	p, err := loadWith(cfg, keys, []backend{broken, {BackendSyscalls, loadCaptureSyscalls}})
	require.NoError(t, err)
	defer p.Close()
	info := p.Backend()
	require.Equal(t, BackendSyscalls, info.Name)
	require.Len(t, info.Refused, 1)
	require.Equal(t, "broken", info.Refused[0].Backend)
	require.ErrorContains(t, info.Refused[0].Err, "authprobe_no_such_tracepoint")
	// The lifecycle object and one capture object, with a link per
	// program, and the goroutine probes (attached per process, so not
	// yet): nothing of the broken one is left.
	require.Len(t, p.colls, 3)
	programs := 0
	for _, c := range p.colls {
		programs += len(c.Programs)
	}
	require.Len(t, p.links, programs-2)
	require.Equal(t, 4+8+2, programs)
	require.Zero(t, p.SpawnProbes())

	// And it captures.
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	c := dial(t, port)
	fd := h.int("accept", lfd)
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	require.Equal(t, loginReq, string(rec.waitEvents(t, 1, fromClient(c))[0].Data))

	// Forcing the broken one alone fails with its reason.
	_, err = loadWith(cfg, keys, []backend{broken})
	require.ErrorContains(t, err, "capture backend broken")
}

func TestConfigErrors(t *testing.T) {
	_, err := Load(Config{})
	require.ErrorContains(t, err, "no route prefixes")
	_, err = Load(Config{Routes: testRoutes, RingBufferBytes: 1 << 16, WakeupBytes: 1 << 15})
	require.ErrorContains(t, err, "wakeup bytes")
}

// Run returns promptly when its context is cancelled, whenever that
// happens, also while events flow.
func TestRunStops(t *testing.T) {
	p := mustLoad(t, BackendSock, Config{})
	h, lfd, port := serve(t, p)
	c := dial(t, port)
	fd := h.int("accept", lfd)
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	for i := range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, &recorder{}, 20*time.Millisecond, func() {}) }()
		if i%2 == 0 {
			mustWrite(t, c, []byte(healthReq))
			h.read(fd)
		}
		time.Sleep(time.Duration(i%7) * 3 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Second):
			t.Fatalf("run %d did not stop", i)
		}
	}
}

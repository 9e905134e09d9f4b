package bpf

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/require"
)

// Load picks the cheapest backend whose hooks this kernel has; the
// cheaper ones are refused for lacking theirs and for nothing else.
// AUTHPROBE_WANT_BACKEND (the kernel matrix sets it per kernel) says
// which one this kernel must pick.
func TestBackendAuto(t *testing.T) {
	skipUnlessRoot(t)
	p, err := Load(Config{Routes: testRoutes})
	SkipIfNotSupported(t, err)
	require.NoError(t, err)
	defer p.Close()
	want := os.Getenv("AUTHPROBE_WANT_BACKEND")
	if want == "" {
		want = naturalBackend(t)
	}
	info := p.Backend()
	require.Equal(t, want, info.Name)
	require.Equal(t, Backends()[len(info.Refused)], info.Name, "every cheaper backend was tried first")
	for i, r := range info.Refused {
		require.Equal(t, Backends()[i], r.Backend)
		require.ErrorIs(t, r.Err, ErrNoHook, "%s was refused for something else than a missing hook", r.Backend)
		t.Logf("refused %s: %v", r.Backend, r.Err)
	}

	for _, c := range CheckBackends(Config{Routes: testRoutes}) {
		if err := BackendAvailable(c.Backend); err != nil {
			require.ErrorIs(t, err, ErrNoHook)
			require.ErrorIs(t, c.Err, ErrNoHook, c.Backend)
			continue
		}
		require.NoError(t, c.Err, c.Backend)
	}
	_, err = Load(Config{Routes: testRoutes, Backend: "kprobes"})
	require.ErrorContains(t, err, `capture backend "kprobes"`)
}

// BackendAvailable reads the hooks from the programs' sections: a raw
// tracepoint from the kernel's BTF, a tracepoint from tracefs.
func TestBackendHooks(t *testing.T) {
	spec, err := loadCaptureSock()
	require.NoError(t, err)
	types, err := btf.NewBuilder([]btf.Type{
		&btf.Typedef{Name: "btf_trace_sock_recv_length", Type: &btf.Int{Name: "int", Size: 4}},
	}, nil)
	require.NoError(t, err)
	raw, err := types.Marshal(nil, nil)
	require.NoError(t, err)
	kernel, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	require.NoError(t, err)
	k := kernelHooks{spec: kernel}
	err = k.missing(spec)
	require.ErrorIs(t, err, ErrNoHook)
	require.ErrorContains(t, err, "no raw tracepoint sock_send_length (kernel 6.3+)")

	spec, err = loadCaptureSyscalls()
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(dir+"/events/syscalls/sys_exit_read", 0o755))
	k = kernelHooks{spec: kernel, tracefs: dir}
	err = k.missing(spec)
	require.ErrorIs(t, err, ErrNoHook)
	require.ErrorContains(t, err, "no tracepoint syscalls/sys_exit_readv")
	for _, name := range []string{"readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg"} {
		require.NoError(t, os.MkdirAll(dir+"/events/syscalls/sys_exit_"+name, 0o755))
	}
	require.NoError(t, k.missing(spec))
}

// A backend whose hook is missing, or that does not attach, is refused
// with its reason, and the next one is used; nothing of the refused ones
// stays attached.
func TestBackendFallback(t *testing.T) {
	skipUnlessRoot(t)
	// Both are the syscalls backend with one hook changed, so that every
	// kernel has the others: one names a tracepoint no kernel has (refused
	// before loading), one a tracefs entry that is not a tracepoint
	// (refused at attach, after the programs before it were attached).
	brokenSpec := func(section string) func() (*ebpf.CollectionSpec, error) {
		return func() (*ebpf.CollectionSpec, error) {
			spec, err := loadCaptureSyscalls()
			if err != nil {
				return nil, err
			}
			spec.Programs["authprobe_sys_exit_write"].SectionName = section
			return spec, nil
		}
	}
	noHook := backend{name: "nohook", spec: brokenSpec("tracepoint/syscalls/authprobe_no_such_tracepoint")}
	broken := backend{name: "broken", spec: brokenSpec("tracepoint/syscalls/enable")}
	cfg := Config{Routes: testRoutes, WakeupBytes: 1}
	require.NoError(t, cfg.defaults())
	keys, err := routeKeys(cfg.Routes)
	require.NoError(t, err)
	p, err := loadWith(cfg, keys, []backend{noHook, broken, {name: BackendSyscalls, spec: loadCaptureSyscalls}})
	require.NoError(t, err)
	defer p.Close()
	info := p.Backend()
	require.Equal(t, BackendSyscalls, info.Name)
	require.Len(t, info.Refused, 2)
	require.Equal(t, "nohook", info.Refused[0].Backend)
	require.ErrorIs(t, info.Refused[0].Err, ErrNoHook)
	require.ErrorContains(t, info.Refused[0].Err, "no tracepoint syscalls/authprobe_no_such_tracepoint")
	require.Equal(t, "broken", info.Refused[1].Backend)
	require.NotErrorIs(t, info.Refused[1].Err, ErrNoHook)
	require.ErrorContains(t, info.Refused[1].Err, "syscalls/enable")
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
	p := mustLoad(t, naturalBackend(t), Config{})
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
		case <-time.After(patience(2 * time.Second)):
			t.Fatalf("run %d did not stop", i)
		}
	}
}

// An optional program whose hook is missing is left out; the backend is
// available without it (fentry's tcp_sendpage from 6.5 on).
func TestOptionalHook(t *testing.T) {
	b := backend{name: "opt", spec: func() (*ebpf.CollectionSpec, error) {
		spec, err := loadCaptureSyscalls()
		if err != nil {
			return nil, err
		}
		spec.Programs["authprobe_sys_exit_write"].SectionName = "tracepoint/syscalls/authprobe_no_such_tracepoint"
		return spec, nil
	}, optional: []string{"authprobe_sys_exit_write"}}
	dir := t.TempDir()
	for _, name := range []string{"read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg"} {
		require.NoError(t, os.MkdirAll(dir+"/events/syscalls/sys_exit_"+name, 0o755))
	}
	k := kernelHooks{tracefs: dir}
	spec, err := b.specHere(&k)
	require.NoError(t, err)
	require.NotContains(t, spec.Programs, "authprobe_sys_exit_write")
	require.Len(t, spec.Programs, 7)

	b.optional = nil
	_, err = b.specHere(&k)
	require.ErrorIs(t, err, ErrNoHook)
}

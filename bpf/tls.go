package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// loadTLS loads the TLS probes' programs (attached per file later).
func (p *Probe) loadTLS(cfg Config) error {
	spec, err := loadCaptureTLS()
	if err != nil {
		return fmt.Errorf("load tls spec: %w", err)
	}
	if err := prepare(spec, cfg); err != nil {
		return err
	}
	coll, err := p.newCollection(spec)
	if err != nil {
		return err
	}
	p.colls = append(p.colls, coll)
	p.uprobes = map[string]*ebpf.Program{}
	for name, prog := range coll.Programs {
		p.uprobes[name] = prog
	}
	return nil
}

// TLSErr says why the TLS probes Config.TLS asked for could not be
// loaded; nil when they were (or were not asked for).
func (p *Probe) TLSErr() error { return p.tlsErr }

// opensslProbes names, for each OpenSSL function, the program at its
// entry and whether its return is probed too.
var opensslProbes = []struct {
	fn, prog string
	ret      bool
}{
	{"SSL_read", "authprobe_ssl_read", true},
	{"SSL_read_ex", "authprobe_ssl_read_ex", true},
	{"SSL_write", "authprobe_ssl_write", true},
	{"SSL_write_ex", "authprobe_ssl_write_ex", true},
	{"SSL_do_handshake", "authprobe_ssl_do_handshake", true},
	{"SSL_shutdown", "authprobe_ssl_shutdown", true},
	{"SSL_free", "authprobe_ssl_free", false},
}

const opensslRetProg = "authprobe_ssl_ret"

// Uprobes is one file's set of attached uprobes; Close detaches them.
type Uprobes struct {
	links []link.Link
	done  func() // after the links are gone
}

// Count is how many uprobes the set holds.
func (u *Uprobes) Count() int { return len(u.links) }

// Close detaches every uprobe of the set.
func (u *Uprobes) Close() error {
	var errs []error
	for _, l := range u.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	u.links = nil
	if u.done != nil {
		u.done()
		u.done = nil
	}
	return errors.Join(errs...)
}

// AttachOpenSSL attaches the OpenSSL probes to the file at path (a
// libssl, or an executable with OpenSSL linked in, reached from the
// agent's mount namespace: /proc/PID/root/...). funcs gives each
// function's file offset (uprobe.OpenSSLTarget.Funcs); SSL_read and
// SSL_write are required, the others attached when present. The probes
// fire for every process that maps the file; the programs ignore the
// ones that are not watched.
func (p *Probe) AttachOpenSSL(path string, funcs map[string]uint64) (*Uprobes, error) {
	if p.uprobes == nil {
		return nil, fmt.Errorf("attach openssl probes: TLS probes not loaded (Config.TLS): %v", p.tlsErr)
	}
	for _, fn := range []string{"SSL_read", "SSL_write"} {
		if _, ok := funcs[fn]; !ok {
			return nil, fmt.Errorf("attach openssl probes to %s: %s not found", path, fn)
		}
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ret := p.uprobes[opensslRetProg]
	u := &Uprobes{}
	for _, pr := range opensslProbes {
		off, ok := funcs[pr.fn]
		if !ok {
			continue
		}
		if err := u.add(ex, pr.fn, off, p.uprobes[pr.prog], false); err != nil {
			u.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !pr.ret {
			continue
		}
		if err := u.add(ex, pr.fn, off, ret, true); err != nil {
			u.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return u, nil
}

func (u *Uprobes) add(ex *link.Executable, fn string, off uint64, prog *ebpf.Program, ret bool) error {
	if prog == nil {
		return fmt.Errorf("%s: no program", fn)
	}
	opts := &link.UprobeOptions{Address: off}
	var (
		l   link.Link
		err error
	)
	if ret {
		l, err = ex.Uretprobe(fn, prog, opts)
	} else {
		l, err = ex.Uprobe(fn, prog, opts)
	}
	if err != nil {
		kind := "uprobe"
		if ret {
			kind = "uretprobe"
		}
		return fmt.Errorf("%s %s at %#x: %w", kind, fn, off, err)
	}
	u.links = append(u.links, l)
	return nil
}

// GoTLS is what the Go crypto/tls probes need of one executable (from
// uprobe.GoTarget): file offsets to probe and the struct offsets from a
// *tls.Conn to its socket's file descriptor.
type GoTLS struct {
	Read, Write GoTLSFunc
	ConnConn    uint64 // crypto/tls.Conn.conn
	TCPConnFD   uint64 // net.TCPConn's *netFD
	NetFDPfd    uint64 // net.netFD.pfd
	PollFDSysfd uint64 // internal/poll.FD.Sysfd
	// TCPConnItab is the (*net.TCPConn, net.Conn) itab's address; 0
	// skips the check (a PIE, whose load bias differs per process).
	TCPConnItab uint64
}

// GoTLSFunc is one function: its entry and every RET, as file offsets.
type GoTLSFunc struct {
	Entry   uint64
	Returns []uint64
}

// AttachGoTLS attaches the Go crypto/tls probes to the executable at
// path: uprobes at the entries of (*tls.Conn).Read and Write and at each
// of their RET instructions, never uretprobes (the Go runtime moves
// goroutine stacks, whose return addresses a uretprobe rewrites).
func (p *Probe) AttachGoTLS(path string, g GoTLS) (*Uprobes, error) {
	if p.uprobes == nil {
		return nil, fmt.Errorf("attach go tls probes: TLS probes not loaded (Config.TLS): %v", p.tlsErr)
	}
	if len(g.Read.Returns) == 0 || len(g.Write.Returns) == 0 {
		return nil, fmt.Errorf("attach go tls probes to %s: no RET offsets", path)
	}
	cookie := p.goCookie.Add(1)
	cfg := captureTLSGoTlsCfg{ConnConn: g.ConnConn, TcpconnFd: g.TCPConnFD, NetfdPfd: g.NetFDPfd,
		PollfdSysfd: g.PollFDSysfd, Itab: g.TCPConnItab}
	cfgs := p.maps["go_tls_cfgs"]
	if err := cfgs.Put(cookie, &cfg); err != nil {
		return nil, fmt.Errorf("go tls offsets of %s: %w", path, err)
	}
	u := &Uprobes{done: func() { _ = cfgs.Delete(cookie) }}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ret := p.uprobes["authprobe_go_tls_ret"]
	for _, f := range []struct {
		name string
		fn   GoTLSFunc
		prog *ebpf.Program
	}{
		{"crypto/tls.(*Conn).Read", g.Read, p.uprobes["authprobe_go_tls_read"]},
		{"crypto/tls.(*Conn).Write", g.Write, p.uprobes["authprobe_go_tls_write"]},
	} {
		if err := u.addCookie(ex, f.name, f.fn.Entry, f.prog, cookie); err != nil {
			u.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, r := range f.fn.Returns {
			if err := u.addCookie(ex, f.name+" RET", r, ret, cookie); err != nil {
				u.Close()
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return u, nil
}

func (u *Uprobes) addCookie(ex *link.Executable, what string, off uint64, prog *ebpf.Program, cookie uint64) error {
	if prog == nil {
		return fmt.Errorf("%s: no program", what)
	}
	l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, Cookie: cookie})
	if err != nil {
		return fmt.Errorf("uprobe %s at %#x: %w", what, off, err)
	}
	u.links = append(u.links, l)
	return nil
}

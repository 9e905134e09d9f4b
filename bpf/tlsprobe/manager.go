// Package tlsprobe keeps the TLS library uprobes attached to the files
// the watched processes map: one uprobe set per library file (by device
// and inode), shared by every process that maps it, in any container,
// attached when the first watched process maps it and detached when the
// last one stops (docs/capture.md, "TLS"). It finds the files with
// bpf/uprobe and attaches through a function it is given (bpf.Probe's
// AttachOpenSSL, AttachGoTLS), so it knows neither ELF nor BPF programs.
package tlsprobe

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/bpf/uprobe"
)

// AttachFunc attaches the OpenSSL probes to the file at path with the
// functions at the given file offsets.
type AttachFunc func(path string, funcs map[string]uint64) (io.Closer, error)

// AttachGoFunc attaches the Go crypto/tls probes to the executable at
// path.
type AttachGoFunc func(path string, t *uprobe.GoTarget) (io.Closer, error)

// Config configures a Manager.
type Config struct {
	Resolver      *uprobe.Resolver
	AttachOpenSSL AttachFunc
	// AttachGo: nil leaves Go binaries unprobed.
	AttachGo AttachGoFunc
	// Logger gets a component=tls attribute.
	Logger *slog.Logger
}

// Manager is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	files map[uprobe.FileID]*fileSet
	procs map[uint32]map[uprobe.FileID]bool
	// told are the files whose refusal was logged: once per file.
	told map[uprobe.FileID]bool
	stat Stats
}

// fileSet is one library file's uprobes and the processes using them.
type fileSet struct {
	probes io.Closer
	users  int
	info   FileStatus
}

// FileStatus is one TLS file a watched process maps.
type FileStatus struct {
	ID      uprobe.FileID
	Path    string // as the first process that mapped it sees it
	Library string // "openssl 3.0.19", "go1.26.3"
	// Attached: the probes are on the file. Err says why not.
	Attached bool
	Err      error
	Users    int
}

// Stats count what the manager did.
type Stats struct {
	Attached       uint64 // uprobe sets attached
	Detached       uint64
	AttachFailures uint64
	ScanFailures   uint64 // processes whose maps could not be read
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.Resolver == nil || cfg.AttachOpenSSL == nil {
		return nil, errors.New("tlsprobe: Resolver and AttachOpenSSL are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "tls"),
		files: map[uprobe.FileID]*fileSet{},
		procs: map[uint32]map[uprobe.FileID]bool{},
		told:  map[uprobe.FileID]bool{},
	}, nil
}

// Describe says what library a target is, in a few words.
func Describe(t uprobe.Target) string {
	switch {
	case t.OpenSSL != nil:
		s := fmt.Sprintf("%s %s", t.OpenSSL.Flavor, t.OpenSSL.Version)
		if t.OpenSSL.Executable {
			s += " (linked into the executable)"
		}
		return s
	case t.Go != nil:
		s := "Go crypto/tls " + t.Go.Version
		if t.Go.Stripped {
			s += " (stripped)"
		}
		return s
	}
	return "unknown"
}

// Sync makes the probes match the watched processes pids: the TLS files
// each maps now get probes, files no watched process maps any more lose
// them. Called periodically, it also catches libraries loaded later
// (dlopen).
func (m *Manager) Sync(pids []uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[uint32]bool{}
	for _, pid := range pids {
		seen[pid] = true
		targets, err := m.cfg.Resolver.Process(int(pid))
		if err != nil {
			// The process exited between the list and now, or its maps
			// are not readable: it keeps what it had until it is gone.
			m.stat.ScanFailures++
			continue
		}
		now := map[uprobe.FileID]bool{}
		for _, t := range targets {
			if m.use(pid, t) {
				now[t.File.ID] = true
			}
		}
		for id := range m.procs[pid] {
			if !now[id] {
				m.release(id)
			}
		}
		m.procs[pid] = now
	}
	for pid, ids := range m.procs {
		if seen[pid] {
			continue
		}
		for id := range ids {
			m.release(id)
		}
		delete(m.procs, pid)
	}
}

// use makes pid a user of t's file, attaching its probes if it is the
// first; false when the file is not probed.
func (m *Manager) use(pid uint32, t uprobe.Target) bool {
	id := t.File.ID
	if m.procs[pid][id] {
		return true
	}
	if fs, ok := m.files[id]; ok {
		fs.users++
		fs.info.Users = fs.users
		return true
	}
	info := FileStatus{ID: id, Path: t.File.Path, Library: Describe(t), Err: t.Err}
	if info.Err == nil && t.OpenSSL == nil && (t.Go == nil || m.cfg.AttachGo == nil) {
		info.Err = errors.New("no probes for this library")
	}
	if info.Err != nil {
		if !m.told[id] {
			m.told[id] = true
			m.log.Info("TLS library not probed", "pid", pid, "file", t.File.Path, "library", info.Library, "reason", info.Err)
		}
		return false
	}
	var probes io.Closer
	var err error
	if t.OpenSSL != nil {
		probes, err = m.cfg.AttachOpenSSL(t.File.OpenPath, t.OpenSSL.Funcs)
	} else {
		probes, err = m.cfg.AttachGo(t.File.OpenPath, t.Go)
	}
	if err != nil {
		m.stat.AttachFailures++
		if !m.told[id] {
			m.told[id] = true
			m.log.Warn("TLS probes could not be attached", "pid", pid, "file", t.File.Path, "library", info.Library, "error", err)
		}
		return false
	}
	m.stat.Attached++
	info.Attached, info.Users = true, 1
	m.files[id] = &fileSet{probes: probes, users: 1, info: info}
	m.log.Info("TLS probes attached", "pid", pid, "file", t.File.Path, "library", info.Library)
	return true
}

// release drops one user of the file id, detaching its probes with the
// last.
func (m *Manager) release(id uprobe.FileID) {
	fs, ok := m.files[id]
	if !ok {
		return
	}
	fs.users--
	fs.info.Users = fs.users
	if fs.users > 0 {
		return
	}
	delete(m.files, id)
	m.stat.Detached++
	if err := fs.probes.Close(); err != nil {
		m.log.Warn("detach TLS probes", "file", fs.info.Path, "error", err)
	}
	m.log.Info("TLS probes detached", "file", fs.info.Path)
}

// Files lists the files with probes attached, by path.
func (m *Manager) Files() []FileStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]FileStatus, 0, len(m.files))
	for _, fs := range m.files {
		out = append(out, fs.info)
	}
	slices.SortFunc(out, func(a, b FileStatus) int {
		if a.Path < b.Path {
			return -1
		}
		if a.Path > b.Path {
			return 1
		}
		return 0
	})
	return out
}

// Stats returns the counts so far.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stat
}

// Close detaches every probe.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for id, fs := range m.files {
		if err := fs.probes.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(m.files, id)
	}
	m.procs = map[uint32]map[uprobe.FileID]bool{}
	return errors.Join(errs...)
}

// GoTLS converts what bpf/uprobe found in a Go executable into what the
// kernel side's Go probes take. A PIE's itab moves with its load bias, so
// it is not checked there (the file descriptor must still be a TCP
// socket).
func GoTLS(t *uprobe.GoTarget) bpf.GoTLS {
	g := bpf.GoTLS{
		Read:        bpf.GoTLSFunc{Entry: t.Read.Offset, Returns: t.Read.Returns},
		Write:       bpf.GoTLSFunc{Entry: t.Write.Offset, Returns: t.Write.Returns},
		ConnConn:    t.Offsets.ConnConn,
		TCPConnFD:   t.Offsets.TCPConnFD,
		NetFDPfd:    t.Offsets.NetFDPfd,
		PollFDSysfd: t.Offsets.PollFDSysfd,
	}
	if !t.PIE {
		g.TCPConnItab = t.Offsets.TCPConnItab
	}
	return g
}

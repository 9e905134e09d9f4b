package uprobe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Config configures a Resolver.
type Config struct {
	// ProcRoot is where procfs is mounted (default /proc; a DaemonSet
	// with the host's /proc mounted elsewhere sets it).
	ProcRoot string
	// MaxFiles bounds the per-file cache (default 4096).
	MaxFiles int
	// Parse, when set, runs each analysis of a file not in the cache:
	// the one time a Resolver allocates much (a Go executable's DWARF
	// is read whole, several times its compressed size). The agent runs
	// it under a tight heap target and gives the memory back after.
	Parse func(analyse func())
}

// Target is a file of a process that has TLS functions to probe.
type Target struct {
	File MappedFile
	// Exactly one of OpenSSL and Go is set.
	OpenSSL *OpenSSLTarget
	Go      *GoTarget
	// Err says why the file cannot be probed (ErrUnsupportedTLS,
	// ErrUnsupportedGo, a malformed file); nil when it can.
	Err error
}

// Probeable reports whether the target can be attached to.
func (t Target) Probeable() bool { return t.Err == nil }

// Resolver finds a process's TLS targets and remembers what it learnt
// about each file, so a library shared by many processes is parsed once.
// It is safe for concurrent use.
type Resolver struct {
	cfg   Config
	mu    sync.Mutex
	cache map[fileKey]*fileResult
}

// fileKey adds size and modification time to the file's identity, so a
// recycled inode number is not mistaken for the file it replaced.
type fileKey struct {
	ID    FileID
	Size  int64
	Mtime int64
}

// fileResult is what a file turned out to be; nil target: no TLS.
type fileResult struct {
	openssl *OpenSSLTarget
	gobin   *GoTarget
	err     error
}

// NewResolver returns a Resolver for cfg.
func NewResolver(cfg Config) *Resolver {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = 4096
	}
	return &Resolver{cfg: cfg, cache: map[fileKey]*fileResult{}}
}

// Process returns the TLS targets of the process pid: every executable
// mapping whose file exports OpenSSL's SSL_read/SSL_write, and the
// executable itself when it is a Go binary using crypto/tls. Files that
// are neither are left out; files that look like TLS but cannot be
// probed are returned with Err set.
func (r *Resolver) Process(pid int) ([]Target, error) {
	maps, err := readMaps(r.cfg.ProcRoot, pid)
	if err != nil {
		return nil, err
	}
	exe, err := r.exeID(pid)
	if err != nil {
		return nil, err
	}
	exePath := r.exePath(pid)
	files := mappedFiles(r.cfg.ProcRoot, pid, maps)
	var out []Target
	for _, f := range files {
		if !f.Exec {
			continue
		}
		// The maps' device and inode need not be what /proc/PID/exe
		// stats as: in the kernel-matrix guests (an overlay over 9p) they
		// differ, and Go TLS was silently never probed there. The path
		// says it is the executable all the same.
		isExe := f.ID == exe || (exePath != "" && f.Path == exePath)
		res := r.file(f, isExe, cryptoBeside(files, f))
		switch {
		case res.openssl != nil:
			out = append(out, Target{File: f, OpenSSL: res.openssl, Err: res.err})
		case res.gobin != nil:
			out = append(out, Target{File: f, Go: res.gobin, Err: res.err})
		case res.err != nil:
			out = append(out, Target{File: f, Err: res.err})
		}
	}
	return out, nil
}

// exeID is the identity of the process's executable.
func (r *Resolver) exeID(pid int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(r.cfg.ProcRoot, strconv.Itoa(pid), "exe"), &st); err != nil {
		return FileID{}, fmt.Errorf("stat executable of %d: %w", pid, err)
	}
	return FileID{Dev: st.Dev, Inode: st.Ino}, nil
}

// exePath is the executable's path as the process's maps name it, or ""
// when the link cannot be read.
func (r *Resolver) exePath(pid int) string {
	p, err := os.Readlink(filepath.Join(r.cfg.ProcRoot, strconv.Itoa(pid), "exe"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(p, " (deleted)")
}

// cryptoBeside finds the libcrypto a libssl's version text is in: the
// one the same process maps, else the file beside it.
func cryptoBeside(files []MappedFile, ssl MappedFile) string {
	want := strings.Replace(filepath.Base(ssl.Path), "libssl", "libcrypto", 1)
	if want == filepath.Base(ssl.Path) {
		return ""
	}
	for _, f := range files {
		if filepath.Base(f.Path) == want {
			return f.OpenPath
		}
	}
	return siblingCrypto(ssl.OpenPath)
}

// file analyses one mapped file, or returns what an earlier call found.
func (r *Resolver) file(f MappedFile, isExe bool, cryptoPath string) *fileResult {
	fh, err := os.Open(f.OpenPath)
	if err != nil {
		return &fileResult{err: fmt.Errorf("open %s: %w", f.Path, err)}
	}
	defer fh.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil {
		return &fileResult{err: fmt.Errorf("stat %s: %w", f.Path, err)}
	}
	key := fileKey{ID: f.ID, Size: st.Size, Mtime: st.Mtim.Nano()}
	r.mu.Lock()
	res, ok := r.cache[key]
	r.mu.Unlock()
	if ok {
		return res
	}
	if r.cfg.Parse != nil {
		r.cfg.Parse(func() { res = analyse(fh, st.Size, isExe, cryptoPath) })
	} else {
		res = analyse(fh, st.Size, isExe, cryptoPath)
	}
	r.mu.Lock()
	if len(r.cache) >= r.cfg.MaxFiles {
		for k := range r.cache { // evict one; re-parsing is only slower
			delete(r.cache, k)
			break
		}
	}
	r.cache[key] = res
	r.mu.Unlock()
	return res
}

// analyse classifies an open file. Only the executable is checked for Go:
// Go shared libraries are not supported.
func analyse(fh *os.File, size int64, isExe bool, cryptoPath string) *fileResult {
	ef, err := newELF(fh, size)
	if err != nil {
		if errors.Is(err, errNotELF) {
			return &fileResult{}
		}
		return &fileResult{err: err}
	}
	res := &fileResult{}
	t, err := resolveOpenSSL(ef, cryptoPath)
	switch {
	case t != nil:
		res.openssl, res.err = t, err
		return res
	case err != nil && !errors.Is(err, ErrNoTLS):
		res.err = err
		return res
	}
	if !isExe {
		return res
	}
	g, err := resolveGo(ef)
	switch {
	case err == nil:
		res.gobin = g
	case errors.Is(err, ErrNotGo), errors.Is(err, ErrNoTLS):
	default:
		res.err = err
	}
	return res
}

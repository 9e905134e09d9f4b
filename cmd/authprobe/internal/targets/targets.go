// Package targets decides which processes the agent watches. It takes the
// configured targets (PIDs, executable globs, listening ports) and gives,
// for a process, whether it is a target and its service name. It reads
// /proc (executable links, listening sockets) and never logs.
package targets

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/authprobe/authprobe/config"
)

// Process is a watched process.
type Process struct {
	PID         uint32
	Exe         string // resolved executable path
	ServiceName string
	// Pinned processes were named by PID; they stay watched across exec.
	Pinned bool
}

// Matcher applies the configured targets.
type Matcher struct {
	targets        []config.Target
	defaultService string
	procRoot       string
}

// NewMatcher builds a matcher; procRoot is normally "/proc".
func NewMatcher(targets []config.Target, defaultService, procRoot string) *Matcher {
	return &Matcher{targets: targets, defaultService: defaultService, procRoot: procRoot}
}

// HasPortTargets reports whether ports must be scanned.
func (m *Matcher) HasPortTargets() bool {
	for _, t := range m.targets {
		if t.Port != 0 {
			return true
		}
	}
	return false
}

// Match tells whether the process pid (running exe, which may be the
// path exec was given) is a target, given the ports it listens on.
func (m *Matcher) Match(pid uint32, exe string, ports map[uint16]bool) (Process, bool) {
	resolved := m.Exe(pid)
	if resolved == "" {
		resolved = exe
	}
	for _, t := range m.targets {
		ok := false
		switch {
		case t.PID != 0:
			ok = uint32(t.PID) == pid
		case t.Exe != "":
			// The resolved executable, or the path exec was given: a
			// virtualenv's bin/python is a link to the interpreter.
			ok = config.MatchExe(t.Exe, resolved) || config.MatchExe(t.Exe, exe)
		case t.Port != 0:
			ok = ports[uint16(t.Port)]
		}
		if ok {
			return Process{
				PID:         pid,
				Exe:         resolved,
				ServiceName: m.serviceName(t, resolved),
				Pinned:      t.PID != 0,
			}, true
		}
	}
	return Process{}, false
}

func (m *Matcher) serviceName(t config.Target, exe string) string {
	switch {
	case t.ServiceName != "":
		return t.ServiceName
	case m.defaultService != "":
		return m.defaultService
	case exe != "":
		return path.Base(exe)
	}
	return "unknown_service"
}

// Exe resolves /proc/pid/exe; "" when the process is gone or hidden.
func (m *Matcher) Exe(pid uint32) string {
	exe, err := os.Readlink(filepath.Join(m.procRoot, strconv.Itoa(int(pid)), "exe"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

// PIDs lists the processes in procRoot.
func (m *Matcher) PIDs() ([]uint32, error) {
	entries, err := os.ReadDir(m.procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]uint32, 0, len(entries))
	for _, e := range entries {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(n))
		}
	}
	return pids, nil
}

// ListeningPorts maps each process to the TCP ports it listens on, over
// every network namespace the processes live in. Only called when port
// targets exist: it reads every process's fd table.
func (m *Matcher) ListeningPorts(pids []uint32) map[uint32]map[uint16]bool {
	// Listening socket inodes per network namespace, read once each.
	listeners := map[string]map[uint64]uint16{}
	out := map[uint32]map[uint16]bool{}
	for _, pid := range pids {
		dir := filepath.Join(m.procRoot, strconv.Itoa(int(pid)))
		ns, err := os.Readlink(filepath.Join(dir, "ns", "net"))
		if err != nil {
			continue
		}
		socks, ok := listeners[ns]
		if !ok {
			socks = map[uint64]uint16{}
			for _, f := range []string{"tcp", "tcp6"} {
				_ = readListeners(filepath.Join(dir, "net", f), socks)
			}
			listeners[ns] = socks
		}
		if len(socks) == 0 {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil {
				continue
			}
			if port, ok := socks[ino]; ok {
				if out[pid] == nil {
					out[pid] = map[uint16]bool{}
				}
				out[pid][port] = true
			}
		}
	}
	return out
}

// readListeners adds the LISTEN sockets of a /proc/net/tcp{,6} file.
func readListeners(file string, into map[uint64]uint16) error {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		port, ino, ok := parseTCPLine(s.Text())
		if ok {
			into[ino] = port
		}
	}
	return s.Err()
}

// parseTCPLine reads "sl local_address rem_address st ... inode" and
// returns the local port and inode of a socket in state LISTEN (0A).
func parseTCPLine(line string) (uint16, uint64, bool) {
	f := strings.Fields(line)
	if len(f) < 10 || f[3] != "0A" {
		return 0, 0, false
	}
	_, portHex, ok := strings.Cut(f[1], ":")
	if !ok {
		return 0, 0, false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return 0, 0, false
	}
	ino, err := strconv.ParseUint(f[9], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return uint16(port), ino, true
}

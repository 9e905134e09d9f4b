// Package targets decides which processes the agent watches. It takes the
// configured targets (PIDs, executable globs, listening ports, Kubernetes
// selectors) and gives, for a process, whether it is a target and its
// service name. It reads /proc (executable links, listening sockets), asks
// Pods (k8smeta) who a process is on Kubernetes, and never logs.
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
	"github.com/authprobe/authprobe/k8smeta"
)

// Process is a watched process.
type Process struct {
	PID uint32
	// Start is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22): with PID, which process this is. The
	// kernel side refuses to capture a PID whose start time differs.
	Start       uint64
	Exe         string // resolved executable path
	ServiceName string
	// Pinned processes were named by PID; they stay watched across exec.
	Pinned bool
	// Target is the index of the target that matched.
	Target int
	// Meta is the revision of the process's Kubernetes identity
	// (k8smeta.Identity.Rev); 0 when no Pods are configured.
	Meta uint64
	// Gateway: the target says the process is a gateway.
	Gateway bool
}

// Pods tells who a process is on Kubernetes (k8smeta.Meta).
type Pods interface {
	Process(pid uint32) k8smeta.Identity
	// Changes is signalled when pods appeared or changed: processes may
	// match now that did not, and identities may say more.
	Changes() <-chan struct{}
}

// Matcher applies the configured targets.
type Matcher struct {
	targets        []config.Target
	selectors      []k8smeta.Selector // per target
	defaultService string
	procRoot       string
	pods           Pods
}

// NewMatcher builds a matcher; procRoot is normally "/proc".
func NewMatcher(targets []config.Target, defaultService, procRoot string) *Matcher {
	m := &Matcher{targets: targets, defaultService: defaultService, procRoot: procRoot}
	for _, t := range targets {
		m.selectors = append(m.selectors, k8smeta.Selector{
			Namespace: t.K8sNamespace,
			PodLabels: t.K8sPodLabels,
			Workload:  k8smeta.Workload{Kind: t.K8sWorkload.Kind, Name: t.K8sWorkload.Name},
			Container: t.K8sContainer,
		})
	}
	return m
}

// WithPods makes the matcher ask pods who a process is: for Kubernetes
// selectors and for service names from the pod.
func (m *Matcher) WithPods(pods Pods) *Matcher {
	m.pods = pods
	return m
}

// PodChanges is Pods' change signal; nil (never ready) without Pods.
func (m *Matcher) PodChanges() <-chan struct{} {
	if m.pods == nil {
		return nil
	}
	return m.pods.Changes()
}

// HasK8sTargets reports whether a target has a Kubernetes selector.
func (m *Matcher) HasK8sTargets() bool {
	for _, t := range m.targets {
		if t.HasK8s() {
			return true
		}
	}
	return false
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
// path exec was given) is a target, given the ports it listens on. Every
// field a target sets must match; the first target that matches wins.
func (m *Matcher) Match(pid uint32, exe string, ports map[uint16]bool) (Process, bool) {
	resolved := m.Exe(pid)
	if resolved == "" {
		resolved = exe
	}
	var id *k8smeta.Identity // read at most once, when needed
	identity := func() k8smeta.Identity {
		if id == nil {
			id = &k8smeta.Identity{}
			if m.pods != nil {
				*id = m.pods.Process(pid)
			}
		}
		return *id
	}
	for i, t := range m.targets {
		switch {
		case t.PID != 0 && uint32(t.PID) != pid:
			continue
		case t.Exe != "" && !config.MatchExe(t.Exe, resolved) && (exe == "" || !config.MatchExe(t.Exe, exe)):
			// The resolved executable, or the path exec was given: a
			// virtualenv's bin/python is a link to the interpreter.
			continue
		case t.Port != 0 && !ports[uint16(t.Port)]:
			continue
		case !m.selectors[i].IsZero() && !m.selectors[i].Match(identity()):
			continue
		}
		return m.process(Process{PID: pid, Exe: resolved, Pinned: t.PID != 0, Target: i, Gateway: t.Gateway}, identity()), true
	}
	return Process{}, false
}

// Refresh recomputes what the process's pod tells (service name, identity
// revision) for the target it matched, after Pods signalled a change.
func (m *Matcher) Refresh(p Process) Process {
	if m.pods == nil || p.Target < 0 || p.Target >= len(m.targets) {
		return p
	}
	return m.process(p, m.pods.Process(p.PID))
}

func (m *Matcher) process(p Process, id k8smeta.Identity) Process {
	p.ServiceName = m.serviceName(m.targets[p.Target], id, p.Exe)
	if m.pods != nil {
		p.Meta = id.Rev()
	}
	return p
}

// serviceName: the target's own, else the pod's (as the OpenTelemetry
// Operator names it), else the configured default, else the executable's.
func (m *Matcher) serviceName(t config.Target, id k8smeta.Identity, exe string) string {
	switch {
	case t.ServiceName != "":
		return t.ServiceName
	case id.Known && id.ServiceName != "":
		return id.ServiceName
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

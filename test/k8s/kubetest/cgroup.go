package kubetest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Layout is how a node names its pods' cgroups: the kubelet's cgroup
// driver and the container runtime.
type Layout int

const (
	// SystemdContainerd: kubepods.slice/kubepods-<qos>.slice/
	// kubepods-<qos>-pod<uid_>.slice/cri-containerd-<id>.scope
	SystemdContainerd Layout = iota
	// CgroupfsContainerd: kubepods/<qos>/pod<uid>/<id>
	CgroupfsContainerd
	// SystemdCRIO: as systemd, with crio-<id>.scope
	SystemdCRIO
)

func (l Layout) String() string {
	return [...]string{"systemd+containerd", "cgroupfs+containerd", "systemd+cri-o"}[l]
}

// Runtime is the scheme of the status container IDs of the layout's
// runtime.
func (l Layout) Runtime() string {
	if l == SystemdCRIO {
		return "cri-o"
	}
	return "containerd"
}

// Cgroups is a private cgroup v2 subtree for one test, under which pods'
// cgroups are laid out as a node lays them out. Everything is removed at
// the end of the test, after the processes in it are killed.
type Cgroups struct {
	tb   testing.TB
	root string // absolute path of the test's subtree
	dirs []string
	cmds []*exec.Cmd
}

// MustCgroups creates the test's subtree in the cgroup2 hierarchy (on a
// hybrid cgroup v1 node, the unified mount) or skips: it needs root and
// cgroup2.
func MustCgroups(tb testing.TB) *Cgroups {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates cgroups and moves processes into them")
	}
	mnt, err := cgroup2Mount()
	if err != nil {
		tb.Skipf("no cgroup2 hierarchy: %v", err)
	}
	root := filepath.Join(mnt, fmt.Sprintf("authprobe-test-%d-%s", os.Getpid(), randHex(6)))
	if err := os.Mkdir(root, 0o755); err != nil {
		tb.Skipf("cannot create a cgroup under %s: %v", mnt, err)
	}
	cg := &Cgroups{tb: tb, root: root, dirs: []string{root}}
	tb.Cleanup(cg.cleanup)
	return cg
}

// cgroup2Mount finds where the cgroup2 hierarchy is mounted.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(pre); len(f) >= 5 {
			return f[4], nil
		}
	}
	return "", errors.New("cgroup2 is not mounted")
}

// ContainerPath is the cgroup path (below the test's subtree) of a
// container of the pod with uid, for the layout and a burstable pod.
func ContainerPath(l Layout, uid, id string) string {
	u := strings.ReplaceAll(uid, "-", "_")
	switch l {
	case CgroupfsContainerd:
		return filepath.Join("kubepods", "burstable", "pod"+uid, id)
	case SystemdCRIO:
		return filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+u+".slice", "crio-"+id+".scope")
	default:
		return filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+u+".slice", "cri-containerd-"+id+".scope")
	}
}

// Container creates the cgroup of a container and returns its absolute
// path.
func (cg *Cgroups) Container(l Layout, uid, id string) string {
	cg.tb.Helper()
	rel := ContainerPath(l, uid, id)
	dir := cg.root
	for _, e := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, e)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			cg.tb.Fatalf("create cgroup %s: %v", dir, err)
		} else if err == nil {
			cg.dirs = append(cg.dirs, dir)
		}
	}
	return dir
}

// Start runs cmd inside the cgroup dir from its first instruction
// (clone3 with CLONE_INTO_CGROUP, as a runtime starts a container's
// process), so that its exec already shows the container's cgroup. The
// process is killed at the end of the test; waiting for it is the
// caller's.
func (cg *Cgroups) Start(cmd *exec.Cmd, dir string) error {
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer syscall.Close(fd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s in %s: %w", cmd.Path, dir, err)
	}
	cg.cmds = append(cg.cmds, cmd)
	return nil
}

// Procs lists the PIDs in a cgroup.
func Procs(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// cleanup kills what Start started (its caller reaps it: a zombie holds
// no cgroup) and removes the subtree.
func (cg *Cgroups) cleanup() {
	for _, c := range cg.cmds {
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	// Anything else still in the subtree (children of the test's
	// processes) is killed with cgroup.kill.
	_ = os.WriteFile(filepath.Join(cg.root, "cgroup.kill"), []byte("1"), 0o644)
	for i := len(cg.dirs) - 1; i >= 0; i-- {
		d := cg.dirs[i]
		var err error
		for range 50 {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			cg.tb.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

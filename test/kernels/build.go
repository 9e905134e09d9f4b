package kernels

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/authprobe/authprobe/test/kernels/guest"
)

// ModuleRoot is the repository root, found from this file's location:
// the harness always runs from the source tree.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// GoBuild builds pkg for linux/arch into out, static (CGO_ENABLED=0) so
// that it runs from an initramfs; with test it builds the package's test
// binary (go test -c).
func GoBuild(arch, out, pkg string, test bool) error {
	args := []string{"build", "-o", out, pkg}
	if test {
		args = []string{"test", "-c", "-o", out, pkg}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("GOARCH=%s go %s: %w\n%s", arch, strings.Join(args, " "), err, msg)
	}
	return nil
}

// GuestBinDir is where binaries built for the guest lie in an initramfs
// root.
const GuestBinDir = "/authprobe/bin"

// NewJob is a job without steps for a guest root kind. A host root keeps
// the host's PATH (the same python3, node, java and curl); /run starts
// empty (no host daemon's sockets or pid files).
func NewJob(root string, hostEnv []string) guest.Job {
	job := guest.Job{Root: root}
	path := GuestBinDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if root == guest.RootHost {
		job.Writable = []string{"/run"}
		for _, kv := range hostEnv {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
		}
	}
	job.Env = []string{"PATH=" + path, "HOME=/tmp", "TMPDIR=/tmp", "AUTHPROBE_GUEST=1"}
	return job
}

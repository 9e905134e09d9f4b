package k8smeta

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// Container is what a process's cgroup path says about it: enough to find
// its pod and container in the API, and what spans carry when the API is
// away.
type Container struct {
	// PodUID is the pod's UID in its API form (dashes), "" when the path
	// names no pod.
	PodUID string
	// ContainerID is the runtime's 64-hex-digit container ID, "" when the
	// path has none (a pod-level cgroup).
	ContainerID string
	// Runtime is "containerd", "cri-o" or "docker" when the path's scope
	// name says so; the cgroupfs driver's bare IDs do not.
	Runtime string
}

// InPod reports whether the cgroup is a Kubernetes pod's.
func (c Container) InPod() bool { return c.PodUID != "" }

// The kubelet names a pod's cgroup kubepods-<qos>-pod<uid>.slice with the
// systemd driver (dashes of the UID become underscores, as systemd unit
// names need) and pod<uid> with the cgroupfs driver.
var podUID = regexp.MustCompile(`^(?:kubepods(?:-[a-z]+)?-|kubelet-kubepods(?:-[a-z]+)?-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$`)

// containerScopes are the runtimes' systemd scope prefixes of a
// container's cgroup. crio-conmon-<id>.scope is CRI-O's monitor process,
// not the container, so it is not among them.
var containerScopes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"crio-", "cri-o"},
	{"docker-", "docker"},
	{"cri-dockerd-", "docker"},
}

// ParseCgroup reads the contents of /proc/<pid>/cgroup (cgroup v1, v2 or
// both). The unified (v2) line is preferred; on a v1-only node the first
// controller line under kubepods is used. Paths may be relative to a
// cgroup namespace ("/../../kubepods-...") and may go on below the
// container (a container that runs systemd); both are handled.
func ParseCgroup(data []byte) Container {
	var v1 Container
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "kubepods") {
			continue
		}
		c := parsePath(parts[2])
		if !c.InPod() {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return c
		}
		if !v1.InPod() {
			v1 = c
		}
	}
	return v1
}

// parsePath finds the pod element of a cgroup path and the container
// element below it.
func parsePath(path string) Container {
	elems := strings.Split(path, "/")
	for i, e := range elems {
		m := podUID.FindStringSubmatch(e)
		if m == nil {
			continue
		}
		c := Container{PodUID: strings.ReplaceAll(m[1], "_", "-")}
		// The container is the first element below the pod that names one;
		// anything deeper belongs to the container.
		for _, e := range elems[i+1:] {
			if id, rt, ok := containerElem(e); ok {
				c.ContainerID, c.Runtime = id, rt
				break
			}
		}
		return c
	}
	return Container{}
}

func containerElem(e string) (id, runtime string, ok bool) {
	if s, ok := strings.CutSuffix(e, ".scope"); ok {
		for _, cs := range containerScopes {
			if id, ok := strings.CutPrefix(s, cs.prefix); ok && isContainerID(id) {
				return id, cs.runtime, true
			}
		}
		return "", "", false
	}
	// cgroupfs driver: the bare ID.
	if isContainerID(e) {
		return e, "", true
	}
	return "", "", false
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Package k8smeta gives the Kubernetes resource attributes of a traced
// process: from its cgroup path the pod UID and container ID
// (k8s.pod.uid, container.id), and from the agent's environment the node
// (k8s.node.name). It reads /proc and the environment only — no API
// server — and never logs. Pod names and namespaces would need the
// kubelet or the API and are not given yet.
package k8smeta

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// Resolver reads process metadata below a /proc root.
type Resolver struct {
	procRoot string
}

// New returns a Resolver for procRoot (normally "/proc").
func New(procRoot string) *Resolver {
	return &Resolver{procRoot: procRoot}
}

// Process returns the k8s attributes of pid; none when it does not run in
// a Kubernetes pod (or is gone).
func (r *Resolver) Process(pid uint32) []attribute.KeyValue {
	data, err := os.ReadFile(filepath.Join(r.procRoot, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return nil
	}
	return FromCgroup(data)
}

// Node returns the node-level attributes, from the NODE_NAME variable the
// DaemonSet sets through the downward API.
func Node(getenv func(string) string) []attribute.KeyValue {
	if n := strings.TrimSpace(getenv("NODE_NAME")); n != "" {
		return []attribute.KeyValue{attribute.String("k8s.node.name", n)}
	}
	return nil
}

var (
	// kubepods-burstable-pod<uid>.slice (systemd driver, '_' for '-') or
	// /kubepods/burstable/pod<uid>/ (cgroupfs driver).
	podUID = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	// cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope, or a
	// bare 64-hex last path element.
	containerID = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$`)
)

// FromCgroup parses the contents of /proc/<pid>/cgroup (v1 or v2).
func FromCgroup(data []byte) []attribute.KeyValue {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "kubepods") {
			continue
		}
		path := parts[2]
		var out []attribute.KeyValue
		if m := podUID.FindStringSubmatch(path); m != nil {
			out = append(out, attribute.String("k8s.pod.uid", strings.ReplaceAll(m[1], "_", "-")))
		}
		if m := containerID.FindStringSubmatch(path); m != nil {
			out = append(out, attribute.String("container.id", m[1]))
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

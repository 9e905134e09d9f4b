package k8s

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"k8s.io/client-go/rest"

	"github.com/authprobe/authprobe/k8smeta"
	"github.com/authprobe/authprobe/test/k8s/kubetest"
)

// The node the agent runs on, and another one whose pods it must never see.
const (
	thisNode  = "node-a"
	otherNode = "node-b"
	agentNS   = "authprobe"
	agentSA   = "authprobe-agent"
	agentUser = "system:serviceaccount:" + agentNS + ":" + agentSA
)

// fixture is a control plane with the agent's shipped RBAC applied, and a
// private cgroup subtree for the pods' processes.
type fixture struct {
	c  *kubetest.Cluster
	cg *kubetest.Cgroups
}

func mustFixture(t *testing.T) *fixture {
	t.Helper()
	cg := kubetest.MustCgroups(t)
	return &fixture{c: mustCluster(t), cg: cg}
}

// mustCluster is the control plane alone, for tests without processes.
func mustCluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	c := kubetest.Start(t)
	t.Logf("etcd and kube-apiserver ready in %s", c.StartTime.Round(time.Millisecond))
	// The agent's identity exactly as deploy/kubernetes ships it.
	for _, m := range []string{"namespace", "agent-rbac"} {
		c.Apply(t, m, string(mustRead(t, filepath.Join(kubetest.RepoRoot(), "deploy", "kubernetes", m+".yaml"))))
	}
	return c
}

// agentREST is the client config of the agent's service account.
func (f *fixture) agentREST(t *testing.T) *rest.Config { return agentREST(t, f.c) }

func agentREST(t *testing.T, c *kubetest.Cluster) *rest.Config {
	return c.ServiceAccountConfig(t, agentNS, agentSA)
}

// start runs argv as the process of one container of p, in the cgroup the
// layout gives it.
func (f *fixture) start(t *testing.T, l kubetest.Layout, p *kubetest.Pod, container string, argv ...string) *exec.Cmd {
	t.Helper()
	id := p.ContainerIDs[container]
	if id == "" {
		t.Fatalf("pod %s has no container %s running", p.Name, container)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := f.cg.Start(cmd, f.cg.Container(l, string(p.UID), id)); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// sleeper is a process that only has to exist.
var sleeper = []string{"sleep", "600"}

// startMeta runs a k8smeta.Meta until the test ends.
func startMeta(t *testing.T, cfg k8smeta.Config) *k8smeta.Meta {
	t.Helper()
	m, err := k8smeta.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("k8smeta Run did not return 10s after its context ended")
		}
	})
	return m
}

// waitFor polls cond every 10ms and returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func waitPhase(t *testing.T, m *k8smeta.Meta, p k8smeta.Phase, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "watch phase "+string(p), func() bool { return m.State().Phase == p })
}

// attrs renders attributes as a map for exact comparison; slices join
// with commas.
func attrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		if kv.Value.Type() == attribute.STRINGSLICE {
			out[string(kv.Key)] = strings.Join(kv.Value.AsStringSlice(), ",")
			continue
		}
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func pidOf(cmd *exec.Cmd) uint32 { return uint32(cmd.Process.Pid) }

func image(container string, i int) (name, tag string) {
	return "registry.test:5000/authprobe/" + container, fmt.Sprintf("1.%d", i)
}

// Package k8s tests authprobe on Kubernetes against a real control plane
// (test/k8s/kubetest): k8smeta's pod watch with the agent's shipped RBAC,
// and the agent itself on real servers in pod cgroups. Root (cgroups,
// eBPF) and the tools of `make k8s-tools` are needed; without them the
// tests skip and say why.
package k8s

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/authprobe/authprobe/k8smeta"
	"github.com/authprobe/authprobe/test/k8s/kubetest"
)

// TestIdentities: processes of a Deployment, a StatefulSet, a CronJob's
// Job and a bare pod of this node, in cgroups of the three layouts, get
// exactly the resource attributes and service names OpenTelemetry's
// conventions give them; a pod of another node is never watched.
func TestIdentities(t *testing.T) {
	f := mustFixture(t)
	c := f.c
	c.Namespace(t, "shop")
	c.Namespace(t, "bank")

	login := c.Deployment(t, "shop", "login", thisNode, map[string]string{"app": "login"}, "server", "sidecar")
	c.Run(t, login, "containerd", nil)
	db := c.StatefulSet(t, "bank", "db", thisNode, 0, map[string]string{"app.kubernetes.io/name": "ledger-db"}, "postgres")
	c.Run(t, db, "containerd", nil)
	report := c.CronJobPod(t, "shop", "report", thisNode, "job")
	c.Run(t, report, "cri-o", nil)
	debug := c.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "debug", Node: thisNode,
		Annotations: map[string]string{
			"resource.opentelemetry.io/service.name":      "toolbox",
			"resource.opentelemetry.io/service.namespace": "ops",
		},
		ContainerNames: []string{"shell"}, Images: []string{"busybox"}})
	c.Run(t, debug, "containerd", nil)
	remote := c.Deployment(t, "shop", "remote", otherNode, map[string]string{"app": "remote"}, "server")
	c.Run(t, remote, "containerd", nil)

	procs := map[string]uint32{
		"login/server":  pidOf(f.start(t, kubetest.SystemdContainerd, login, "server", sleeper...)),
		"login/sidecar": pidOf(f.start(t, kubetest.SystemdContainerd, login, "sidecar", sleeper...)),
		"db":            pidOf(f.start(t, kubetest.CgroupfsContainerd, db, "postgres", sleeper...)),
		"report":        pidOf(f.start(t, kubetest.SystemdCRIO, report, "job", sleeper...)),
		"debug":         pidOf(f.start(t, kubetest.SystemdContainerd, debug, "shell", sleeper...)),
		"remote":        pidOf(f.start(t, kubetest.SystemdContainerd, remote, "server", sleeper...)),
	}

	m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: f.agentREST(t)})
	took := waitPhase(t, m, k8smeta.PhaseSynced, 30*time.Second)
	// Owners resolve once per ReplicaSet and Job, just after the sync.
	waitFor(t, 10*time.Second, "owners resolved", func() bool {
		return m.Process(procs["login/server"]).Deployment != "" && m.Process(procs["report"]).CronJob != ""
	})
	t.Logf("watch synced in %s", took.Round(time.Millisecond))

	rs := login.OwnerReferences[0].Name
	job := report.OwnerReferences[0].Name
	want := map[string]struct {
		attrs   map[string]string
		service string
	}{
		"login/server": {map[string]string{
			"k8s.pod.uid": string(login.UID), "container.id": login.ContainerIDs["server"],
			"k8s.namespace.name": "shop", "k8s.pod.name": login.Name, "k8s.container.name": "server",
			"k8s.replicaset.name": rs, "k8s.deployment.name": "login",
			"container.image.name": "registry.test:5000/authprobe/server", "container.image.tags": "1.0",
			"service.namespace": "shop", "service.instance.id": "shop." + login.Name + ".server",
		}, "login"},
		"login/sidecar": {map[string]string{
			"k8s.pod.uid": string(login.UID), "container.id": login.ContainerIDs["sidecar"],
			"k8s.namespace.name": "shop", "k8s.pod.name": login.Name, "k8s.container.name": "sidecar",
			"k8s.replicaset.name": rs, "k8s.deployment.name": "login",
			"container.image.name": "registry.test:5000/authprobe/sidecar", "container.image.tags": "1.1",
			"service.namespace": "shop", "service.instance.id": "shop." + login.Name + ".sidecar",
		}, "login"},
		"db": {map[string]string{
			"k8s.pod.uid": string(db.UID), "container.id": db.ContainerIDs["postgres"],
			"k8s.namespace.name": "bank", "k8s.pod.name": "db-0", "k8s.container.name": "postgres",
			"k8s.statefulset.name": "db",
			"container.image.name": "registry.test:5000/authprobe/postgres", "container.image.tags": "1.0",
			"service.namespace": "bank", "service.instance.id": "bank.db-0.postgres",
		}, "ledger-db"}, // app.kubernetes.io/name before the workload
		"report": {map[string]string{
			"k8s.pod.uid": string(report.UID), "container.id": report.ContainerIDs["job"],
			"k8s.namespace.name": "shop", "k8s.pod.name": report.Name, "k8s.container.name": "job",
			"k8s.job.name": job, "k8s.cronjob.name": "report",
			"container.image.name": "registry.test:5000/authprobe/job", "container.image.tags": "1.0",
			"service.namespace": "shop", "service.instance.id": "shop." + report.Name + ".job",
		}, "report"},
		"debug": {map[string]string{
			"k8s.pod.uid": string(debug.UID), "container.id": debug.ContainerIDs["shell"],
			"k8s.namespace.name": "shop", "k8s.pod.name": "debug", "k8s.container.name": "shell",
			"container.image.name": "busybox",
			"service.namespace":    "ops", "service.instance.id": "shop.debug.shell",
		}, "toolbox"},
		// Another node's pod: only what its cgroup says, never its names.
		"remote": {map[string]string{
			"k8s.pod.uid": string(remote.UID), "container.id": remote.ContainerIDs["server"],
		}, ""},
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			id := m.Process(procs[name])
			require.Equal(t, w.attrs, attrs(id.Attributes()))
			require.Equal(t, w.service, id.ServiceName)
		})
	}
	runtimes := map[string]string{}
	for _, name := range []string{"login/server", "db", "report"} {
		runtimes[name] = m.Process(procs[name]).Runtime
	}
	require.Equal(t, map[string]string{"login/server": "containerd", "db": "", "report": "cri-o"}, runtimes,
		"runtime from the scope name; the cgroupfs driver's bare ID does not say")

	st := m.State()
	require.Equal(t, 4, st.Pods, "only this node's pods are in the watch")
	require.Equal(t, 2, st.Owners, "one ReplicaSet and one Job looked up")
	require.Zero(t, st.Errors)

	// What the agent's identity asked of the API: its pod lists and watches
	// all carry this node's field selector; nothing else was listed.
	for _, e := range c.Audit(t, agentUser) {
		if e.ObjectRef == nil || e.ObjectRef.Resource != "pods" {
			continue
		}
		u, err := url.Parse(e.RequestURI)
		require.NoError(t, err)
		require.Equal(t, "spec.nodeName="+thisNode, u.Query().Get("fieldSelector"), "pod %s without the node selector: %s", e.Verb, e.RequestURI)
		require.Empty(t, e.ObjectRef.Namespace, "pods of every namespace of the node")
	}
}

// TestRBACIsWhatTheAgentUses: with the shipped ClusterRole, every call the
// agent's identity makes succeeds, and the calls it makes are exactly the
// rules it is granted (each rule used, nothing else asked). Without the
// owner rules, owners go unresolved and the failures are counted.
func TestRBACIsWhatTheAgentUses(t *testing.T) {
	f := mustFixture(t)
	c := f.c
	c.Namespace(t, "shop")
	login := c.Deployment(t, "shop", "login", thisNode, map[string]string{"app": "login"}, "server")
	c.Run(t, login, "containerd", nil)
	report := c.CronJobPod(t, "shop", "report", thisNode, "job")
	c.Run(t, report, "containerd", nil)
	loginPID := pidOf(f.start(t, kubetest.SystemdContainerd, login, "server", sleeper...))
	reportPID := pidOf(f.start(t, kubetest.SystemdContainerd, report, "job", sleeper...))

	m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: f.agentREST(t)})
	waitPhase(t, m, k8smeta.PhaseSynced, 30*time.Second)
	waitFor(t, 10*time.Second, "owners resolved", func() bool {
		return m.Process(loginPID).Deployment == "login" && m.Process(reportPID).CronJob == "report"
	})
	// A pod change goes through the watch, not a list.
	c.Run(t, login, "containerd", map[string]string{"server": login.ContainerIDs["server"]})
	time.Sleep(500 * time.Millisecond)

	used := map[string]bool{}
	for _, e := range c.Audit(t, agentUser) {
		require.NotNil(t, e.ResponseStatus)
		require.Less(t, e.ResponseStatus.Code, 300, "%s %s answered %d", e.Verb, e.RequestURI, e.ResponseStatus.Code)
		require.NotNil(t, e.ObjectRef, "non-resource request %s", e.RequestURI)
		used[e.ObjectRef.APIGroup+"/"+e.ObjectRef.Resource+":"+e.Verb] = true
	}
	role, err := c.Client.RbacV1().ClusterRoles().Get(context.Background(), agentSA, metav1.GetOptions{})
	require.NoError(t, err)
	granted := map[string]bool{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted[g+"/"+res+":"+v] = true
				}
			}
		}
	}
	require.Equal(t, keys(granted), keys(used), "the ClusterRole grants exactly what the agent calls")
	t.Logf("agent calls: %v", keys(used))

	t.Run("without the owner rules", func(t *testing.T) {
		role.Rules = role.Rules[:1] // pods only
		_, err := c.Client.RbacV1().ClusterRoles().Update(context.Background(), role, metav1.UpdateOptions{})
		require.NoError(t, err)
		m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: f.agentREST(t), OwnerRetryBase: 50 * time.Millisecond})
		waitPhase(t, m, k8smeta.PhaseSynced, 30*time.Second)
		waitFor(t, 10*time.Second, "owner lookups refused", func() bool { return m.State().OwnerErrors >= 2 })
		id := m.Process(loginPID)
		require.Equal(t, login.OwnerReferences[0].Name, id.ReplicaSet, "the pod's own owner is known")
		require.Empty(t, id.Deployment, "the ReplicaSet's owner needs replicasets get")
		require.Equal(t, id.ReplicaSet, id.ServiceName, "service.name falls back to the ReplicaSet")
	})
}

// TestPodChangesAreSignalled: a pod that appears, gets its containers'
// IDs, changes labels or goes is signalled on Changes at once; the agent
// re-evaluates its processes on that signal.
func TestPodChangesAreSignalled(t *testing.T) {
	f := mustFixture(t)
	c := f.c
	c.Namespace(t, "shop")
	m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: f.agentREST(t), DeletedTTL: time.Second, CollectEvery: 200 * time.Millisecond})
	waitPhase(t, m, k8smeta.PhaseSynced, 30*time.Second)
	drain(m)

	// Created, not yet running: its processes are known by pod UID.
	created := time.Now()
	p := c.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "late", Node: thisNode,
		Labels: map[string]string{"app": "late"}, ContainerNames: []string{"server"}, Images: []string{"late:1"}})
	signal := waitSignal(t, m, "pod created")
	t.Logf("pod create → Changes: %s", signal.Sub(created).Round(time.Microsecond))
	require.Less(t, signal.Sub(created), time.Second)

	id := kubetest.ContainerID()
	cmd := f.start(t, kubetest.SystemdContainerd, &kubetest.Pod{Pod: p.Pod, ContainerIDs: map[string]string{"server": id}}, "server", sleeper...)
	got := m.Process(pidOf(cmd))
	require.True(t, got.Known)
	require.Equal(t, "late", got.PodName)
	require.Empty(t, got.ContainerName, "not in the pod's status yet")
	sel := k8smeta.Selector{Namespace: "shop", Container: "server"}
	require.False(t, sel.Match(got))

	// The kubelet reports the container: the container is named.
	c.Run(t, p, "containerd", map[string]string{"server": id})
	waitSignal(t, m, "status patched")
	got = m.Process(pidOf(cmd))
	require.Equal(t, "server", got.ContainerName)
	require.True(t, sel.Match(got))

	// A label change a selector can see.
	p.Labels["tier"] = "web"
	upd, err := c.Client.CoreV1().Pods("shop").Update(context.Background(), p.Pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	p.Pod = upd
	waitSignal(t, m, "labels changed")
	require.Equal(t, "web", m.Process(pidOf(cmd)).Labels["tier"])

	// Deleted and its process gone: still known for DeletedTTL (spans of
	// its last requests), then forgotten; memory follows the node's pods.
	c.DeletePod(t, p)
	waitSignal(t, m, "pod deleted")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.True(t, m.Process(pidOf(cmd)).Known, "a deleted pod's last spans still name it")
	waitFor(t, 5*time.Second, "deleted pod forgotten", func() bool {
		s := m.State()
		return s.Pods == 0 && s.Deleted == 0
	})
	require.False(t, m.Process(pidOf(cmd)).Known)
	require.Equal(t, string(p.UID), m.Process(pidOf(cmd)).PodUID, "the cgroup answer outlives the process")
}

// TestAPIServerAway: the watch starts without an API server (identities
// from cgroups), syncs when it comes, keeps the pods through an outage,
// and resyncs after it — seeing what changed meanwhile.
func TestAPIServerAway(t *testing.T) {
	f := mustFixture(t)
	c := f.c
	c.Namespace(t, "shop")
	a := c.Deployment(t, "shop", "login", thisNode, map[string]string{"app": "login"}, "server")
	c.Run(t, a, "containerd", nil)
	aPID := pidOf(f.start(t, kubetest.SystemdContainerd, a, "server", sleeper...))
	rc := f.agentREST(t)

	c.StopAPIServer()
	m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: rc})
	waitPhase(t, m, k8smeta.PhaseDisconnected, 10*time.Second)
	id := m.Process(aPID)
	require.False(t, id.Known)
	require.Equal(t, map[string]string{"k8s.pod.uid": string(a.UID), "container.id": a.ContainerIDs["server"]}, attrs(id.Attributes()),
		"without the API, what cgroups tell")
	require.NotEmpty(t, m.State().LastError)

	c.RestartAPIServer()
	took := waitPhase(t, m, k8smeta.PhaseSynced, 60*time.Second)
	t.Logf("started without the API: synced %s after the API server was ready (its start took %s)",
		took.Round(time.Millisecond), c.StartTime.Round(time.Millisecond))
	waitFor(t, 10*time.Second, "deployment resolved", func() bool { return m.Process(aPID).Deployment == "login" })

	// An outage mid-run: the pods stay known, the state says so.
	c.StopAPIServer()
	outage := waitPhase(t, m, k8smeta.PhaseDisconnected, 30*time.Second)
	t.Logf("outage seen after %s", outage.Round(time.Millisecond))
	require.True(t, m.Process(aPID).Known, "pods are kept through an outage")
	require.Equal(t, 1, m.State().Pods)

	c.RestartAPIServer()
	drain(m)
	b := c.Deployment(t, "shop", "cart", thisNode, map[string]string{"app": "cart"}, "server")
	c.Run(t, b, "containerd", nil)
	bPID := pidOf(f.start(t, kubetest.SystemdContainerd, b, "server", sleeper...))
	resync := waitFor(t, 60*time.Second, "new pod after the outage", func() bool { return m.Process(bPID).Deployment == "cart" })
	t.Logf("pod created after the restart identified %s after its creation", resync.Round(time.Millisecond))
	s := m.State()
	require.Equal(t, k8smeta.PhaseSynced, s.Phase)
	require.GreaterOrEqual(t, s.Reconnects, uint64(2))
	require.Equal(t, 2, s.Pods)
	t.Logf("state: %+v", s)
}

func drain(m *k8smeta.Meta) {
	for {
		select {
		case <-m.Changes():
		default:
			return
		}
	}
}

func waitSignal(t *testing.T, m *k8smeta.Meta, what string) time.Time {
	t.Helper()
	select {
	case <-m.Changes():
		return time.Now()
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no change signalled in 5s", what)
		return time.Time{}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestWatchMemoryFollowsThisNode: with as many pods on another node as on
// this one, the watch holds this node's only, stripped; the heap it takes
// is logged per pod (a measurement, not asserted).
func TestWatchMemoryFollowsThisNode(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 800 pods")
	}
	c := mustCluster(t)
	c.Namespace(t, "shop")
	const n = 400
	lastApplied := strings.Repeat("x", 2048) // what kubectl apply leaves on every object
	start := time.Now()
	for i := range 2 * n {
		node := thisNode
		if i%2 == 1 {
			node = otherNode
		}
		c.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: fmt.Sprintf("p-%d", i), Node: node,
			Labels:         map[string]string{"app": "shop", "pod-template-hash": "abcde", "version": "v1"},
			Annotations:    map[string]string{"kubectl.kubernetes.io/last-applied-configuration": lastApplied},
			ContainerNames: []string{"server", "sidecar"}, Images: []string{"shop/server:1", "envoy:1.30"}})
	}
	t.Logf("created %d pods in %s", 2*n, time.Since(start).Round(time.Millisecond))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := startMeta(t, k8smeta.Config{NodeName: thisNode, REST: agentREST(t, c)})
	took := waitPhase(t, m, k8smeta.PhaseSynced, 60*time.Second)
	waitFor(t, 10*time.Second, "all of this node's pods", func() bool { return m.State().Pods == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, n, m.State().Pods)
	t.Logf("synced %d pods in %s; heap in use grew %d KiB (%d bytes per pod, client included)",
		n, took.Round(time.Millisecond), (int64(after.HeapInuse)-int64(before.HeapInuse))/1024,
		(int64(after.HeapInuse)-int64(before.HeapInuse))/n)
}

package k8smeta

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

const (
	cid  = "3f4e2b1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
	cid2 = "0000000000000000000000000000000000000000000000000000000000000abc"
	uid  = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
	uidu = "1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d"
)

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name, cgroup string
		want         Container
	}{
		{"systemd v2 containerd",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope\n",
			Container{uid, cid, "containerd"}},
		{"systemd guaranteed qos",
			"0::/kubepods.slice/kubepods-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope\n",
			Container{uid, cid, "containerd"}},
		{"cgroupfs v2",
			"0::/kubepods/besteffort/pod" + uid + "/" + cid + "\n",
			Container{uid, cid, ""}},
		{"cgroupfs v1 controllers",
			"12:memory:/kubepods/besteffort/pod" + uid + "/" + cid + "\n11:cpu:/kubepods/besteffort/pod" + uid + "/" + cid + "\n",
			Container{uid, cid, ""}},
		{"crio",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidu + ".slice/crio-" + cid + ".scope",
			Container{uid, cid, "cri-o"}},
		{"crio conmon is not the container",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidu + ".slice/crio-conmon-" + cid + ".scope",
			Container{PodUID: uid}},
		{"docker via cri-dockerd",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidu + ".slice/docker-" + cid + ".scope",
			Container{uid, cid, "docker"}},
		{"hybrid: unified line wins",
			"4:memory:/user.slice\n0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope\n",
			Container{uid, cid, "containerd"}},
		{"cgroup namespace: relative path",
			"0::/../../kubepods-burstable-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope\n",
			Container{uid, cid, "containerd"}},
		{"systemd inside the container",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope/init.scope\n",
			Container{uid, cid, "containerd"}},
		{"kind node",
			"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidu + ".slice/cri-containerd-" + cid + ".scope\n",
			Container{uid, cid, "containerd"}},
		{"pod level only", "0::/kubepods/burstable/pod" + uid + "\n", Container{PodUID: uid}},
		{"not kubernetes", "0::/user.slice/user-0.slice/session-1.scope\n", Container{}},
		{"docker outside kubernetes", "0::/system.slice/docker-" + cid + ".scope\n", Container{}},
		{"kubepods without a pod", "0::/kubepods.slice/kubepods-burstable.slice\n", Container{}},
		{"id not below the pod", "0::/" + cid + "/kubepods/pod" + uid + "\n", Container{PodUID: uid}},
		{"garbage", "\x00\xff::::\n", Container{}},
		{"empty", "", Container{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, ParseCgroup([]byte(tt.cgroup)))
		})
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods/pod" + uid + "/" + cid))
	f.Add([]byte("0::/kubepods.slice/kubepods-pod" + uidu + ".slice/crio-" + cid + ".scope"))
	f.Add([]byte("12:memory:/kubepods"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := ParseCgroup(data)
		if c.ContainerID != "" && (c.PodUID == "" || !isContainerID(c.ContainerID)) {
			t.Fatalf("container %q without a pod or not 64 hex: %+v", c.ContainerID, c)
		}
	})
}

func TestParseStartTime(t *testing.T) {
	// Field 2 may hold spaces and parentheses.
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 98 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 0\n"
	n, ok := parseStartTime([]byte(stat))
	require.True(t, ok)
	require.Equal(t, uint64(987654), n)
	_, ok = parseStartTime([]byte("1 (x) S 1"))
	require.False(t, ok)
}

func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) { parseStartTime(data) })
}

// mustProc writes a fake /proc/<pid> with a cgroup and a start time.
func mustProc(t *testing.T, root string, pid int, start uint64, cgroup string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	stat := fmt.Sprintf("%d (server) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, start)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
}

func TestProcessCgroupsWithoutAPI(t *testing.T) {
	root := t.TempDir()
	mustProc(t, root, 42, 100, "0::/kubepods/pod"+uid+"/"+cid+"\n")
	m, err := New(Config{ProcRoot: root})
	require.NoError(t, err)
	id := m.Process(42)
	require.Equal(t, Identity{Container: Container{PodUID: uid, ContainerID: cid}}, id)
	require.Equal(t, []attribute.KeyValue{attribute.String("k8s.pod.uid", uid), attribute.String("container.id", cid)}, id.Attributes())
	require.Equal(t, PhaseOff, m.State().Phase)

	t.Run("exited process keeps its answer", func(t *testing.T) {
		require.NoError(t, os.RemoveAll(filepath.Join(root, "42")))
		require.Equal(t, cid, m.Process(42).ContainerID)
	})
	t.Run("reused pid is read again", func(t *testing.T) {
		mustProc(t, root, 42, 200, "0::/user.slice\n")
		require.Equal(t, Container{}, m.Process(42).Container)
	})
	t.Run("unknown process", func(t *testing.T) {
		require.Equal(t, Identity{}, m.Process(43))
	})
	t.Run("this test is in no pod", func(t *testing.T) {
		real, err := New(Config{})
		require.NoError(t, err)
		require.False(t, real.Process(uint32(os.Getpid())).InPod())
	})
	t.Run("bounded", func(t *testing.T) {
		small, err := New(Config{ProcRoot: root, MaxProcesses: 3})
		require.NoError(t, err)
		for pid := 100; pid < 110; pid++ {
			mustProc(t, root, pid, 1, "0::/kubepods/pod"+uid+"/"+cid+"\n")
			small.Process(uint32(pid))
		}
		require.Equal(t, 3, small.ProcessesCached())
	})
}

func TestNewNeedsNodeForAPI(t *testing.T) {
	_, err := New(Config{REST: &rest.Config{Host: "https://127.0.0.1:1"}})
	require.ErrorContains(t, err, "node name")
}

// storeMeta is a Meta whose pod store is filled by the test instead of a
// watch: the derivation of identities, without an API server (the tests of
// test/k8s run it against one).
func storeMeta(t *testing.T, pods ...*corev1.Pod) *Meta {
	t.Helper()
	m, err := New(Config{NodeName: "node-a", REST: &rest.Config{Host: "https://127.0.0.1:1"}})
	require.NoError(t, err)
	for _, p := range pods {
		require.NoError(t, m.informer.GetIndexer().Add(strip(p)))
	}
	return m
}

func pod(name string, mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(uid),
			Labels:      map[string]string{"app": "login"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{
			{Name: "login", Image: "registry.example:5000/shop/login:1.4.2@sha256:0123"},
			{Name: "sidecar", Image: "envoy"},
		}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "login", ContainerID: "containerd://" + cid, Image: "registry.example:5000/shop/login:1.4.2"},
			{Name: "sidecar", ContainerID: "containerd://" + cid2},
		}},
	}
	if mod != nil {
		mod(p)
	}
	return p
}

func controller(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "Other", Name: "not-the-controller", UID: "u0"},
		{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("owner-" + name), Controller: &yes},
	}
}

func TestIdentify(t *testing.T) {
	c := Container{PodUID: uid, ContainerID: cid, Runtime: "containerd"}
	tests := []struct {
		name  string
		pod   *corev1.Pod
		c     Container
		owner string // resolved parent of the ReplicaSet or Job
		want  []attribute.KeyValue
		svc   string
	}{
		{"deployment through its replicaset", pod("login-7d9f-abcde", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindReplicaSet, "login-7d9f")
		}), c, "login", []attribute.KeyValue{
			attribute.String("k8s.pod.uid", uid), attribute.String("container.id", cid),
			attribute.String("k8s.namespace.name", "shop"), attribute.String("k8s.pod.name", "login-7d9f-abcde"),
			attribute.String("k8s.container.name", "login"),
			attribute.String("k8s.replicaset.name", "login-7d9f"), attribute.String("k8s.deployment.name", "login"),
			attribute.String("container.image.name", "registry.example:5000/shop/login"),
			attribute.StringSlice("container.image.tags", []string{"1.4.2"}),
			attribute.String("service.namespace", "shop"), attribute.String("service.instance.id", "shop.login-7d9f-abcde.login"),
		}, "login"},
		{"replicaset not resolved yet", pod("login-7d9f-abcde", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindReplicaSet, "login-7d9f")
		}), c, "", nil, "login-7d9f"},
		{"statefulset, annotations win", pod("db-0", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindStatefulSet, "db")
			p.Annotations["resource.opentelemetry.io/service.name"] = "accounts-db"
			p.Annotations["resource.opentelemetry.io/service.namespace"] = "accounts"
			p.Annotations["resource.opentelemetry.io/service.instance.id"] = "db-primary"
			p.Labels[labelAppName] = "postgres"
		}), c, "", []attribute.KeyValue{
			attribute.String("k8s.pod.uid", uid), attribute.String("container.id", cid),
			attribute.String("k8s.namespace.name", "shop"), attribute.String("k8s.pod.name", "db-0"),
			attribute.String("k8s.container.name", "login"), attribute.String("k8s.statefulset.name", "db"),
			attribute.String("container.image.name", "registry.example:5000/shop/login"),
			attribute.StringSlice("container.image.tags", []string{"1.4.2"}),
			attribute.String("service.namespace", "accounts"), attribute.String("service.instance.id", "db-primary"),
		}, "accounts-db"},
		{"app.kubernetes.io/name before the workload", pod("agent-x", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindDaemonSet, "agent")
			p.Labels[labelAppName] = "node-agent"
		}), c, "", nil, "node-agent"},
		{"cronjob through its job", pod("report-2901-x", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindJob, "report-2901")
		}), c, "report", nil, "report"},
		{"bare job", pod("once-x", func(p *corev1.Pod) {
			p.OwnerReferences = controller(KindJob, "once")
		}), c, "", nil, "once"},
		{"bare pod: its name", pod("debug", nil), c, "", nil, "debug"},
		{"sidecar container", pod("debug", nil), Container{PodUID: uid, ContainerID: cid2}, "", []attribute.KeyValue{
			attribute.String("k8s.pod.uid", uid), attribute.String("container.id", cid2),
			attribute.String("k8s.namespace.name", "shop"), attribute.String("k8s.pod.name", "debug"),
			attribute.String("k8s.container.name", "sidecar"), attribute.String("container.image.name", "envoy"),
			attribute.String("service.namespace", "shop"), attribute.String("service.instance.id", "shop.debug.sidecar"),
		}, "debug"},
		{"container not in the status yet", pod("debug", nil), Container{PodUID: uid, ContainerID: "f" + cid[1:]}, "", []attribute.KeyValue{
			attribute.String("k8s.pod.uid", uid), attribute.String("container.id", "f"+cid[1:]),
			attribute.String("k8s.namespace.name", "shop"), attribute.String("k8s.pod.name", "debug"),
			attribute.String("service.namespace", "shop"),
		}, "debug"},
		{"pod of another node is not known", nil, c, "", []attribute.KeyValue{
			attribute.String("k8s.pod.uid", uid), attribute.String("container.id", cid),
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m *Meta
			if tt.pod != nil {
				m = storeMeta(t, tt.pod)
				if ref, ok := owner(strip(tt.pod)); ok && tt.owner != "" {
					k := keyOf(tt.pod.Namespace, ref)
					m.owners.want(k)
					m.owners.set(k, tt.owner)
				}
			} else {
				m = storeMeta(t)
			}
			id := m.Identify(tt.c)
			if tt.want != nil {
				require.Equal(t, tt.want, id.Attributes())
			}
			require.Equal(t, tt.svc, id.ServiceName)
		})
	}
}

func TestStripKeepsOnlyWhatIdentitiesUse(t *testing.T) {
	p := pod("login-x", func(p *corev1.Pod) {
		p.OwnerReferences = controller(KindReplicaSet, "login-7d9f")
		p.Annotations["resource.opentelemetry.io/service.name"] = "login"
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", Value: "secret"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "v"}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}}
	})
	s := strip(p)
	require.Equal(t, map[string]string{"resource.opentelemetry.io/service.name": "login"}, s.Annotations)
	require.Len(t, s.OwnerReferences, 1)
	require.Equal(t, "login-7d9f", s.OwnerReferences[0].Name)
	require.Nil(t, s.ManagedFields)
	require.Nil(t, s.Spec.Containers[0].Env, "container env (secrets!) is not kept")
	require.Nil(t, s.Spec.Volumes)
	require.Nil(t, s.Status.Conditions)
	require.Equal(t, []string{cid, cid2}, containerIDs(s))
	q := strip(pod("login-x", func(q *corev1.Pod) {
		q.OwnerReferences = controller(KindReplicaSet, "login-7d9f")
		q.Annotations["resource.opentelemetry.io/service.name"] = "login"
		q.ResourceVersion = "99"
		q.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled}}
	}))
	require.True(t, samePod(s, q), "a change identities cannot see is no change")
	q.Labels = map[string]string{"app": "other"}
	require.False(t, samePod(s, q))
}

func TestSplitImage(t *testing.T) {
	for _, tt := range []struct{ ref, name, tag string }{
		{"nginx", "nginx", ""},
		{"nginx:1.27", "nginx", "1.27"},
		{"docker.io/library/python:3.11-slim", "docker.io/library/python", "3.11-slim"},
		{"registry:5000/team/app", "registry:5000/team/app", ""},
		{"registry:5000/team/app:v2@sha256:abcd", "registry:5000/team/app", "v2"},
		{"app@sha256:abcd", "app", ""},
		{"", "", ""},
	} {
		name, tag := splitImage(tt.ref)
		require.Equal(t, [2]string{tt.name, tt.tag}, [2]string{name, tag}, tt.ref)
	}
}

func TestSelector(t *testing.T) {
	id := Identity{
		Container: Container{PodUID: uid, ContainerID: cid}, Known: true,
		Namespace: "shop", PodName: "login-7d9f-abcde", Labels: map[string]string{"app": "login", "tier": "web"},
		ContainerName: "login", ReplicaSet: "login-7d9f", Deployment: "login",
	}
	tests := []struct {
		name string
		s    Selector
		id   Identity
		want bool
	}{
		{"empty matches anything", Selector{}, Identity{}, true},
		{"namespace", Selector{Namespace: "shop"}, id, true},
		{"other namespace", Selector{Namespace: "bank"}, id, false},
		{"labels subset", Selector{PodLabels: map[string]string{"app": "login"}}, id, true},
		{"label value differs", Selector{PodLabels: map[string]string{"app": "cart"}}, id, false},
		{"label missing", Selector{PodLabels: map[string]string{"team": "x"}}, id, false},
		{"deployment", Selector{Workload: Workload{KindDeployment, "login"}}, id, true},
		{"its replicaset", Selector{Workload: Workload{KindReplicaSet, "login-7d9f"}}, id, true},
		{"kind must agree", Selector{Workload: Workload{KindStatefulSet, "login"}}, id, false},
		{"container", Selector{Namespace: "shop", Container: "login"}, id, true},
		{"other container", Selector{Container: "sidecar"}, id, false},
		{"all together", Selector{Namespace: "shop", PodLabels: map[string]string{"tier": "web"}, Workload: Workload{KindDeployment, "login"}, Container: "login"}, id, true},
		{"unknown pod never matches a set selector", Selector{Namespace: "shop"}, Identity{Container: id.Container}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.s.Match(tt.id))
		})
	}
}

func TestNode(t *testing.T) {
	env := map[string]string{"NODE_NAME": "node-7"}
	require.Equal(t, []attribute.KeyValue{attribute.String("k8s.node.name", "node-7")}, Node(func(k string) string { return env[k] }))
	require.Nil(t, Node(func(string) string { return "" }))
}

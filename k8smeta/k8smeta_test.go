package k8smeta

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
)

const cid = "3f4e2b1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"

func TestFromCgroup(t *testing.T) {
	tests := []struct {
		name, cgroup string
		want         []attribute.KeyValue
	}{
		{"systemd v2 containerd",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/cri-containerd-" + cid + ".scope\n",
			[]attribute.KeyValue{attribute.String("k8s.pod.uid", "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"), attribute.String("container.id", cid)}},
		{"cgroupfs v1",
			"12:memory:/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/" + cid + "\n11:cpu:/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/" + cid + "\n",
			[]attribute.KeyValue{attribute.String("k8s.pod.uid", "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"), attribute.String("container.id", cid)}},
		{"crio", "0::/kubepods.slice/kubepods-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/crio-" + cid + ".scope",
			[]attribute.KeyValue{attribute.String("k8s.pod.uid", "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"), attribute.String("container.id", cid)}},
		{"not kubernetes", "0::/user.slice/user-0.slice/session-1.scope\n", nil},
		{"docker outside kubernetes", "0::/system.slice/docker-" + cid + ".scope\n", nil},
		{"garbage", "\x00\xff::::\n", nil},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, FromCgroup([]byte(tt.cgroup)))
		})
	}
}

func TestProcess(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "42"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "42", "cgroup"),
		[]byte("0::/kubepods/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/"+cid+"\n"), 0o644))
	r := New(root)
	require.Len(t, r.Process(42), 2)
	require.Nil(t, r.Process(43), "a process that is gone has no attributes")
	// This test's own process is not in a pod.
	require.Nil(t, New("/proc").Process(uint32(os.Getpid())))
}

func TestNode(t *testing.T) {
	env := map[string]string{"NODE_NAME": "node-7"}
	require.Equal(t, []attribute.KeyValue{attribute.String("k8s.node.name", "node-7")}, Node(func(k string) string { return env[k] }))
	require.Nil(t, Node(func(string) string { return "" }))
}

func FuzzFromCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/" + cid))
	f.Add([]byte("12:memory:/kubepods"))
	f.Fuzz(func(t *testing.T, data []byte) { _ = FromCgroup(data) })
}

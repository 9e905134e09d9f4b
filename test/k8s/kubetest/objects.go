package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pod is a pod the test created, with the container IDs it patched into
// its status (what the kubelet would report).
type Pod struct {
	*corev1.Pod
	// ContainerIDs maps container name to the 64-hex runtime ID.
	ContainerIDs map[string]string
}

// PodSpec describes a test pod: where it runs and what it is made of.
type PodSpec struct {
	Namespace, Name, Node string
	Labels, Annotations   map[string]string
	// Containers maps name to image, in the order of ContainerNames.
	ContainerNames []string
	Images         []string
	Owner          *metav1.OwnerReference
}

// ContainerID makes a random 64-hex container ID.
func ContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Namespace creates a namespace.
func (c *Cluster) Namespace(tb testing.TB, name string) {
	tb.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
}

// CreatePod creates the pod bound to its node (as the scheduler would).
// Its status has no container IDs until Run patches them in.
func (c *Cluster) CreatePod(tb testing.TB, s PodSpec) *Pod {
	tb.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations},
		Spec:       corev1.PodSpec{NodeName: s.Node},
	}
	if s.Owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*s.Owner}
	}
	for i, name := range s.ContainerNames {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: s.Images[i]})
	}
	created, err := c.Client.CoreV1().Pods(s.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create pod %s/%s: %v", s.Namespace, s.Name, err)
	}
	return &Pod{Pod: created, ContainerIDs: map[string]string{}}
}

// Run patches the pod's status as a kubelet does once its containers
// started: each container running with a "<runtime>://<id>" container ID
// (runtime "containerd" or "cri-o"). IDs not given are made up.
func (c *Cluster) Run(tb testing.TB, p *Pod, runtime string, ids map[string]string) *Pod {
	tb.Helper()
	now := metav1.NewTime(time.Now())
	st := p.Status.DeepCopy()
	st.Phase = corev1.PodRunning
	st.ContainerStatuses = nil
	for _, ct := range p.Spec.Containers {
		id := ids[ct.Name]
		if id == "" {
			id = ContainerID()
		}
		p.ContainerIDs[ct.Name] = id
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, ImageID: ct.Image, Ready: true, Started: ptr(true),
			ContainerID: runtime + "://" + id,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	upd := p.Pod.DeepCopy()
	upd.Status = *st
	out, err := c.Client.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), upd, metav1.UpdateOptions{})
	if err != nil {
		tb.Fatalf("update status of pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	p.Pod = out
	return p
}

// DeletePod deletes the pod at once (no kubelet is there to finish it).
func (c *Cluster) DeletePod(tb testing.TB, p *Pod) {
	tb.Helper()
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name,
		metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		tb.Fatalf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// Deployment creates a Deployment, its ReplicaSet (named with a
// pod-template-hash, owned by the Deployment) and one pod of it on node,
// as the controllers would; it returns the pod.
func (c *Cluster) Deployment(tb testing.TB, ns, name, node string, labels map[string]string, containers ...string) *Pod {
	tb.Helper()
	ctx := context.Background()
	sel := &metav1.LabelSelector{MatchLabels: labels}
	tmpl := podTemplate(labels, containers)
	d, err := c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       appsv1.DeploymentSpec{Selector: sel, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	hash := randHex(5)
	rsLabels := with(labels, "pod-template-hash", hash)
	rsTmpl := podTemplate(rsLabels, containers)
	rs, err := c.Client.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + hash, Namespace: ns, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "Deployment", d.Name, d.UID)}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: rsLabels}, Template: rsTmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create replicaset %s/%s: %v", ns, rs.Name, err)
	}
	return c.CreatePod(tb, PodSpec{Namespace: ns, Name: rs.Name + "-" + randHex(5), Node: node, Labels: rsLabels,
		ContainerNames: containers, Images: images(containers),
		Owner: ptr(controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID))})
}

// StatefulSet creates a StatefulSet and its pod <name>-<ordinal> on node.
func (c *Cluster) StatefulSet(tb testing.TB, ns, name, node string, ordinal int, labels map[string]string, containers ...string) *Pod {
	tb.Helper()
	s, err := c.Client.AppsV1().StatefulSets(ns).Create(context.Background(), &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, containers), ServiceName: name},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create statefulset %s/%s: %v", ns, name, err)
	}
	return c.CreatePod(tb, PodSpec{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, ordinal), Node: node, Labels: labels,
		ContainerNames: containers, Images: images(containers),
		Owner: ptr(controllerRef("apps/v1", "StatefulSet", s.Name, s.UID))})
}

// CronJobPod creates a CronJob, one Job of it and the Job's pod on node.
func (c *Cluster) CronJobPod(tb testing.TB, ns, name, node string, containers ...string) *Pod {
	tb.Helper()
	ctx := context.Background()
	labels := map[string]string{"job": name}
	tmpl := podTemplate(labels, containers)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	cj, err := c.Client.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *", JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: tmpl}}},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create cronjob %s/%s: %v", ns, name, err)
	}
	job, err := c.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-29012345", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{controllerRef("batch/v1", "CronJob", cj.Name, cj.UID)}},
		Spec: batchv1.JobSpec{Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create job %s/%s: %v", ns, name, err)
	}
	return c.CreatePod(tb, PodSpec{Namespace: ns, Name: job.Name + "-" + randHex(5), Node: node,
		Labels: job.Spec.Template.Labels, ContainerNames: containers, Images: images(containers),
		Owner: ptr(controllerRef("batch/v1", "Job", job.Name, job.UID))})
}

func podTemplate(labels map[string]string, containers []string) corev1.PodTemplateSpec {
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}
	for i, name := range containers {
		t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: name, Image: images(containers)[i]})
	}
	return t
}

// images names each container's image after it, tagged, on a registry
// with a port (the attribute derivation must not take the port for a tag).
func images(containers []string) []string {
	out := make([]string, len(containers))
	for i, c := range containers {
		out[i] = "registry.test:5000/authprobe/" + c + ":1." + fmt.Sprint(i)
	}
	return out
}

func controllerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid,
		Controller: ptr(true), BlockOwnerDeletion: ptr(true)}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func ptr[T any](v T) *T { return &v }

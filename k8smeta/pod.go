package k8smeta

import (
	"hash/fnv"
	"reflect"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations under this prefix set resource attributes of the pod's
// telemetry (OpenTelemetry's Kubernetes conventions); only they are kept.
const resourceAnnotationPrefix = "resource.opentelemetry.io/"

// Well-known labels the OpenTelemetry Operator reads.
const labelAppName = "app.kubernetes.io/name"

// Workload kinds, as in ownerReferences and in selectors.
const (
	KindDeployment  = "Deployment"
	KindReplicaSet  = "ReplicaSet"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

// WorkloadKinds are the kinds a selector may name.
var WorkloadKinds = []string{KindDeployment, KindReplicaSet, KindStatefulSet, KindDaemonSet, KindJob, KindCronJob}

// Identity is what is known of one process: its cgroup always, its pod
// and container when the API told.
type Identity struct {
	Container
	// Known: the pod is in the node's watch (or was deleted moments ago).
	Known     bool
	Namespace string
	PodName   string
	NodeName  string
	// Labels are the pod's labels; shared, not to be modified.
	Labels map[string]string
	// ContainerName and Image are "" until the pod's status lists the
	// cgroup's container ID.
	ContainerName string
	Image         string
	// The owning workloads, from the pod's controller reference and, for
	// ReplicaSets and Jobs, theirs.
	ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob string

	// Service attributes, resolved as the OpenTelemetry Operator does.
	ServiceName, ServiceNamespace, ServiceInstanceID string
}

// Workload is a kind and name, such as Deployment/login.
type Workload struct{ Kind, Name string }

// Workloads lists the owners from the nearest up.
func (id Identity) Workloads() []Workload {
	var out []Workload
	for _, w := range []Workload{
		{KindReplicaSet, id.ReplicaSet}, {KindDeployment, id.Deployment},
		{KindStatefulSet, id.StatefulSet}, {KindDaemonSet, id.DaemonSet},
		{KindJob, id.Job}, {KindCronJob, id.CronJob},
	} {
		if w.Name != "" {
			out = append(out, w)
		}
	}
	return out
}

// Attributes are the resource attributes of the process's spans, named as
// OpenTelemetry's Kubernetes and container conventions name them.
// service.name is not among them: the agent decides it (a configured
// override wins) and passes ServiceName on. k8s.node.name comes from the
// agent's own node for every process.
func (id Identity) Attributes() []attribute.KeyValue {
	var out []attribute.KeyValue
	add := func(k, v string) {
		if v != "" {
			out = append(out, attribute.String(k, v))
		}
	}
	add("k8s.pod.uid", id.PodUID)
	add("container.id", id.ContainerID)
	if !id.Known {
		return out
	}
	add("k8s.namespace.name", id.Namespace)
	add("k8s.pod.name", id.PodName)
	add("k8s.container.name", id.ContainerName)
	add("k8s.replicaset.name", id.ReplicaSet)
	add("k8s.deployment.name", id.Deployment)
	add("k8s.statefulset.name", id.StatefulSet)
	add("k8s.daemonset.name", id.DaemonSet)
	add("k8s.job.name", id.Job)
	add("k8s.cronjob.name", id.CronJob)
	if name, tag := splitImage(id.Image); name != "" {
		add("container.image.name", name)
		if tag != "" {
			out = append(out, attribute.StringSlice("container.image.tags", []string{tag}))
		}
	}
	add("service.namespace", id.ServiceNamespace)
	add("service.instance.id", id.ServiceInstanceID)
	return out
}

// Rev changes whenever what the process's spans say about it changes: an
// exporter that caches a resource per process rebuilds it on a new Rev.
func (id Identity) Rev() uint64 {
	h := fnv.New64a()
	for _, kv := range id.Attributes() {
		h.Write([]byte(kv.Key))
		h.Write([]byte{0})
		h.Write([]byte(kv.Value.Emit()))
		h.Write([]byte{0})
	}
	h.Write([]byte(id.ServiceName))
	return h.Sum64()
}

// splitImage cuts an image reference into its name and tag, dropping a
// digest: "reg:5000/shop/login:1.2@sha256:..." is "reg:5000/shop/login",
// "1.2". A colon before the last slash is a registry port, not a tag.
func splitImage(ref string) (name, tag string) {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if i := strings.LastIndexByte(ref, ':'); i > slash {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// strip keeps of a pod what identities need, so that the watch's memory
// is a few hundred bytes per pod of this node: no managed fields, specs,
// conditions or unrelated annotations.
func strip(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
			Labels:          p.Labels,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName},
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, resourceAnnotationPrefix) {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		out.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Controller: ref.Controller,
		}}
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.EphemeralContainers {
		out.Spec.EphemeralContainers = append(out.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image},
		})
	}
	keep := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		var s []corev1.ContainerStatus
		for _, cs := range in {
			s = append(s, corev1.ContainerStatus{Name: cs.Name, ContainerID: cs.ContainerID, Image: cs.Image})
		}
		return s
	}
	out.Status.ContainerStatuses = keep(p.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = keep(p.Status.InitContainerStatuses)
	out.Status.EphemeralContainerStatuses = keep(p.Status.EphemeralContainerStatuses)
	return out
}

// samePod tells whether two stripped pods give the same identities.
func samePod(a, b *corev1.Pod) bool {
	ac, bc := *a, *b
	ac.ResourceVersion, bc.ResourceVersion = "", ""
	return reflect.DeepEqual(&ac, &bc)
}

// containerIDs are the runtime IDs of the pod's containers, without the
// "containerd://" style scheme.
func containerIDs(p *corev1.Pod) []string {
	var ids []string
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if id := bareID(cs.ContainerID); id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// bareID drops the runtime scheme of a status container ID.
func bareID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}

// container finds the container of p whose status carries id.
func container(p *corev1.Pod, id string) (name, image string) {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if id != "" && bareID(cs.ContainerID) == id {
				return cs.Name, specImage(p, cs.Name, cs.Image)
			}
		}
	}
	return "", ""
}

// specImage is the image as the pod spec names it (what the user wrote,
// as the Collector's k8sattributes processor reports it), else the
// status's.
func specImage(p *corev1.Pod, name, status string) string {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range p.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image
		}
	}
	return status
}

// owner is the controller reference of a stripped pod.
func owner(p *corev1.Pod) (metav1.OwnerReference, bool) {
	if len(p.OwnerReferences) == 0 {
		return metav1.OwnerReference{}, false
	}
	return p.OwnerReferences[0], true
}

// resolveService sets the service attributes the way the OpenTelemetry
// Operator does for the pods it instruments (with labels enabled) and the
// semantic conventions' Kubernetes guidance:
//
//	service.name: the resource.opentelemetry.io/service.name annotation,
//	  the app.kubernetes.io/name label, then the nearest-to-the-top
//	  workload (Deployment, ReplicaSet, StatefulSet, DaemonSet, CronJob,
//	  Job), the pod's name, the container's name.
//	service.namespace: its annotation, then the pod's namespace.
//	service.instance.id: its annotation, then namespace.pod.container.
func (id *Identity) resolveService(annotations map[string]string) {
	id.ServiceName = first(annotations[resourceAnnotationPrefix+"service.name"], id.Labels[labelAppName],
		id.Deployment, id.ReplicaSet, id.StatefulSet, id.DaemonSet, id.CronJob, id.Job, id.PodName, id.ContainerName)
	id.ServiceNamespace = first(annotations[resourceAnnotationPrefix+"service.namespace"], id.Namespace)
	id.ServiceInstanceID = annotations[resourceAnnotationPrefix+"service.instance.id"]
	if id.ServiceInstanceID == "" && id.ContainerName != "" {
		id.ServiceInstanceID = id.Namespace + "." + id.PodName + "." + id.ContainerName
	}
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

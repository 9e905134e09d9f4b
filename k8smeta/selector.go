package k8smeta

// Selector picks processes by their pod. Every set field must match; an
// empty Selector matches every process, in a pod or not.
type Selector struct {
	Namespace string
	// PodLabels must all be on the pod with these values (as a
	// Deployment's matchLabels).
	PodLabels map[string]string
	// Workload is one of the pod's owners: its ReplicaSet or Deployment,
	// StatefulSet, DaemonSet, Job or CronJob.
	Workload Workload
	// Container is the container's name in the pod spec.
	Container string
}

// IsZero reports whether the selector sets nothing.
func (s Selector) IsZero() bool {
	return s.Namespace == "" && len(s.PodLabels) == 0 && s.Workload == (Workload{}) && s.Container == ""
}

// Match reports whether the process id is selected. A selector that sets
// anything matches only processes of known pods; one that names a
// container waits until the pod's status names the process's container.
func (s Selector) Match(id Identity) bool {
	if s.IsZero() {
		return true
	}
	if !id.Known {
		return false
	}
	if s.Namespace != "" && s.Namespace != id.Namespace {
		return false
	}
	for k, v := range s.PodLabels {
		if got, ok := id.Labels[k]; !ok || got != v {
			return false
		}
	}
	if s.Container != "" && s.Container != id.ContainerName {
		return false
	}
	if s.Workload != (Workload{}) {
		found := false
		for _, w := range id.Workloads() {
			if w == s.Workload {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

package config

import (
	"regexp"
	"strings"
)

// WorkloadKinds are the owner kinds a k8s_workload selector may name.
var WorkloadKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}

var (
	// RFC 1123 label: namespaces and container names.
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// RFC 1123 subdomain: workload names.
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// A label key's name part and a label value (empty values are valid).
	labelName  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
)

// checkK8sSelector validates the Kubernetes selectors of a target with the
// API server's own rules for the names, so that a selector that can never
// match is an error here and not a quiet agent.
func checkK8sSelector(p *problems, pre string, t Target) {
	if n := t.K8sNamespace; n != "" && (len(n) > 63 || !dnsLabel.MatchString(n)) {
		p.add(pre+".k8s_namespace", "%q is not a namespace name (lower-case letters, digits and '-', at most 63)", n)
	}
	for _, k := range sortedKeys(t.K8sPodLabels) {
		kp := pre + ".k8s_pod_labels." + k
		if !isLabelKey(k) {
			p.add(kp, "%q is not a label key ([prefix/]name, the name at most 63 of letters, digits, '-', '_', '.')", k)
		}
		if v := t.K8sPodLabels[k]; len(v) > 63 || !labelValue.MatchString(v) {
			p.add(kp, "%q is not a label value (at most 63 of letters, digits, '-', '_', '.')", v)
		}
	}
	if w := t.K8sWorkload; w != (K8sWorkload{}) {
		switch kinds := strings.Join(WorkloadKinds, ", "); {
		case w.Kind == "":
			p.add(pre+".k8s_workload.kind", "missing; one of %s", kinds)
		case !oneOf(w.Kind, WorkloadKinds):
			p.add(pre+".k8s_workload.kind", "%q is not one of %s", w.Kind, kinds)
		}
		if w.Name == "" {
			p.add(pre+".k8s_workload.name", "missing; the workload's name, e.g. login")
		} else if len(w.Name) > 253 || !dnsSubdomain.MatchString(w.Name) {
			p.add(pre+".k8s_workload.name", "%q is not a workload name (lower-case letters, digits, '-' and '.')", w.Name)
		}
	}
	if c := t.K8sContainer; c != "" && (len(c) > 63 || !dnsLabel.MatchString(c)) {
		p.add(pre+".k8s_container", "%q is not a container name (lower-case letters, digits and '-', at most 63)", c)
	}
}

func isLabelKey(k string) bool {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		name, prefix = prefix, ""
	} else if prefix == "" || len(prefix) > 253 || !dnsSubdomain.MatchString(prefix) {
		return false
	}
	return len(name) <= 63 && labelName.MatchString(name)
}

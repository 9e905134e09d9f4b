// Package k8smeta tells who a traced process is on Kubernetes. It takes a
// PID and gives an Identity: from the process's cgroup the pod UID and
// container ID (always, even with no API server), and from a watch of this
// node's pods (client-go, spec.nodeName field selector) the namespace, pod,
// container, image, owning workload (ReplicaSets and Jobs looked up once
// for their Deployments and CronJobs) and service attributes, named as
// OpenTelemetry's Kubernetes conventions name them. Selectors match
// identities for the agent's targets, and Changes tells when pods appeared
// or changed so that processes can be matched again. Lookups never wait for
// the API; the watch retries with backoff and its State is for metrics and
// readiness. It never logs.
package k8smeta

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// Node returns the node-level attributes, from the NODE_NAME variable the
// DaemonSet sets through the downward API.
func Node(getenv func(string) string) []attribute.KeyValue {
	if n := NodeName(getenv); n != "" {
		return []attribute.KeyValue{attribute.String("k8s.node.name", n)}
	}
	return nil
}

// NodeName is this node's name from NODE_NAME, "" when unset.
func NodeName(getenv func(string) string) string {
	return strings.TrimSpace(getenv("NODE_NAME"))
}

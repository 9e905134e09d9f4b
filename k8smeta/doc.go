// Package k8smeta will give the Kubernetes resource attributes (k8s.pod.*,
// k8s.namespace.name, k8s.node.name, container ids) of a traced process,
// from its cgroup path and the kubelet's pod list, for the exporter's
// per-process resource (export.Config.ProcessResource). Not built yet: on
// Kubernetes today, spans carry host.name and process attributes only.
package k8smeta

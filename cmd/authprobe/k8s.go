package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/k8smeta"
	"github.com/authprobe/authprobe/spanbuilder"
)

// kubeAPIEnv turns the pod watch off ("off") or leaves it to what the
// environment offers ("auto", the default).
const kubeAPIEnv = "AUTHPROBE_KUBERNETES_API"

// kube is the agent's Kubernetes side: who a process is (k8smeta) for the
// resource attributes, selectors and service names, and the pod watch's
// state for /metrics and /readyz. The watch runs on its own goroutines;
// nothing on the capture path waits for it.
type kube struct {
	meta *k8smeta.Meta
	log  *slog.Logger
	api  bool

	cancel context.CancelFunc
	wg     sync.WaitGroup

	phase, pods, owners, procs, apiErrors, reconnects, ownerLookups *prometheus.Desc
}

// startKube builds k8smeta from the environment and starts the pod watch.
// The API is used when the agent runs in a pod (KUBERNETES_SERVICE_HOST and
// the service account token, as client-go's in-cluster config reads them)
// or KUBECONFIG names a kubeconfig file, and NODE_NAME says which node's
// pods to watch; otherwise identities are what cgroups tell.
func startKube(ctx context.Context, log *slog.Logger, getenv func(string) string, cfg *config.Config) (*kube, error) {
	k := &kube{log: log}
	node := k8smeta.NodeName(getenv)
	rc, why, err := kubeREST(getenv)
	if err != nil {
		return nil, err
	}
	if rc != nil && node == "" {
		// Without a node the watch would be the whole cluster's pods.
		log.Warn("kubernetes api available but NODE_NAME is unset: not watching pods (set it from spec.nodeName)")
		rc, why = nil, "NODE_NAME unset"
	}
	k.meta, err = k8smeta.New(k8smeta.Config{NodeName: node, REST: rc})
	if err != nil {
		return nil, err
	}
	k.api = rc != nil
	for i, t := range cfg.Targets {
		if t.HasK8s() && !k.api {
			log.Warn("target has Kubernetes selectors but the pod watch is off: it matches nothing", "target", i, "why", why)
		}
	}
	k.describe()
	if !k.api {
		log.Info("kubernetes pod watch off; spans carry the pod UID and container ID from cgroups", "why", why)
		return k, nil
	}
	// client-go logs through klog; its lines join ours, as this component.
	klog.SetSlogLogger(log)
	ctx, k.cancel = context.WithCancel(ctx)
	k.wg.Add(2)
	go func() {
		defer k.wg.Done()
		k.meta.Run(ctx)
	}()
	go func() {
		defer k.wg.Done()
		k.logState(ctx)
	}()
	log.Info("watching this node's pods", "node", node, "api", rc.Host)
	return k, nil
}

// kubeREST finds the API's address and the agent's credentials; nil with
// the reason when there is none.
func kubeREST(getenv func(string) string) (*rest.Config, string, error) {
	switch mode := getenv(kubeAPIEnv); mode {
	case "", "auto":
	case "off":
		return nil, kubeAPIEnv + "=off", nil
	default:
		return nil, "", fmt.Errorf("%s=%q: want auto or off", kubeAPIEnv, mode)
	}
	if path := getenv("KUBECONFIG"); path != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes api: KUBECONFIG %s: %w", path, err)
		}
		return rc, "", nil
	}
	if getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, "not in a pod and KUBECONFIG unset", nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes api: in-cluster config: %w", err)
	}
	return rc, "", nil
}

func (k *kube) close() {
	if k.cancel != nil {
		k.cancel()
	}
	k.wg.Wait()
}

// resource is the exporter's per-process resource hook.
func (k *kube) resource(p spanbuilder.Process) []attribute.KeyValue {
	return k.meta.Process(p.PID).Attributes()
}

// logState logs the watch's phase changes: an operator sees the API going
// and coming back in the agent's log.
func (k *kube) logState(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := k8smeta.PhaseConnecting
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := k.meta.State()
		if s.Phase == last {
			continue
		}
		last = s.Phase
		switch s.Phase {
		case k8smeta.PhaseSynced:
			k.log.Info("kubernetes pod watch synced", "pods", s.Pods, "reconnects", s.Reconnects)
		case k8smeta.PhaseDisconnected:
			k.log.Warn("kubernetes api unreachable; retrying, spans of new pods carry cgroup attributes only until it is back",
				"error", s.LastError, "pods_kept", s.Pods)
		}
	}
}

// readyDetail is the watch's line of /readyz. Readiness does not depend on
// it: capture works without the API.
func (k *kube) readyDetail() string {
	s := k.meta.State()
	if !s.API {
		return "kubernetes: pod watch off (pod UID and container ID from cgroups)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kubernetes: %s since %s, node %s, %d pods", s.Phase, s.Since.UTC().Format(time.RFC3339), s.Node, s.Pods)
	if s.Phase == k8smeta.PhaseDisconnected {
		fmt.Fprintf(&b, " (as last seen), last error at %s: %s", s.LastErrorAt.UTC().Format(time.RFC3339), s.LastError)
	}
	return b.String()
}

func (k *kube) describe() {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("authprobe_k8s_"+name, help, labels, nil)
	}
	k.phase = desc("watch_phase", "The pod watch's phase (1 for the current one): off, connecting, synced, disconnected.", "phase")
	k.pods = desc("pods", "Pods of this node known to the agent: live in the watch, or deleted and still remembered.", "state")
	k.owners = desc("owners_cached", "ReplicaSets and Jobs whose Deployment or CronJob is cached.")
	k.procs = desc("processes_cached", "Process cgroups remembered.")
	k.apiErrors = desc("api_errors_total", "Failed pod list and watch calls.")
	k.reconnects = desc("api_reconnects_total", "Pod list or watch calls that succeeded after a failure (each resyncs).")
	k.ownerLookups = desc("owner_lookups_total", "ReplicaSet and Job lookups, by result.", "result")
}

// Describe and Collect make kube a Prometheus collector of the watch state.
func (k *kube) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(k, ch) }

func (k *kube) Collect(ch chan<- prometheus.Metric) {
	s := k.meta.State()
	for _, p := range []k8smeta.Phase{k8smeta.PhaseOff, k8smeta.PhaseConnecting, k8smeta.PhaseSynced, k8smeta.PhaseDisconnected} {
		v := 0.0
		if s.Phase == p {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(k.phase, prometheus.GaugeValue, v, string(p))
	}
	ch <- prometheus.MustNewConstMetric(k.pods, prometheus.GaugeValue, float64(s.Pods), "live")
	ch <- prometheus.MustNewConstMetric(k.pods, prometheus.GaugeValue, float64(s.Deleted), "deleted")
	ch <- prometheus.MustNewConstMetric(k.owners, prometheus.GaugeValue, float64(s.Owners))
	ch <- prometheus.MustNewConstMetric(k.procs, prometheus.GaugeValue, float64(k.meta.ProcessesCached()))
	ch <- prometheus.MustNewConstMetric(k.apiErrors, prometheus.CounterValue, float64(s.Errors))
	ch <- prometheus.MustNewConstMetric(k.reconnects, prometheus.CounterValue, float64(s.Reconnects))
	ch <- prometheus.MustNewConstMetric(k.ownerLookups, prometheus.CounterValue, float64(s.OwnerLookups-s.OwnerErrors), "ok")
	ch <- prometheus.MustNewConstMetric(k.ownerLookups, prometheus.CounterValue, float64(s.OwnerErrors), "error")
}

// onPodChanges runs on the pipeline's goroutine (from tick): when the pod
// watch changed, watched processes get what their pods now tell (service
// name, identity revision) and unwatched ones are matched again, so a
// process of a pod that started later is watched within a tick of the
// watch seeing the pod.
func (p *pipeline) onPodChanges() {
	select {
	case <-p.matcher.PodChanges():
	default:
		return
	}
	for pid, proc := range p.procs {
		if upd := p.matcher.Refresh(proc); upd != proc {
			p.procs[pid] = upd
			if upd.ServiceName != proc.ServiceName {
				p.log.Info("service name from the pod", "pid", pid, "service", upd.ServiceName, "was", proc.ServiceName)
			}
		}
	}
	p.scan(p.matcher.HasPortTargets())
}

// Package deploy holds no code: its tests check the shipped deployment
// files (Kubernetes manifests, collector configs, Prometheus rules, the
// Grafana dashboard) with the real decoders and tools, without privileges.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/authprobe/authprobe/config"
)

// manifests holds every object of deploy/kubernetes, decoded strictly.
type manifests struct {
	namespaces   []*corev1.Namespace
	accounts     []*corev1.ServiceAccount
	configMaps   []*corev1.ConfigMap
	services     []*corev1.Service
	daemonSets   []*appsv1.DaemonSet
	deployments  []*appsv1.Deployment
	clusterRoles []*rbacv1.ClusterRole
	bindings     []*rbacv1.ClusterRoleBinding
	secrets      []*corev1.Secret
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// mustManifests decodes every YAML document under deploy/kubernetes into
// its Kubernetes API type as the API server would, refusing unknown and
// duplicate fields and unknown kinds.
func mustManifests(tb testing.TB) *manifests {
	tb.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no manifests under kubernetes/: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		m.addAll(tb, f, string(mustRead(tb, f)))
	}
	return m
}

// addAll decodes every document of a multi-document YAML stream.
func (m *manifests) addAll(tb testing.TB, name, stream string) {
	tb.Helper()
	for i, doc := range docSep.Split(stream, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		if err := m.add([]byte(doc)); err != nil {
			tb.Errorf("%s document %d: %v", name, i+1, err)
		}
	}
}

func (m *manifests) add(doc []byte) error {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("read kind: %w", err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		m.namespaces, obj = append(m.namespaces, o), o
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		m.accounts, obj = append(m.accounts, o), o
	case "v1 Secret":
		o := &corev1.Secret{}
		m.secrets, obj = append(m.secrets, o), o
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, o), o
	case "v1 Service":
		o := &corev1.Service{}
		m.services, obj = append(m.services, o), o
	case "apps/v1 DaemonSet":
		o := &appsv1.DaemonSet{}
		m.daemonSets, obj = append(m.daemonSets, o), o
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		m.deployments, obj = append(m.deployments, o), o
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		o := &rbacv1.ClusterRole{}
		m.clusterRoles, obj = append(m.clusterRoles, o), o
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		o := &rbacv1.ClusterRoleBinding{}
		m.bindings, obj = append(m.bindings, o), o
	default:
		return fmt.Errorf("unexpected %s %s", tm.APIVersion, tm.Kind)
	}
	// The API server's own decoding: YAML to JSON refusing duplicate keys,
	// then case-sensitive JSON refusing unknown fields. encoding/json alone
	// would let "hostPid" through as hostPID.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	strict, err := k8sjson.UnmarshalStrict(js, obj)
	if err != nil {
		return fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("decode %s: %w", tm.Kind, errors.Join(strict...))
	}
	return nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := mustManifests(t)
	if len(m.namespaces) != 1 || len(m.daemonSets) != 1 || len(m.deployments) != 1 ||
		len(m.accounts) != 1 || len(m.clusterRoles) != 1 || len(m.bindings) != 1 ||
		len(m.configMaps) != 2 || len(m.services) != 1 {
		t.Fatalf("unexpected set of objects: %d namespaces, %d daemonsets, %d deployments, %d accounts, %d roles, %d bindings, %d configmaps, %d services",
			len(m.namespaces), len(m.daemonSets), len(m.deployments), len(m.accounts), len(m.clusterRoles), len(m.bindings), len(m.configMaps), len(m.services))
	}
	ns := m.namespaces[0].Name
	for _, o := range []struct{ kind, name, ns string }{
		{"ServiceAccount", m.accounts[0].Name, m.accounts[0].Namespace},
		{"DaemonSet", m.daemonSets[0].Name, m.daemonSets[0].Namespace},
		{"Deployment", m.deployments[0].Name, m.deployments[0].Namespace},
		{"Service", m.services[0].Name, m.services[0].Namespace},
		{"ConfigMap", m.configMaps[0].Name, m.configMaps[0].Namespace},
		{"ConfigMap", m.configMaps[1].Name, m.configMaps[1].Namespace},
	} {
		if o.ns != ns {
			t.Errorf("%s %s is in namespace %q, want %q", o.kind, o.name, o.ns, ns)
		}
	}
}

// TestRBACLeastPrivilege: the agent may list and watch pods and get
// ReplicaSets and Jobs, nothing else (test/k8s checks against the API
// server's audit log that it makes exactly these calls).
func TestRBACLeastPrivilege(t *testing.T) {
	m := mustManifests(t)
	role := m.clusterRoles[0]
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get"}},
	}
	if !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("ClusterRole rules = %+v\nwant %+v", role.Rules, want)
	}
	b := m.bindings[0]
	sa := m.accounts[0]
	if b.RoleRef.Name != role.Name || b.RoleRef.Kind != "ClusterRole" {
		t.Errorf("binding refers to %s %s, want ClusterRole %s", b.RoleRef.Kind, b.RoleRef.Name, role.Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding subjects = %+v, want ServiceAccount %s/%s", b.Subjects, sa.Namespace, sa.Name)
	}
	if ds := m.daemonSets[0]; ds.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("DaemonSet runs as %q, want %q", ds.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
}

// TestAgentDaemonSet checks the agent's privileges, probes and mounts.
func TestAgentDaemonSet(t *testing.T) {
	m := mustManifests(t)
	ds := m.daemonSets[0]
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is false: the agent must see host PIDs")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork is true: not needed for capture")
	}
	if !mapsEqualSubset(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match template labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext with capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem not true")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
	}
	allowed := []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"}
	for _, c := range sc.Capabilities.Add {
		if !slices.Contains(allowed, c) {
			t.Errorf("capability %s added beyond the documented set %v", c, allowed)
		}
	}
	for _, need := range []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE"} {
		if !slices.Contains(sc.Capabilities.Add, need) {
			t.Errorf("capability %s missing", need)
		}
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources not set: %+v", c.Resources)
	}

	// Probes hit the agent's metrics listener, whose address comes from the
	// agent config in the ConfigMap.
	cfg := mustAgentConfig(t, m)
	_, port, err := net.SplitHostPort(cfg.Metrics.Addr)
	if err != nil {
		t.Fatalf("agent metrics.addr %q: %v", cfg.Metrics.Addr, err)
	}
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if fmt.Sprint(metricsPort) != port {
		t.Errorf("container port metrics = %d, agent listens on %s", metricsPort, port)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe missing or not httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe = %s on %s, want %s on metrics", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// Mounts: the config read-only where the args say, tracefs read-only,
	// nothing from /sys/fs/bpf.
	if !slices.Equal(c.Args, []string{"run", "--config", "/etc/authprobe/config.yaml"}) {
		t.Errorf("args = %v", c.Args)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	for _, path := range []string{"/etc/authprobe", "/sys/kernel/tracing"} {
		if vm, ok := mounts[path]; !ok || !vm.ReadOnly {
			t.Errorf("mount %s missing or writable", path)
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
		if v.HostPath != nil && !slices.Contains([]string{"/sys/kernel/tracing"}, v.HostPath.Path) {
			t.Errorf("hostPath %s not justified", v.HostPath.Path)
		}
	}
	if v := vols[mounts["/etc/authprobe"].Name]; v.ConfigMap == nil || v.ConfigMap.Name != "authprobe-agent" {
		t.Errorf("config volume = %+v, want ConfigMap authprobe-agent", v)
	}
}

// mustAgentConfig parses the agent ConfigMap's config with the agent's own
// loader: unknown keys and invalid values fail here.
func mustAgentConfig(tb testing.TB, m *manifests) *config.Config {
	tb.Helper()
	for _, cm := range m.configMaps {
		if cm.Name != "authprobe-agent" {
			continue
		}
		data, ok := cm.Data["config.yaml"]
		if !ok {
			tb.Fatal("ConfigMap authprobe-agent has no config.yaml")
		}
		env := func(k string) (string, bool) {
			if k == "AUTHPROBE_USERNAME_KEY" {
				return "test-key", true
			}
			return "", false
		}
		cfg, err := config.ParseEnv("kubernetes/agent-configmap.yaml", []byte(data), env)
		if err != nil {
			tb.Fatalf("agent config: %v", err)
		}
		return cfg
	}
	tb.Fatal("no ConfigMap authprobe-agent")
	return nil
}

func TestAgentConfigExportsToCollectorService(t *testing.T) {
	m := mustManifests(t)
	cfg := mustAgentConfig(t, m)
	svc := m.services[0]
	want := fmt.Sprintf("%s.%s.svc:4317", svc.Name, svc.Namespace)
	if cfg.Exporter.Kind != "otlp" || cfg.Exporter.Endpoint != want {
		t.Errorf("agent exporter = %s %s, want otlp %s", cfg.Exporter.Kind, cfg.Exporter.Endpoint, want)
	}
	if len(cfg.Routes) == 0 {
		t.Error("agent config has no routes")
	}
}

// TestCollectorManifest: the ConfigMap holds single.yaml verbatim and the
// Deployment mounts it where its args point.
func TestCollectorManifest(t *testing.T) {
	m := mustManifests(t)
	var data string
	for _, cm := range m.configMaps {
		if cm.Name == "authprobe-collector" {
			data = cm.Data["single.yaml"]
		}
	}
	if want := string(mustRead(t, "collector/single.yaml")); data != want {
		t.Errorf("ConfigMap authprobe-collector single.yaml differs from collector/single.yaml; regenerate it")
	}
	d := m.deployments[0]
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"--config=/etc/otelcol/single.yaml"}) {
		t.Errorf("collector args = %v", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("collector root filesystem is writable")
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Error("collector probes missing")
	}
	ports := map[string]bool{}
	for _, p := range m.services[0].Spec.Ports {
		ports[p.TargetPort.String()] = true
	}
	for _, p := range c.Ports {
		if p.Name != "health" && !ports[p.Name] {
			t.Errorf("container port %s not exposed by the Service", p.Name)
		}
	}
	if !mapsEqualSubset(m.services[0].Spec.Selector, d.Spec.Template.Labels) {
		t.Error("Service selector does not select the collector pods")
	}
}

// TestCollectorConfigsValidate runs the test collector's own validation,
// which decodes every component config and parses the OTTL conditions.
func TestCollectorConfigsValidate(t *testing.T) {
	bin := collectorBinary(t)
	for _, f := range []string{"collector/single.yaml", "collector/gateway.yaml", "collector/sampler.yaml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cmd := exec.Command(bin, "validate", "--config", f)
			// Defaults only: the configs must be valid with no variable set.
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s validate --config %s: %v\n%s", bin, f, err, out)
			}
		})
	}
	t.Run("broken config is refused", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		src := strings.Replace(string(mustRead(t, "collector/single.yaml")), `HasPrefix(span.name, "auth.")`, `HasPrefix(span.name, `, 1)
		if err := os.WriteFile(bad, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "validate", "--config", bad).CombinedOutput(); err == nil {
			t.Fatalf("validate accepted a broken OTTL condition:\n%s", out)
		}
	})
}

// collectorBinary returns the test collector, built by
// `make -C test/collector build`, or skips.
func collectorBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("AUTHPROBE_OTELCOL")
	if bin == "" {
		bin, _ = filepath.Abs("../test/collector/bin/otelcol-authprobe")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("test collector not built (%v): run `make -C test/collector build`", err)
	}
	return bin
}

func promtool(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		tb.Skip("promtool not installed (apt-get install prometheus)")
	}
	return p
}

func TestPrometheusRules(t *testing.T) {
	pt := promtool(t)
	if out, err := exec.Command(pt, "check", "rules", "prometheus/rules.yaml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(pt, "test", "rules", "rules_test.yaml")
	cmd.Dir = "prometheus"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestRulesAnnotations: every alert leads to traces.
func TestRulesAnnotations(t *testing.T) {
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	// Lax: rules carry more keys than this struct reads.
	if err := yaml.Unmarshal(mustRead(t, "prometheus/rules.yaml"), &rf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			for _, k := range []string{"summary", "description", "exemplar_query", "traceql", "trace_search_url"} {
				if r.Annotations[k] == "" {
					t.Errorf("alert %s lacks annotation %s", r.Alert, k)
				}
			}
		}
	}
	sort.Strings(names)
	want := []string{"AgentDown", "AmbiguousAuthRequest", "AuthAttemptsLost", "AuthAttemptsLostHeavily", "AuthLatencyAnomaly", "AuthorizationProbing", "BruteForce", "CredentialStuffing", "SpansDropped"}
	if !slices.Equal(names, want) {
		t.Errorf("alerts = %v, want %v", names, want)
	}
}

// producedMetrics are the series the rules and the dashboard may use: what
// the collector's span metrics and the agent expose (docs/pipeline.md; the
// collector names are checked live by test/pipeline), plus Prometheus' own.
var producedMetrics = []string{
	"authprobe_auth_calls_total",
	"authprobe_auth_duration_seconds_bucket",
	"authprobe_auth_duration_seconds_count",
	"authprobe_auth_duration_seconds_sum",
	"authprobe_auth_attempts_total",
	"authprobe_auth_failed_usernames",
	"authprobe_auth_ambiguous_total",
	"authprobe_auth_denials_total",
	"authprobe_calls_total",
	"authprobe_events_total",
	"authprobe_drops_total",
	"authprobe_spans_exported_total",
	"authprobe_spans_dropped_total",
	"authprobe_spans_total",
	"authprobe_auth_attempts_lost_total",
	"authprobe_export_errors_total",
	"up",
	"ALERTS",
}

var metricNameRE = regexp.MustCompile(`\b(authprobe_[a-z_]+|ALERTS|up)\b\s*[{\[]`)

// TestDashboard parses the dashboard, then has promtool check every PromQL
// expression in it (as recording rules in a generated file) and checks
// that each metric it reads is one the pipeline produces. promtool over
// the Prometheus parser library: the distribution's promtool is already
// here, the library would pull much of Prometheus into go.mod.
func TestDashboard(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(mustRead(t, "grafana/authprobe-dashboard.json")))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, m := range metricNameRE.FindAllStringSubmatch(tg.Expr, -1) {
				if !slices.Contains(producedMetrics, m[1]) {
					t.Errorf("panel %q reads %s, which nothing produces", p.Title, m[1])
				}
			}
		}
	}
	for _, want := range []string{"auth_client_subnet", "histogram_quantile(0.99", "authprobe_auth_failed_usernames", "auth_subject", "ALERTS", "authprobe_spans_dropped_total", "authprobe_export_errors_total", "authprobe_auth_denials_total"} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no dashboard query uses %s", want)
		}
	}

	// Grafana's variables become plain values promtool understands.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$__interval", "1m", "$service", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, err := json.Marshal(vars.Replace(e)) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: dashboard:expr%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// TestRulesUseProducedMetrics: no rule reads a metric nothing produces.
func TestRulesUseProducedMetrics(t *testing.T) {
	for _, m := range metricNameRE.FindAllStringSubmatch(string(mustRead(t, "prometheus/rules.yaml")), -1) {
		if !slices.Contains(producedMetrics, m[1]) {
			t.Errorf("rules read %s, which nothing produces", m[1])
		}
	}
}

func mapsEqualSubset(sub, full map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if full[k] != v {
			return false
		}
	}
	return true
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			tb.Fatalf("%s is missing", path)
		}
		tb.Fatalf("read %s: %v", path, err)
	}
	return b
}

// TestStrictDecodeRefusesUnknownFields guards the guard: a misspelt field
// must fail the manifest tests, not vanish.
func TestStrictDecodeRefusesUnknownFields(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"misspelt field", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec: {template: {spec: {hostPid: true}}}\n"},
		{"unknown kind", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := (&manifests{}).add([]byte(tt.doc)); err == nil {
				t.Errorf("accepted:\n%s", tt.doc)
			}
		})
	}
}

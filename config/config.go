// Package config is the agent's one configuration vocabulary: the YAML file
// a user writes, decoded strictly (unknown keys are errors with file:line),
// defaulted and validated. Every stage takes the part it needs explicitly.
package config

import (
	"time"
)

// Route kinds.
const (
	KindLogin     = "login"
	KindAuthorize = "authorize"
	KindToken     = "token"
	KindLogout    = "logout"
	KindOther     = "other"
)

// Username privacy modes.
const (
	PrivacyHash  = "hash"
	PrivacyPlain = "plain"
	PrivacyDrop  = "drop"
)

// Exporter kinds.
const (
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
)

// Limits the kernel side imposes on the capture sizes.
const (
	MaxCaptureBytes      = 16384
	DefaultCaptureBytes  = 4096
	DefaultResponseBytes = 1024
	// DefaultBurstBytes bounds what the kernel copies of one capture
	// episode (requests it could not prove non-auth, back to back, such as a
	// pipelined burst) before user space has decided on them.
	DefaultBurstBytes = 256 << 10
	MinBurstBytes     = 16 << 10
	MaxBurstBytes     = 64 << 20
)

// Config is the whole agent configuration.
type Config struct {
	// ServiceName is the default service.name; the executable's base name
	// when empty.
	ServiceName string `yaml:"service_name"`
	// CaptureBytes bounds what is captured of one request (head and start of
	// the body). Default 4096, at most MaxCaptureBytes.
	CaptureBytes int `yaml:"capture_bytes"`
	// ResponseBytes bounds what is captured of one response (head and start
	// of the body). Default 1024, at most MaxCaptureBytes.
	ResponseBytes int `yaml:"response_bytes"`
	// BurstBytes bounds the bytes the kernel copies of one capture episode
	// (several requests in a row, e.g. a pipelined burst of logins) before
	// user space's verdict; beyond it attempts are counted as lost
	// (reason budget). Default 256 KiB.
	BurstBytes int `yaml:"burst_bytes"`
	// ResponseTimeout: a request without a response after this long becomes
	// a span with auth.result=unknown, failure_reason=no_response. Default 30s.
	ResponseTimeout Duration `yaml:"response_timeout"`

	Targets  []Target `yaml:"targets"`
	Routes   []Route  `yaml:"routes"`
	Security Security `yaml:"security"`
	Exporter Exporter `yaml:"exporter"`
	Metrics  Metrics  `yaml:"metrics"`

	// src locates keys in the file the config came from, so that Validate
	// (run again after the CLI adds flag targets) still reports file:line.
	src *source
}

// Target selects processes to watch. Every field it sets must match: at
// most one of pid, exe and port, and any of the Kubernetes selectors
// (k8s_*), which match processes in pods of this node and need the agent's
// pod watch (see k8smeta).
type Target struct {
	PID int `yaml:"pid"`
	// Exe is a glob on the executable: without a "/" on its base name
	// ("python3*" matches /usr/local/bin/python3.12 and a virtualenv's
	// bin/python3); else on the whole path, where "**" is any number of
	// directories ("/opt/**/bin/java"). Segments use path.Match syntax.
	// The path exec was given matches too, so a symlink's name counts.
	Exe  string `yaml:"exe"`
	Port int    `yaml:"port"` // processes listening on this TCP port
	// K8sNamespace: the pod's namespace.
	K8sNamespace string `yaml:"k8s_namespace"`
	// K8sPodLabels: labels the pod has, all with these values.
	K8sPodLabels map[string]string `yaml:"k8s_pod_labels"`
	// K8sWorkload: an owner of the pod (a Deployment also owns the pods of
	// its ReplicaSets, a CronJob those of its Jobs).
	K8sWorkload K8sWorkload `yaml:"k8s_workload"`
	// K8sContainer: the container's name in the pod.
	K8sContainer string `yaml:"k8s_container"`
	// ServiceName overrides service.name for processes this entry matches.
	ServiceName string `yaml:"service_name"`
	// Gateway: the processes are a gateway (a reverse proxy in front of
	// services): a denial they answer with no denying call behind it is
	// auth.decision.layer=gateway rather than service.
	Gateway bool `yaml:"gateway"`
}

// K8sWorkload names a workload: kind is Deployment, StatefulSet,
// DaemonSet, ReplicaSet, Job or CronJob.
type K8sWorkload struct {
	Kind string `yaml:"kind"`
	Name string `yaml:"name"`
}

// HasK8s reports whether the target sets a Kubernetes selector.
func (t Target) HasK8s() bool {
	return t.K8sNamespace != "" || len(t.K8sPodLabels) > 0 || t.K8sWorkload != (K8sWorkload{}) || t.K8sContainer != ""
}

// Route is one configured auth route.
type Route struct {
	Name   string `yaml:"name"`   // span name, e.g. auth.login
	Kind   string `yaml:"kind"`   // login | authorize | token | logout | other
	Method string `yaml:"method"` // optional; any method when empty
	// Path: exact ("/login"), "*" matches one segment, "{param}" matches one
	// segment and names it, a trailing "/**" matches any rest (including none).
	// Requests are matched after the normalisation servers apply before
	// routing (docs/security-attributes.md, "Routes").
	Path string `yaml:"path"`
	// CaseSensitive matches the path's literal segments byte for byte. By
	// default they match in any ASCII case, as Express and ASP.NET route:
	// a server that answers /LOGIN from its /login handler must not be a
	// way around the span.
	CaseSensitive bool `yaml:"case_sensitive"`
	// Prefix also matches paths that merely start with Path, as
	// com.sun.net.httpserver contexts (and nginx prefix locations) do:
	// "/login" then takes "/loginx", "/login.do" and "/login/x" too.
	Prefix bool `yaml:"prefix"`
	// Results overrides the default status → result mapping for this route.
	// Keys are a status code ("200") or class ("4xx"); values are
	// "result" or "result/reason", e.g. "failure/invalid_credentials".
	Results map[string]string `yaml:"results"`
	// FailureMatchers refine auth.failure_reason from the response body
	// (first captured bytes). The first matcher that matches wins.
	FailureMatchers []BodyMatcher `yaml:"failure_matchers"`
}

// BodyMatcher matches the captured start of a response body.
type BodyMatcher struct {
	// JSONField is a dotted path into a JSON body (e.g. "error.code"); when
	// set, Equals (if set) must equal the field's string value, else the
	// field must merely exist.
	JSONField string `yaml:"json_field"`
	Equals    string `yaml:"equals"`
	// Contains matches a substring of the captured body (used when JSONField
	// is empty).
	Contains string `yaml:"contains"`
	// Reason is the auth.failure_reason to set, e.g. mfa_required.
	Reason string `yaml:"reason"`
	// Result optionally forces auth.result (failure | error); default failure.
	Result string `yaml:"result"`
}

// Security configures the security attributes and privacy.
type Security struct {
	Username UsernameConfig `yaml:"username"`
	APIKey   APIKeyConfig   `yaml:"api_key"`
	// SessionCookies are cookie names that mean "a session": a request that
	// carries one authenticated with auth.method=cookie; a response that
	// sets one on a successful login issued a session.
	SessionCookies []string  `yaml:"session_cookies"`
	JWT            JWTConfig `yaml:"jwt"`
	// TrustedProxies are CIDRs whose X-Forwarded-For / Forwarded headers are
	// believed; client.address is then the right-most untrusted address.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ClientSubnet adds auth.client.subnet (/24 IPv4, /48 IPv6). Default true.
	ClientSubnet *bool `yaml:"client_subnet"`
	// StatusUnsetOn4xx leaves the span status unset for 4xx failures as HTTP
	// server semconv does; default false (failures are Error, as the
	// detection rules expect).
	StatusUnsetOn4xx bool `yaml:"status_unset_on_4xx"`
}

// UsernameConfig says where usernames come from and how they are protected.
type UsernameConfig struct {
	// BodyFields are form field names or dotted JSON paths ("user.email").
	// Default: username, user, email, login.
	BodyFields []string `yaml:"body_fields"`
	// Header is an optional request header carrying the username.
	Header string `yaml:"header"`
	// Privacy: hash (default), plain or drop.
	Privacy string `yaml:"privacy"`
	// KeyFile / KeyEnv name the HMAC key source for privacy=hash.
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// RandomKey uses a random per-run key (hashes then do not correlate
	// across restarts or nodes); logged at start. It is the default when
	// privacy is hash and neither key_file nor key_env is set.
	RandomKey bool `yaml:"random_key"`
	// Lowercase lowercases usernames that look like emails before hashing.
	// Default true.
	Lowercase *bool `yaml:"lowercase"`
}

// APIKeyConfig names where API keys travel.
type APIKeyConfig struct {
	Headers     []string `yaml:"headers"`      // default: X-API-Key
	QueryParams []string `yaml:"query_params"` // default: api_key
}

// JWTConfig configures bearer-token decoding.
type JWTConfig struct {
	// RolesClaim is a dotted claim path: roles, groups, scope,
	// realm_access.roles. Default roles.
	RolesClaim string `yaml:"roles_claim"`
	// Leeway for the exp check. Default 0.
	Leeway Duration `yaml:"leeway"`
	// JWKSFile, when set, verifies signatures (auth.token.verified).
	JWKSFile string `yaml:"jwks_file"`
}

// Exporter chooses where spans go and how much waits for delivery.
type Exporter struct {
	Kind     string `yaml:"kind"`     // stdout (default) | otlp
	Endpoint string `yaml:"endpoint"` // host:port; OTEL_EXPORTER_OTLP_* apply
	Insecure *bool  `yaml:"insecure"` // default true for loopback endpoints
	// BufferSize bounds the encoded spans waiting in memory for delivery
	// (while the collector is away, for one); beyond it spans are dropped
	// and counted. Default 16MiB.
	BufferSize ByteSize `yaml:"buffer_size"`
	// SpillDir (otlp only), when set, keeps what does not fit in memory in
	// files there, delivered in order, after a restart too. Default: none.
	SpillDir string `yaml:"spill_dir"`
	// SpillSize bounds the spill files. Default 1GiB.
	SpillSize ByteSize `yaml:"spill_size"`
}

// ByteSize is a size in bytes that decodes from 1048576, "512KiB", "16MiB"
// or "1GiB".
type ByteSize int64

// Metrics configures the self-metrics endpoint.
type Metrics struct {
	Addr string `yaml:"addr"` // default 127.0.0.1:9464; "off" disables
}

// Duration is a time.Duration that decodes from "30s" style strings.
type Duration time.Duration

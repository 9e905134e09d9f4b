package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// envOf is an environment holding kv.
func envOf(kv map[string]string) Env {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

// mustLoad loads a fixture and fails the test on error.
func mustLoad(tb testing.TB, path string, env Env) *Config {
	tb.Helper()
	c, err := LoadEnv(path, env)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	return c
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // every error line, in order
	}{
		{"bad_kind.yaml", []string{
			`testdata/bad_kind.yaml:6: routes[1].kind: "logn" is not one of login, authorize, token, logout, other`,
		}},
		{"unknown_key.yaml", []string{
			`testdata/unknown_key.yaml:4: routes[0].pth: unknown key; accepted here: name, kind, method, path, case_sensitive, prefix, results, failure_matchers`,
			`testdata/unknown_key.yaml:8: security.username.salt: unknown key; accepted here: body_fields, header, privacy, key_file, key_env, random_key, lowercase`,
		}},
		{"bad_types.yaml", []string{
			`testdata/bad_types.yaml:1: capture_bytes: "lots" is not an integer`,
			`testdata/bad_types.yaml:2: response_timeout: "30" is not a duration; use a number with a unit such as 500ms, 30s, 2m`,
			`testdata/bad_types.yaml:7: routes[0].case_sensitive: "sometimes" is not a boolean (true or false)`,
			`testdata/bad_types.yaml:9: security.client_subnet: "maybe" is not a boolean (true or false)`,
		}},
		{"bad_routes.yaml", []string{
			`testdata/bad_routes.yaml:2: routes[0].name: missing; it is the span name, e.g. auth.login`,
			`testdata/bad_routes.yaml:3: routes[0].path: "login" does not start with "/"`,
			`testdata/bad_routes.yaml:4: routes[1].name: "auth token" must be at most 128 bytes without spaces or control characters`,
			`testdata/bad_routes.yaml:6: routes[1].method: "GET POST" is not an HTTP method (a token such as GET or POST); leave it out for any method`,
			`testdata/bad_routes.yaml:7: routes[1].path: "/oauth/**/token": "/**" is only accepted at the end`,
			`testdata/bad_routes.yaml:10: routes[2].path: "/api/{id}/{id}": parameter {id} appears twice`,
			`testdata/bad_routes.yaml:13: routes[3].path: "/x*y": "*" must be a whole segment ("/*/" or a final "/**")`,
			`testdata/bad_routes.yaml:16: routes[4].path: "/a//b" has an empty segment ("//")`,
			`testdata/bad_routes.yaml:19: routes[5].path: "/q?x=1" contains '?'; a route path has no query or fragment`,
			`testdata/bad_routes.yaml:23: routes[7]: routes[6] (auth.e) already matches GET /api/**, so this route never matches`,
		}},
		{"bad_route_match.yaml", []string{
			`testdata/bad_route_match.yaml:8: routes[1].prefix: has no effect on "/api/**", which ends in "/**" and takes any rest already; remove one`,
			`testdata/bad_route_match.yaml:11: routes[2].path: "/login;jsessionid=x" contains ';'; path parameters (";jsessionid=...") are stripped from request paths before matching, so leave them out`,
			`testdata/bad_route_match.yaml:14: routes[3].path: "/win\\login" contains a backslash; request paths are matched with backslashes read as "/", so write "/"`,
		}},
		{"shadowed_routes.yaml", []string{
			`testdata/shadowed_routes.yaml:6: routes[1]: routes[0] (auth.login) already matches POST /LOGIN, so this route never matches`,
			`testdata/shadowed_routes.yaml:14: routes[3]: routes[2] (auth.page) already matches HEAD /page, so this route never matches`,
		}},
		{"bad_results.yaml", []string{
			`testdata/bad_results.yaml:6: routes[0].results.200: "succes" is not one of success, failure, error, unknown (optionally with /reason, e.g. failure/invalid_credentials)`,
			`testdata/bad_results.yaml:9: routes[0].results.302: "success/redirect": success takes no reason`,
			`testdata/bad_results.yaml:8: routes[0].results.401: "failure/Bad-Reason": reason "Bad-Reason" is not snake_case (a-z, 0-9, _)`,
			`testdata/bad_results.yaml:7: routes[0].results.6xx: "6xx" is not a status code (100..599) or class (1xx..5xx)`,
			`testdata/bad_results.yaml:12: routes[0].failure_matchers[0]: set json_field or contains`,
			`testdata/bad_results.yaml:13: routes[0].failure_matchers[1]: set json_field or contains, not both`,
			`testdata/bad_results.yaml:13: routes[0].failure_matchers[1].json_field: "a..b" is not a dotted path such as error.code`,
			`testdata/bad_results.yaml:17: routes[0].failure_matchers[2].equals: only applies with json_field; use contains for a substring`,
			`testdata/bad_results.yaml:18: routes[0].failure_matchers[2].reason: "Locked" is not snake_case (a-z, 0-9, _)`,
			`testdata/bad_results.yaml:19: routes[0].failure_matchers[2].result: "success" is not one of failure, error`,
		}},
		{"bad_targets.yaml", []string{
			`testdata/bad_targets.yaml:1: capture_bytes: 32 is not in 64..16384`,
			`testdata/bad_targets.yaml:2: response_bytes: 20000 is not in 64..16384`,
			`testdata/bad_targets.yaml:4: targets[0]: set at most one of pid, exe, port (2 set)`,
			`testdata/bad_targets.yaml:6: targets[1].exe: "bin/python3" is neither a base name (python3*) nor an absolute path (/usr/bin/python3*, /opt/**/bin/java)`,
			`testdata/bad_targets.yaml:7: targets[2].exe: "/usr/bin/[" is not a valid glob (path.Match syntax: *, ?, [a-z], and ** for any directories)`,
			`testdata/bad_targets.yaml:8: targets[3].port: 70000 is not in 1..65535`,
			`testdata/bad_targets.yaml:9: targets[4]: selects nothing; set pid, exe or port, or a Kubernetes selector (k8s_namespace, k8s_pod_labels, k8s_workload, k8s_container)`,
		}},
		{"bad_k8s_targets.yaml", []string{
			`testdata/bad_k8s_targets.yaml:2: targets[0].k8s_namespace: "Shop_1" is not a namespace name (lower-case letters, digits and '-', at most 63)`,
			`testdata/bad_k8s_targets.yaml:5: targets[1].k8s_pod_labels.bad key!: "bad key!" is not a label key ([prefix/]name, the name at most 63 of letters, digits, '-', '_', '.')`,
			`testdata/bad_k8s_targets.yaml:6: targets[1].k8s_pod_labels.tier: "not valid" is not a label value (at most 63 of letters, digits, '-', '_', '.')`,
			`testdata/bad_k8s_targets.yaml:7: targets[2].k8s_workload.kind: "deployment" is not one of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob`,
			`testdata/bad_k8s_targets.yaml:8: targets[3].k8s_workload.kind: missing; one of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob`,
			`testdata/bad_k8s_targets.yaml:8: targets[3].k8s_workload.name: "Login" is not a workload name (lower-case letters, digits, '-' and '.')`,
			`testdata/bad_k8s_targets.yaml:9: targets[4]: set at most one of pid, exe, port (2 set)`,
			`testdata/bad_k8s_targets.yaml:9: targets[4].k8s_container: "-sidecar" is not a container name (lower-case letters, digits and '-', at most 63)`,
		}},
		{"bad_security.yaml", []string{
			`testdata/bad_security.yaml:7: security.username.privacy: "md5" is not one of hash, plain, drop`,
			`testdata/bad_security.yaml:9: security.username.body_fields[0]: "" is not a field name or dotted path such as user.email`,
			`testdata/bad_security.yaml:9: security.username.body_fields[1]: "user..name" is not a field name or dotted path such as user.email`,
			`testdata/bad_security.yaml:8: security.username.header: "X User" is not a header name`,
			`testdata/bad_security.yaml:11: security.api_key.headers[0]: "X:Key" is not a header name`,
			`testdata/bad_security.yaml:12: security.api_key.query_params[0]: "a=b" is not a query parameter name`,
			`testdata/bad_security.yaml:13: security.session_cookies[0]: "my cookie" is not a cookie name`,
			`testdata/bad_security.yaml:15: security.jwt.roles_claim: ".roles" is not a claim name or dotted path such as realm_access.roles`,
			`testdata/bad_security.yaml:16: security.jwt.leeway: -1s is negative`,
			`testdata/bad_security.yaml:17: security.trusted_proxies[0]: "10.0.0.0/33" is not a CIDR such as 10.0.0.0/8 or 10.1.2.3/32`,
			`testdata/bad_security.yaml:17: security.trusted_proxies[1]: "10.1.2.3" is not a CIDR such as 10.0.0.0/8 or 10.1.2.3/32`,
			`testdata/bad_security.yaml:17: security.trusted_proxies[2]: "proxy.local" is not a CIDR such as 10.0.0.0/8 or 10.1.2.3/32`,
			`testdata/bad_security.yaml:19: exporter.kind: "kafka" is not one of stdout, otlp`,
			`testdata/bad_security.yaml:21: metrics.addr: "localhost": not host:port; accepted: host:port or off`,
		}},
		{"bad_exporter.yaml", []string{
			`testdata/bad_exporter.yaml:5: exporter.buffer_size: 1KiB is below 64KiB`,
			`testdata/bad_exporter.yaml:6: exporter.spill_dir: only applies to kind otlp (stdout is not retried)`,
			`testdata/bad_exporter.yaml:7: exporter.spill_size: 1000B is below 1MiB`,
		}},
		{"bad_size.yaml", []string{
			`testdata/bad_size.yaml:6: exporter.buffer_size: "twelve" is not a size; use bytes or a number with a unit such as 512KiB, 16MiB, 1GiB`,
		}},
		{"two_keys.yaml", []string{
			`testdata/two_keys.yaml:6: security.username: set only one of key_env, key_file, random_key`,
		}},
		{"stdout_endpoint.yaml", []string{
			`testdata/stdout_endpoint.yaml:10: exporter.endpoint: is set but kind is stdout; remove one`,
			`testdata/stdout_endpoint.yaml:10: exporter.endpoint: "http://" is not host:port or an http(s):// URL`,
		}},
		{"no_routes.yaml", []string{
			`testdata/no_routes.yaml:2: routes: no route; add at least one (name, kind, path)`,
		}},
		{"duplicate_key.yaml", []string{
			`testdata/duplicate_key.yaml:5: routes[0].path: mapping key "path" already defined at line 4`,
		}},
		{"syntax.yaml", []string{
			`testdata/syntax.yaml:2: invalid YAML: did not find expected ',' or ']'`,
		}},
		{"two_docs.yaml", []string{
			`testdata/two_docs.yaml:8: has a second YAML document; only one is accepted`,
		}},
		{"empty.yaml", []string{
			`testdata/empty.yaml: is empty; it needs at least routes`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := LoadEnv(filepath.Join("testdata", tt.file), noEnv)
			if err == nil {
				t.Fatalf("loaded %+v, want errors", c)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestLoadFull(t *testing.T) {
	got := mustLoad(t, "testdata/full.yaml", noEnv)
	got.src = nil
	want := &Config{
		ServiceName:     "shop",
		CaptureBytes:    8192,
		ResponseBytes:   512,
		BurstBytes:      DefaultBurstBytes,
		ResponseTimeout: Duration(500 * time.Millisecond),
		Targets: []Target{
			{PID: 4242},
			{Exe: "/usr/local/bin/node*", ServiceName: "web"},
			{Port: 8080},
		},
		Routes: []Route{
			{
				Name: "auth.login", Kind: KindLogin, Method: "POST", Path: "/login", CaseSensitive: true, Prefix: true,
				Results: map[string]string{"200": "success", "4xx": "failure/invalid_credentials"},
				FailureMatchers: []BodyMatcher{
					{JSONField: "error.code", Equals: "mfa", Reason: "mfa_required"},
					{Contains: "locked", Reason: "locked", Result: "failure"},
				},
			},
			{Name: "auth.authorize", Kind: KindAuthorize, Method: "", Path: "/api/{tenant}/*/**"},
		},
		Security: Security{
			Username: UsernameConfig{
				BodyFields: []string{"user.email"}, Header: "X-User", Privacy: PrivacyPlain,
				Lowercase: boolPtr(false),
			},
			APIKey:         APIKeyConfig{Headers: []string{"X-Token"}, QueryParams: []string{"key"}},
			SessionCookies: []string{"sid"},
			JWT: JWTConfig{RolesClaim: "realm_access.roles", Leeway: Duration(5 * time.Second),
				JWKSFile: "/etc/authprobe/jwks.json"},
			TrustedProxies:   []string{"10.0.0.0/8", "::1/128"},
			ClientSubnet:     boolPtr(false),
			StatusUnsetOn4xx: true,
		},
		// An endpoint makes OTLP the default; not loopback, so TLS.
		Exporter: Exporter{Kind: ExporterOTLP, Endpoint: "collector.example:4317", Insecure: boolPtr(false),
			BufferSize: 4 << 20, SpillDir: "/var/lib/authprobe/spill", SpillSize: 512 << 20},
		Metrics: Metrics{Addr: "off"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantExporter Exporter
	}{
		{"no env", nil, Exporter{Kind: ExporterStdout, BufferSize: DefaultBufferSize, SpillSize: DefaultSpillSize}},
		{"endpoint env", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, Exporter{Kind: ExporterOTLP, BufferSize: DefaultBufferSize, SpillSize: DefaultSpillSize}},
		{"traces endpoint env", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, Exporter{Kind: ExporterOTLP, BufferSize: DefaultBufferSize, SpillSize: DefaultSpillSize}},
		{"empty env value", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, Exporter{Kind: ExporterStdout, BufferSize: DefaultBufferSize, SpillSize: DefaultSpillSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, "testdata/minimal.yaml", envOf(tt.env))
			if !reflect.DeepEqual(c.Exporter, tt.wantExporter) {
				t.Errorf("exporter %+v, want %+v", c.Exporter, tt.wantExporter)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"capture_bytes", c.CaptureBytes, 4096},
				{"response_bytes", c.ResponseBytes, 1024},
				{"burst_bytes", c.BurstBytes, 256 << 10},
				{"response_timeout", c.ResponseTimeout, Duration(30 * time.Second)},
				{"metrics.addr", c.Metrics.Addr, "127.0.0.1:9464"},
				{"privacy", c.Security.Username.Privacy, PrivacyHash},
				{"lowercase", *c.Security.Username.Lowercase, true},
				{"client_subnet", *c.Security.ClientSubnet, true},
				{"api_key.headers", c.Security.APIKey.Headers, []string{"X-API-Key"}},
				{"api_key.query_params", c.Security.APIKey.QueryParams, []string{"api_key"}},
				{"body_fields", c.Security.Username.BodyFields, []string{"username", "user", "email", "login"}},
				{"roles_claim", c.Security.JWT.RolesClaim, "roles"},
				{"method upper-cased", c.Routes[0].Method, "POST"},
			}
			for _, ck := range checks {
				if !reflect.DeepEqual(ck.got, ck.want) {
					t.Errorf("%s = %v, want %v", ck.what, ck.got, ck.want)
				}
			}
		})
	}
}

func TestInsecureDefault(t *testing.T) {
	for ep, want := range map[string]bool{
		"127.0.0.1:4317":        true,
		"localhost:4317":        true,
		"[::1]:4317":            true,
		"http://127.0.0.1:4317": true,
		"collector:4317":        false,
		"https://10.0.0.1:4317": false,
	} {
		data := "routes: [{name: a, kind: login, path: /l}]\nsecurity: {username: {random_key: true}}\nexporter: {endpoint: \"" + ep + "\"}\n"
		c, err := ParseEnv("t.yaml", []byte(data), noEnv)
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
		if c.Exporter.Kind != ExporterOTLP || *c.Exporter.Insecure != want {
			t.Errorf("%s: kind %s insecure %v, want otlp %v", ep, c.Exporter.Kind, *c.Exporter.Insecure, want)
		}
	}
}

// Kubernetes selectors, alone or with a process selector.
func TestLoadK8sTargets(t *testing.T) {
	c := mustLoad(t, "testdata/k8s_targets.yaml", noEnv)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := []Target{
		{K8sNamespace: "shop", K8sPodLabels: map[string]string{"app.kubernetes.io/name": "login", "tier": "web"}, ServiceName: "shop-login"},
		{K8sWorkload: K8sWorkload{Kind: "Deployment", Name: "idp"}, K8sContainer: "server", Port: 8080},
		{K8sWorkload: K8sWorkload{Kind: "CronJob", Name: "token-rotator"}, Exe: "/usr/bin/python3*"},
	}
	if !reflect.DeepEqual(c.Targets, want) {
		t.Errorf("targets = %+v\nwant %+v", c.Targets, want)
	}
	for i, tg := range c.Targets {
		if !tg.HasK8s() {
			t.Errorf("targets[%d].HasK8s() = false", i)
		}
	}
	if (Target{Port: 1}).HasK8s() {
		t.Error("a port target has no Kubernetes selector")
	}
}

// The CLI adds --pid targets after Load and validates again.
func TestValidateTargets(t *testing.T) {
	c := mustLoad(t, "testdata/minimal.yaml", noEnv)
	err := c.Validate()
	want := "testdata/minimal.yaml: targets: no target; add one (pid, exe, port or a k8s_ selector) here or with --pid"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
	c.Targets = append(c.Targets, Target{PID: 1234})
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a pid target: %v", err)
	}
	// A later change still reports the file line it came from.
	c.Routes[0].Kind = "nope"
	want = `testdata/minimal.yaml:3: routes[0].kind: "nope" is not one of login, authorize, token, logout, other`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
}

// A Config built in code (no file) reports paths only.
func TestValidateNoSource(t *testing.T) {
	c := &Config{}
	c.applyDefaults(noEnv)
	err := c.Validate()
	want := "targets: no target; add one (pid, exe, port or a k8s_ selector) here or with --pid\n" +
		"routes: no route; add at least one (name, kind, path)"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate =\n%v\nwant\n%s", err, want)
	}
}

func TestDeployExample(t *testing.T) {
	c := mustLoad(t, "../deploy/authprobe.yaml", noEnv)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	var names []string
	for _, r := range c.Routes {
		names = append(names, r.Method+" "+r.Path+" "+r.Name+"/"+r.Kind)
	}
	want := []string{
		"POST /login auth.login/login",
		" /api/** auth.authorize/authorize",
		"POST /oauth/token auth.token/token",
		"POST /logout auth.logout/logout",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("routes %q, want %q", names, want)
	}
	if !c.Security.Username.RandomKey || c.Security.Username.Privacy != PrivacyHash {
		t.Errorf("username config %+v", c.Security.Username)
	}
	if len(c.Targets) != 6 || c.Targets[0].Exe != "python*" || c.CaptureBytes != 4096 || c.ServiceName == "" {
		t.Errorf("targets %+v capture %d service %q", c.Targets, c.CaptureBytes, c.ServiceName)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"30s", 30 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"30", 0, `line 1: "30" is not a duration`},
		{"soon", 0, `line 1: "soon" is not a duration`},
		{"[1s]", 0, `is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := yaml.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || time.Duration(d) != tt.want {
				t.Fatalf("got %v, %v; want %v", d, err, tt.want)
			}
			out, err := yaml.Marshal(d)
			if err != nil || strings.TrimSpace(string(out)) != tt.want.String() {
				t.Errorf("marshal %q %v", out, err)
			}
		})
	}
}

func TestParsePathPattern(t *testing.T) {
	tests := []struct {
		in      string
		want    PathPattern
		wantErr bool
	}{
		{"/", PathPattern{}, false},
		{"/**", PathPattern{Rest: true}, false},
		{"/login", PathPattern{Segments: []PathSegment{{Literal: "login"}}}, false},
		{"/login/", PathPattern{Segments: []PathSegment{{Literal: "login"}}}, false},
		{"/users/{id}/*", PathPattern{Segments: []PathSegment{{Literal: "users"}, {Wild: true, Param: "id"}, {Wild: true}}}, false},
		{"/api/**", PathPattern{Segments: []PathSegment{{Literal: "api"}}, Rest: true}, false},
		{"", PathPattern{}, true},
		{"login", PathPattern{}, true},
		{"/a/../b", PathPattern{}, true},
		{"/a/./b", PathPattern{}, true},
		{"/a**", PathPattern{}, true},
		{"/{}", PathPattern{}, true},
		{"/{1a}", PathPattern{}, true},
		{"/a{b}", PathPattern{}, true},
		{"/a b", PathPattern{}, true},
		{"/a#b", PathPattern{}, true},
		{"/**/", PathPattern{Rest: true}, false},
		{"/login;jsessionid=1", PathPattern{}, true},
		{"/a\\b", PathPattern{}, true},
		{"/s%7Eign", PathPattern{Segments: []PathSegment{{Literal: "s%7Eign"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePathPattern(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestShadows(t *testing.T) {
	tests := []struct {
		name string
		e, r Route
		want bool
	}{
		{"same route", Route{Path: "/login"}, Route{Path: "/login"}, true},
		{"any method first", Route{Path: "/login"}, Route{Method: "POST", Path: "/login"}, true},
		{"other method", Route{Method: "GET", Path: "/login"}, Route{Method: "POST", Path: "/login"}, false},
		{"GET takes HEAD", Route{Method: "GET", Path: "/login"}, Route{Method: "HEAD", Path: "/login"}, true},
		{"HEAD does not take GET", Route{Method: "HEAD", Path: "/login"}, Route{Method: "GET", Path: "/login"}, false},
		{"other case, insensitive first", Route{Path: "/login"}, Route{Path: "/Login"}, true},
		{"other case, sensitive first", Route{Path: "/login", CaseSensitive: true}, Route{Path: "/Login"}, false},
		{"sensitive first, insensitive later", Route{Path: "/login", CaseSensitive: true}, Route{Path: "/login"}, false},
		{"insensitive first, sensitive later", Route{Path: "/login"}, Route{Path: "/login", CaseSensitive: true}, true},
		{"prefix later", Route{Path: "/login"}, Route{Path: "/login", Prefix: true}, false},
		{"prefix first", Route{Path: "/login", Prefix: true}, Route{Path: "/login"}, true},
		{"other path", Route{Path: "/login"}, Route{Path: "/logout"}, false},
		{"no path", Route{}, Route{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shadows(tt.e, tt.r); got != tt.want {
				t.Errorf("shadows(%+v, %+v) = %v, want %v", tt.e, tt.r, got, tt.want)
			}
		})
	}
}

func TestParseResult(t *testing.T) {
	keys := map[string][2]int{"200": {200, 0}, "401": {401, 0}, "4xx": {0, 4}, "1xx": {0, 1}, "599": {599, 0}}
	for k, want := range keys {
		code, class, err := ParseResultKey(k)
		if err != nil || code != want[0] || class != want[1] {
			t.Errorf("ParseResultKey(%q) = %d, %d, %v", k, code, class, err)
		}
	}
	for _, k := range []string{"", "600", "6xx", "20", "2000", "4XX", "x00", "0xx"} {
		if _, _, err := ParseResultKey(k); err == nil {
			t.Errorf("ParseResultKey(%q) accepted", k)
		}
	}
	values := map[string][2]string{
		"success": {"success", ""}, "failure": {"failure", ""}, "error/server_error": {"error", "server_error"},
		"unknown/no_response": {"unknown", "no_response"}, "failure/mfa_required": {"failure", "mfa_required"},
	}
	for v, want := range values {
		r, reason, err := ParseResultValue(v)
		if err != nil || r != want[0] || reason != want[1] {
			t.Errorf("ParseResultValue(%q) = %q, %q, %v", v, r, reason, err)
		}
	}
	for _, v := range []string{"", "ok", "success/x", "failure/", "failure/A", "failure/a b", "Failure"} {
		if _, _, err := ParseResultValue(v); err == nil {
			t.Errorf("ParseResultValue(%q) accepted", v)
		}
	}
}

// FuzzParse checks that no input panics, that every error names the file,
// and that Parse and Validate agree on what they both check.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range append(files, "../deploy/authprobe.yaml") {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseEnv("f.yaml", data, noEnv)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml") && !strings.HasPrefix(line, "  ") {
					t.Fatalf("error line without file: %q", line)
				}
			}
			return
		}
		c.Targets = append(c.Targets, Target{PID: 1})
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
	})
}

// An alias bomb is refused quickly rather than expanded.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + string(rune('0'+i%10)) + string(rune('a'+i)) + ": &a" + strings.Repeat("z", i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			if i == 1 {
				b.WriteString("*a0")
			} else {
				b.WriteString("*a" + strings.Repeat("z", i-1))
			}
		}
		b.WriteString("]\n")
	}
	b.WriteString("routes: *a" + strings.Repeat("z", 11) + "\n")
	start := time.Now()
	if _, err := ParseEnv("bomb.yaml", []byte(b.String()), noEnv); err == nil {
		t.Fatal("alias bomb accepted")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestOnlyRoutes: a config with nothing but routes runs: a per-run hash
// key (the agent warns), the built-in default targets.
func TestOnlyRoutes(t *testing.T) {
	for _, file := range []string{"testdata/hash_no_key.yaml"} {
		c := mustLoad(t, file, noEnv)
		u := c.Security.Username
		if u.Privacy != PrivacyHash || !u.RandomKey {
			t.Errorf("%s: username %+v, want hash with a random key", file, u)
		}
		used, err := c.UseDefaultTargets()
		if err != nil || !used {
			t.Fatalf("%s: UseDefaultTargets = %v, %v", file, used, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", file, err)
		}
		d, err := Default(noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Targets, d.Targets) {
			t.Errorf("%s: targets %+v, want the default's %+v", file, c.Targets, d.Targets)
		}
	}
	c := mustLoad(t, "testdata/full.yaml", noEnv)
	if used, _ := c.UseDefaultTargets(); used || len(c.Targets) != 3 {
		t.Errorf("configured targets replaced: %+v", c.Targets)
	}
}

// TestBuiltinDefault: the built-in config is valid as it is and catches
// the common interpreters wherever they are installed.
func TestBuiltinDefault(t *testing.T) {
	c, err := Default(noEnv)
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Exporter.Kind != ExporterStdout || !c.Security.Username.RandomKey {
		t.Errorf("exporter %+v username %+v", c.Exporter, c.Security.Username)
	}
	otlp, err := Default(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}))
	if err != nil || otlp.Exporter.Kind != ExporterOTLP {
		t.Errorf("with OTEL_EXPORTER_OTLP_ENDPOINT: %+v, %v", otlp, err)
	}
	data, err := os.ReadFile("default.yaml")
	if err != nil || !bytes.Equal(data, DefaultYAML()) {
		t.Errorf("DefaultYAML differs from default.yaml (%v)", err)
	}
	matches := func(exe string) bool {
		for _, tg := range c.Targets {
			if tg.Exe != "" && MatchExe(tg.Exe, exe) {
				return true
			}
		}
		return false
	}
	for _, exe := range []string{
		"/usr/bin/python3.11", "/usr/local/bin/python3.12", "/root/.pyenv/versions/3.11.7/bin/python3.11",
		"/home/dev/app/.venv/bin/python", "/usr/bin/node", "/usr/local/bin/node",
		"/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "/usr/local/bin/ruby", "/usr/sbin/php-fpm8.2",
	} {
		if !matches(exe) {
			t.Errorf("no default target matches %s", exe)
		}
	}
	for _, exe := range []string{"/usr/bin/bash", "/usr/sbin/sshd", "/usr/local/bin/authprobe"} {
		if matches(exe) {
			t.Errorf("a default target matches %s", exe)
		}
	}
	routes := map[string]bool{}
	for _, r := range c.Routes {
		routes[r.Method+" "+r.Path+" "+r.Kind] = true
	}
	for _, want := range []string{"POST /login login", "POST /oauth/token token", " /oauth/authorize authorize", " /logout logout"} {
		if !routes[want] {
			t.Errorf("no default route %q", want)
		}
	}
}

func TestExePattern(t *testing.T) {
	valid := []string{"python3*", "node", "php-fpm[0-9]*", "/usr/bin/python3*", "/opt/**/bin/java", "/**/python3", "/usr/**"}
	for _, p := range valid {
		if err := CheckExePattern(p); err != nil {
			t.Errorf("CheckExePattern(%q) = %v", p, err)
		}
	}
	invalid := map[string]string{
		"bin/python3":     "neither a base name",
		"[":               "not a valid glob",
		"/usr/bin/[":      "not a valid glob",
		"/opt/**java":     "whole segment",
		"/opt/a**/java":   "whole segment",
		"python\x00":      "control characters",
		"./venv/bin/pyth": "neither a base name",
	}
	for p, want := range invalid {
		if err := CheckExePattern(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckExePattern(%q) = %v, want %q", p, err, want)
		}
	}
	tests := []struct {
		pattern, exe string
		want         bool
	}{
		{"python3*", "/usr/bin/python3.11", true},
		{"python3*", "/usr/local/bin/python3", true},
		{"python3*", "/usr/bin/python2.7", false},
		{"python3*", "python3", true},
		{"python3*", "", false},
		{"/usr/bin/python3*", "/usr/bin/python3.11", true},
		{"/usr/bin/python3*", "/usr/local/bin/python3.11", false},
		{"/usr/**/python3*", "/usr/bin/python3.11", true},
		{"/usr/**/python3*", "/usr/local/bin/python3.11", true},
		{"/usr/**/python3*", "/usr/python3", true},
		{"/usr/**/python3*", "/opt/python3", false},
		{"/**/bin/python*", "/root/.pyenv/versions/3.11.7/bin/python3.11", true},
		{"/**/bin/python*", "/python3", false},
		{"/opt/**", "/opt/app/bin/java", true},
		{"/opt/**", "/opt", false},
		{"/opt/**/**/java", "/opt/java", true},
		{"/opt/*/java", "/opt/a/b/java", false},
		{"/**/[", "/a/b", false},
		{"/**/java", "relative/java", false},
	}
	for _, tt := range tests {
		if got := MatchExe(tt.pattern, tt.exe); got != tt.want {
			t.Errorf("MatchExe(%q, %q) = %v, want %v", tt.pattern, tt.exe, got, tt.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := map[string]int64{"0": 0, "1048576": 1 << 20, "512KiB": 512 << 10, "16MiB": 16 << 20, "1GiB": 1 << 30, "10 MiB": 10 << 20, "7B": 7}
	for in, want := range tests {
		var b ByteSize
		if err := yaml.Unmarshal([]byte(in), &b); err != nil || int64(b) != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"twelve", "-1", "1.5MiB", "16MB", "1TiB", "99999999999999GiB", "[1]"} {
		var b ByteSize
		if err := yaml.Unmarshal([]byte(in), &b); err == nil {
			t.Errorf("%q decoded as %d, want an error", in, b)
		}
	}
	if got := ByteSize(16 << 20).String(); got != "16MiB" {
		t.Errorf("String = %q", got)
	}
}

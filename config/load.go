package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the agent looks for its config when --config is
// not given.
const DefaultPath = "/etc/authprobe/authprobe.yaml"

// builtinName names the built-in default in messages.
const builtinName = "built-in default config"

// defaultYAML is the built-in default config, documented in the file
// itself (`authprobe defaults` prints it).
//
//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the built-in default config file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default parses the built-in default config with an explicit environment
// (which decides the exporter, as for any config).
func Default(env Env) (*Config, error) {
	return ParseEnv(builtinName, defaultYAML, env)
}

// UseDefaultTargets gives a config that names no target the built-in
// default's (common interpreters and ports), so that a config with only
// routes runs. It reports whether it did.
func (c *Config) UseDefaultTargets() (bool, error) {
	if len(c.Targets) > 0 {
		return false, nil
	}
	d, err := Default(nil)
	if err != nil {
		return false, err
	}
	c.Targets = d.Targets
	return true, nil
}

// Env looks up an environment variable; os.LookupEnv fits. Defaults that
// depend on the environment take it explicitly so tests can set it.
type Env func(key string) (string, bool)

// maxConfigBytes bounds a config file; real ones are a few KiB.
const maxConfigBytes = 1 << 20

// Load reads, decodes, defaults and validates the config file at path. Targets
// are not required here: the CLI may add them from flags and then calls
// Validate.
func Load(path string) (*Config, error) {
	return LoadEnv(path, os.LookupEnv)
}

// LoadEnv is Load with an explicit environment.
func LoadEnv(path string, env Env) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return ParseEnv(path, data, env)
}

// Parse decodes, defaults and validates a config; name (usually the file
// path) prefixes every error message.
func Parse(name string, data []byte) (*Config, error) {
	return ParseEnv(name, data, os.LookupEnv)
}

// ParseEnv is Parse with an explicit environment.
func ParseEnv(name string, data []byte, env Env) (*Config, error) {
	if len(data) > maxConfigBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("is larger than %d bytes", maxConfigBytes)}
	}
	src := &source{name: name, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, src.yamlError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null" {
		return nil, &Error{File: name, Msg: "is empty; it needs at least routes"}
	}
	var errs []error
	w := walker{src: src}
	w.walk(root.Content[0], reflect.TypeOf(Config{}), "")
	errs = append(errs, w.errs...)

	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		errs = append(errs, src.decodeErrors(err, len(w.errs) > 0)...)
	} else {
		var extra yaml.Node
		if err := dec.Decode(&extra); err == nil {
			errs = append(errs, &Error{File: name, Line: extra.Line, Msg: "has a second YAML document; only one is accepted"})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.src = src
	c.applyDefaults(env)
	if err := c.validate(false); err != nil {
		return nil, err
	}
	return c, nil
}

// Error is one problem with a config, located in its file when known.
type Error struct {
	File string // "" when the config was not read from a file
	Line int    // 0 when unknown
	Path string // the key, e.g. routes[1].kind; "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// source remembers where each key of a config came from, so that errors
// found after decoding still point at a line.
type source struct {
	name  string
	lines map[string]int // path → line
}

// errorAt builds an Error for path, located at path or its nearest
// recorded ancestor.
func (s *source) errorAt(path, msg string) *Error {
	e := &Error{Path: path, Msg: msg}
	if s == nil {
		return e
	}
	e.File = s.name
	for p := path; ; {
		if l, ok := s.lines[p]; ok {
			e.Line = l
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return e
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into an Error with its line.
func (s *source) yamlError(err error) error {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &Error{File: s.name, Line: l, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: s.name, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$")

// decodeErrors turns a decoding error into Errors with lines and, where the
// line identifies one key, its path. Unknown keys are left out when the
// walker already reported them with the accepted names.
func (s *source) decodeErrors(err error, haveUnknown bool) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{s.yamlError(err)}
	}
	var errs []error
	for _, m := range te.Errors {
		sub := lineRE.FindStringSubmatch(m)
		if sub == nil {
			errs = append(errs, &Error{File: s.name, Msg: m})
			continue
		}
		msg := sub[2]
		if haveUnknown && strings.Contains(msg, " not found in type ") {
			continue
		}
		line, _ := strconv.Atoi(sub[1])
		if u := unmarshalRE.FindStringSubmatch(msg); u != nil {
			msg = fmt.Sprintf("%q is not %s", u[2], goTypeWords(u[3]))
		}
		errs = append(errs, &Error{File: s.name, Line: line, Path: s.pathAt(line), Msg: msg})
	}
	return errs
}

// pathAt names the one leaf key recorded on line, "" when none or several.
func (s *source) pathAt(line int) string {
	found := ""
	for p, l := range s.lines {
		if l != line {
			continue
		}
		if found != "" && !strings.HasPrefix(p, found) {
			if strings.HasPrefix(found, p) {
				continue // keep the deeper path
			}
			return ""
		}
		found = p
	}
	return found
}

func goTypeWords(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "config."):
		return "a mapping"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "bool":
		return "a boolean (true or false)"
	case t == "string":
		return "a string"
	}
	return "a " + t
}

// walker checks every mapping key against the yaml tags of the type it
// decodes into (so an unknown key names the accepted ones) and records the
// line of every key.
type walker struct {
	src   *source
	errs  []error
	depth int
	// seen keeps aliased nodes walked once per type: an alias bomb must not
	// expand here either.
	seen map[aliasVisit]bool
}

type aliasVisit struct {
	n *yaml.Node
	t reflect.Type
}

var durationType = reflect.TypeOf(Duration(0))

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.depth > 64 {
		return // the decoder reports what is wrong with absurd nesting
	}
	w.depth++
	defer func() { w.depth-- }()
	if n.Kind == yaml.AliasNode {
		v := aliasVisit{n.Alias, t}
		if n.Alias != nil && !w.seen[v] {
			if w.seen == nil {
				w.seen = map[aliasVisit]bool{}
			}
			w.seen[v] = true
			w.walk(n.Alias, t, path)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error the decoder reports
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				w.walk(v, t, path)
				continue
			}
			f, ok := fieldByTag(t, k.Value)
			p := join(path, k.Value)
			if !ok {
				w.errs = append(w.errs, &Error{File: w.src.name, Line: k.Line, Path: p,
					Msg: fmt.Sprintf("unknown key; accepted here: %s", strings.Join(tagNames(t), ", "))})
				continue
			}
			w.record(p, k, v)
			w.walk(v, f.Type, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.src.lines[p] = e.Line
			w.walk(e, t.Elem(), p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			w.record(p, k, v)
			w.walk(v, t.Elem(), p)
		}
	}
}

// record keeps the line of a key: the value's line for scalars (where a
// bad value is), the key's line otherwise.
func (w *walker) record(path string, k, v *yaml.Node) {
	if v.Kind == yaml.ScalarNode {
		w.src.lines[path] = v.Line
		return
	}
	w.src.lines[path] = k.Line
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() {
			names = append(names, yamlName(f))
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// UnmarshalYAML decodes a Go duration string such as "30s" or "500ms".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if v, err := time.ParseDuration(n.Value); err == nil {
			*d = Duration(v)
			return nil
		}
	}
	// A TypeError lets the decoder go on and report every bad value.
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(
		"line %d: %q is not a duration; use a number with a unit such as 500ms, 30s, 2m", n.Line, n.Value)}}
}

// MarshalYAML encodes a duration as "30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Environment variables that make OTLP the default exporter.
var otlpEndpointEnv = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// Default values.
const (
	DefaultResponseTimeout = 30 * time.Second
	DefaultMetricsAddr     = "127.0.0.1:9464"
	DefaultRolesClaim      = "roles"
	DefaultBufferSize      = 16 << 20
	DefaultSpillSize       = 1 << 30
)

// applyDefaults fills what the file left unset and normalises what has one
// canonical spelling (methods are upper case). env decides the exporter
// default: OTLP when an OTLP endpoint is configured anywhere.
func (c *Config) applyDefaults(env Env) {
	if c.CaptureBytes == 0 {
		c.CaptureBytes = DefaultCaptureBytes
	}
	if c.ResponseBytes == 0 {
		c.ResponseBytes = DefaultResponseBytes
	}
	if c.BurstBytes == 0 {
		c.BurstBytes = DefaultBurstBytes
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = Duration(DefaultResponseTimeout)
	}
	for i := range c.Routes {
		m := strings.ToUpper(c.Routes[i].Method)
		if m == "*" {
			m = "" // "*" reads as "any method", which empty means
		}
		c.Routes[i].Method = m
	}

	s := &c.Security
	if s.Username.Privacy == "" {
		s.Username.Privacy = PrivacyHash
	}
	if u := &s.Username; u.Privacy == PrivacyHash && u.KeyFile == "" && u.KeyEnv == "" {
		// Runs the first time; the agent warns that hashes are per run.
		u.RandomKey = true
	}
	if s.Username.Lowercase == nil {
		s.Username.Lowercase = boolPtr(true)
	}
	if s.Username.BodyFields == nil {
		s.Username.BodyFields = []string{"username", "user", "email", "login"}
	}
	if s.ClientSubnet == nil {
		s.ClientSubnet = boolPtr(true)
	}
	if s.APIKey.Headers == nil {
		s.APIKey.Headers = []string{"X-API-Key"}
	}
	if s.APIKey.QueryParams == nil {
		s.APIKey.QueryParams = []string{"api_key"}
	}
	if s.JWT.RolesClaim == "" {
		s.JWT.RolesClaim = DefaultRolesClaim
	}

	e := &c.Exporter
	if e.Kind == "" {
		e.Kind = ExporterStdout
		if e.Endpoint != "" || envSet(env, otlpEndpointEnv...) {
			e.Kind = ExporterOTLP
		}
	}
	// Plaintext is the default only towards a loopback collector; an endpoint
	// from the environment is left to OTEL_EXPORTER_OTLP_INSECURE.
	if e.Insecure == nil && e.Endpoint != "" {
		e.Insecure = boolPtr(IsLoopbackEndpoint(e.Endpoint))
	}
	if e.BufferSize == 0 {
		e.BufferSize = DefaultBufferSize
	}
	if e.SpillSize == 0 {
		e.SpillSize = DefaultSpillSize
	}
	if c.Metrics.Addr == "" {
		c.Metrics.Addr = DefaultMetricsAddr
	}
}

// UnmarshalYAML decodes a byte count: an integer, or a number with one of
// the units B, KiB, MiB, GiB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if v, ok := parseByteSize(n.Value); ok {
			*b = ByteSize(v)
			return nil
		}
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(
		"line %d: %q is not a size; use bytes or a number with a unit such as 512KiB, 16MiB, 1GiB", n.Line, n.Value)}}
}

func parseByteSize(s string) (int64, bool) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(strings.TrimSpace(s), u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || v < 0 || v > (1<<50)/u.mult {
			return 0, false
		}
		return v * u.mult, true
	}
	return 0, false
}

// MarshalYAML encodes a size in the largest unit that divides it.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String is "16MiB" style.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

func envSet(env Env, keys ...string) bool {
	if env == nil {
		return false
	}
	for _, k := range keys {
		if v, ok := env(k); ok && v != "" {
			return true
		}
	}
	return false
}

// IsLoopbackEndpoint reports whether an OTLP endpoint (host:port or URL)
// is on this machine, where plaintext gRPC is the sensible default.
func IsLoopbackEndpoint(ep string) bool {
	if _, rest, ok := strings.Cut(ep, "://"); ok {
		ep = rest
	}
	ep, _, _ = strings.Cut(ep, "/")
	host, _, err := net.SplitHostPort(ep)
	if err != nil {
		host = ep
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func boolPtr(b bool) *bool { return &b }

// sortedKeys returns m's keys in order, for deterministic error order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

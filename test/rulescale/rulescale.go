// Package rulescale makes a time-scaled copy of a Prometheus rules file for
// tests that cannot wait minutes: it takes the YAML of a rules file and a
// factor, and gives the same rules with every group interval, every `for:`
// and `keep_firing_for:`, and every range window and offset in the
// expressions divided by the factor. Comments, order, labels and
// annotations are kept as they are. Thresholds are not touched: a count
// over a window that is N times shorter needs traffic N times faster, which
// is what a live test sends.
package rulescale

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// durationRE matches a Prometheus duration such as 1m, 2h30m, 250ms.
const durationRE = `(?:\d+(?:ms|s|m|h|d|w|y))+`

var (
	// A range selector [5m] or the range of a subquery [5m:30s].
	rangeRE = regexp.MustCompile(`\[(` + durationRE + `)(?::(` + durationRE + `)?)?\]`)
	// An offset modifier, possibly negative.
	offsetRE = regexp.MustCompile(`\boffset\s+(-?)(` + durationRE + `)`)
)

// Scale returns rules with every duration divided by factor. Durations are
// rounded to whole milliseconds, Prometheus' resolution, and never below 1ms
// unless they were zero.
func Scale(rules []byte, factor float64) ([]byte, error) {
	if !(factor >= 1) {
		return nil, fmt.Errorf("scale factor %v: must be at least 1", factor)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(rules, &doc); err != nil {
		return nil, fmt.Errorf("parse rules: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	groups := mapValue(root, "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, errors.New("parse rules: no groups list")
	}
	s := scaler{factor: factor}
	for _, g := range groups.Content {
		if err := s.duration(mapValue(g, "interval")); err != nil {
			return nil, fmt.Errorf("group interval: %w", err)
		}
		rules := mapValue(g, "rules")
		if rules == nil {
			continue
		}
		for _, r := range rules.Content {
			name := ruleName(r)
			for _, key := range []string{"for", "keep_firing_for"} {
				if err := s.duration(mapValue(r, key)); err != nil {
					return nil, fmt.Errorf("rule %s %s: %w", name, key, err)
				}
			}
			if expr := mapValue(r, "expr"); expr != nil {
				out, err := s.expr(expr.Value)
				if err != nil {
					return nil, fmt.Errorf("rule %s expr: %w", name, err)
				}
				expr.Value = out
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode rules: %w", err)
	}
	return buf.Bytes(), nil
}

type scaler struct{ factor float64 }

// duration rewrites a scalar YAML node holding a duration, if present.
func (s scaler) duration(n *yaml.Node) error {
	if n == nil {
		return nil
	}
	out, err := s.scale(n.Value)
	if err != nil {
		return err
	}
	n.Value = out
	return nil
}

// expr rewrites the range windows, subquery steps and offsets of a PromQL
// expression.
func (s scaler) expr(e string) (string, error) {
	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	e = rangeRE.ReplaceAllStringFunc(e, func(m string) string {
		sub := rangeRE.FindStringSubmatch(m)
		r, err := s.scale(sub[1])
		if err != nil {
			keep(err)
			return m
		}
		if !strings.Contains(m, ":") {
			return "[" + r + "]"
		}
		if sub[2] == "" {
			return "[" + r + ":]"
		}
		step, err := s.scale(sub[2])
		if err != nil {
			keep(err)
			return m
		}
		return "[" + r + ":" + step + "]"
	})
	e = offsetRE.ReplaceAllStringFunc(e, func(m string) string {
		sub := offsetRE.FindStringSubmatch(m)
		d, err := s.scale(sub[2])
		if err != nil {
			keep(err)
			return m
		}
		return "offset " + sub[1] + d
	})
	return e, firstErr
}

// scale divides one Prometheus duration by the factor.
func (s scaler) scale(v string) (string, error) {
	d, err := parseDuration(v)
	if err != nil {
		return "", err
	}
	if d == 0 {
		return "0s", nil
	}
	ms := int64(float64(d/time.Millisecond)/s.factor + 0.5)
	if ms < 1 {
		ms = 1
	}
	return formatDuration(time.Duration(ms) * time.Millisecond), nil
}

var unitRE = regexp.MustCompile(`(\d+)(ms|s|m|h|d|w|y)`)

var units = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// parseDuration parses Prometheus' duration syntax (units ms to y, in
// decreasing order, no fractions).
func parseDuration(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	if !regexp.MustCompile(`^` + durationRE + `$`).MatchString(v) {
		return 0, fmt.Errorf("duration %q: not a Prometheus duration", v)
	}
	var d time.Duration
	for _, m := range unitRE.FindAllStringSubmatch(v, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", v, err)
		}
		d += time.Duration(n) * units[m[2]]
	}
	return d, nil
}

// formatDuration writes d in Prometheus' syntax, largest units first.
func formatDuration(d time.Duration) string {
	var b strings.Builder
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.d
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}

// mapValue returns the value node of key in a YAML mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func ruleName(r *yaml.Node) string {
	if n := mapValue(r, "alert"); n != nil {
		return n.Value
	}
	if n := mapValue(r, "record"); n != nil {
		return n.Value
	}
	return "(unnamed)"
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// series is a scraped Prometheus text page: one value per series line.
type series []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func scrape(url string) (series, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape agent metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	return parseMetrics(string(b))
}

// parseMetrics reads the text exposition format as far as the agent's own
// counters need: `name{k="v",...} value`, comments skipped. Label values
// with escaped quotes or commas are not expected there.
func parseMetrics(text string) (series, error) {
	var out series
	for ln, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics line %d: no value", ln+1)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", ln+1, err)
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			body := strings.TrimSuffix(s.name[i+1:], "}")
			s.name = s.name[:i]
			for _, kv := range strings.Split(body, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					continue
				}
				s.labels[strings.TrimSpace(k)] = strings.Trim(v, `"`)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func (m series) sum(name string) float64 {
	var t float64
	for _, s := range m {
		if s.name == name {
			t += s.value
		}
	}
	return t
}

func (m series) byLabel(name, label string) labelCounts {
	out := labelCounts{}
	for _, s := range m {
		if s.name == name {
			out[s.labels[label]] += uint64(s.value)
		}
	}
	return out
}

// labelCounts are counter values by one label, for example drops by reason.
type labelCounts map[string]uint64

// sub is the increase since before; counters only grow in one agent run.
func (c labelCounts) sub(before labelCounts) labelCounts {
	out := labelCounts{}
	for k, v := range c {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

func (c labelCounts) total() uint64 {
	var t uint64
	for _, v := range c {
		t += v
	}
	return t
}

func (c labelCounts) add(o labelCounts) labelCounts {
	out := labelCounts{}
	for k, v := range c {
		out[k] += v
	}
	for k, v := range o {
		out[k] += v
	}
	return out
}

// String is "0" or the total with its non-zero reasons: "12 (ringbuf_full 12)".
func (c labelCounts) String() string {
	if c.total() == 0 {
		return "0"
	}
	var parts []string
	for k, v := range c {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d (%s)", c.total(), strings.Join(parts, ", "))
}

package rulescale

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestScaleFixture(t *testing.T) {
	in := mustRead(t, "testdata/in.yaml")
	want := mustRead(t, "testdata/want60.yaml")
	got, err := Scale(in, 60)
	if err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Scale(in, 60):\n%s\nwant:\n%s", got, want)
	}
}

func TestScaleDurations(t *testing.T) {
	tests := []struct {
		in     string
		factor float64
		want   string
	}{
		{"1m", 60, "1s"},
		{"15s", 60, "250ms"},
		{"2h", 60, "2m"},
		{"0m", 60, "0s"},
		{"1ms", 60, "1ms"}, // never below Prometheus' resolution
		{"1h30m", 2, "45m"},
		{"1d", 24, "1h"},
		{"5m", 1, "5m"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := scaler{factor: tt.factor}.scale(tt.in)
			if err != nil {
				t.Fatalf("scale(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("scale(%q) / %v = %q, want %q", tt.in, tt.factor, got, tt.want)
			}
		})
	}
}

func TestScaleErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		factor float64
	}{
		{"factor below one", "groups: []", 0.5},
		{"not yaml", "groups: [", 60},
		{"no groups", "rules: []", 60},
		{"bad for", "groups: [{name: g, rules: [{alert: A, expr: x, for: soon}]}]", 60},
		{"bad interval", "groups: [{name: g, interval: 1.5m, rules: []}]", 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Scale([]byte(tt.in), tt.factor); err == nil {
				t.Errorf("Scale(%q, %v): no error", tt.in, tt.factor)
			}
		})
	}
}

// TestScaleShippedRules scales the real rules and has promtool accept them.
func TestScaleShippedRules(t *testing.T) {
	in := mustRead(t, "../../deploy/prometheus/rules.yaml")
	out, err := Scale(in, 60)
	if err != nil {
		t.Fatalf("Scale: %v", err)
	}
	for _, s := range []string{"interval: 250ms", "for: 500ms", "[1s]", "[2m] offset 15s"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("scaled rules lack %q", s)
		}
	}
	for _, s := range []string{"[1m]", "[10m]", "] offset 15m", "for: 2m"} {
		if strings.Contains(string(out), s) {
			t.Errorf("scaled rules still hold %q", s)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus): scaled rules not checked")
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, b)
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return b
}

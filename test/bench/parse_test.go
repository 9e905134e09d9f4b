package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustReadFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return string(b)
}

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		want    wrkResult
		wantErr bool
	}{
		{
			name:    "all auth",
			fixture: "wrk_all_auth.txt",
			want: wrkResult{ReqPerSec: 12869.67, P50: 1370 * time.Microsecond, P99: 6430 * time.Microsecond,
				Sent: 25844, AuthSent: 25844, Completed: 25838, Elapsed: 2007666 * time.Microsecond, Non2xx: 12918},
		},
		{name: "no counts line", fixture: "hey_login.txt", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(mustReadFixture(t, tt.fixture))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseWrk: no error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseWrk:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseHey(t *testing.T) {
	tests := []struct {
		name      string
		fixture   string
		wantRate  float64
		wantSent  uint64
		wantErrs  uint64
		wantP99   time.Duration
		wantError bool
	}{
		{name: "rate limited logins", fixture: "hey_login.txt", wantRate: 495.19, wantSent: 1000, wantP99: 6100 * time.Microsecond},
		{name: "with errors", fixture: "hey_errors.txt", wantRate: 9871.2, wantSent: 98714, wantErrs: 5, wantP99: 20300 * time.Microsecond},
		{name: "wrk output", fixture: "wrk_all_auth.txt", wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHey(mustReadFixture(t, tt.fixture))
			if tt.wantError {
				if err == nil {
					t.Fatalf("parseHey: no error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseHey: %v", err)
			}
			if got.ReqPerSec != tt.wantRate || got.Sent() != tt.wantSent || got.Errors != tt.wantErrs ||
				(got.P99-tt.wantP99).Abs() > time.Microsecond {
				t.Errorf("parseHey: got rate %v sent %d errors %d p99 %v; want %v %d %d %v",
					got.ReqPerSec, got.Sent(), got.Errors, got.P99, tt.wantRate, tt.wantSent, tt.wantErrs, tt.wantP99)
			}
		})
	}
}

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    float64
		wantErr bool
	}{
		{name: "comm with spaces and parentheses", stat: mustReadFixture(t, "proc_stat.txt"), want: 9.85},
		{name: "truncated", stat: "1 (x) S 1 2 3", wantErr: true},
		{name: "no comm", stat: "garbage", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStatCPU(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseProcStatCPU: err %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseProcStatCPU = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(mustReadFixture(t, "metrics.txt"))
	if err != nil {
		t.Fatalf("parseMetrics: %v", err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"spans", m.sum("authprobe_spans_total"), 997.0},
		{"matched", m.byLabel("authprobe_requests_total", "filter")["matched"], uint64(1000)},
		{"drops", m.byLabel("authprobe_drops_total", "reason").String(), "15 (parse_error 3, ringbuf_full 12)"},
		{"span drops", m.byLabel("authprobe_spans_dropped_total", "reason").total(), uint64(7)},
		{"absent", m.sum("authprobe_nope"), 0.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParseVmHWM(t *testing.T) {
	got, err := parseVmHWM(mustReadFixture(t, "proc_status.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got == 0 || got%1024 != 0 {
		t.Fatalf("VmHWM = %d bytes, want a whole number of KiB", got)
	}
	if _, err := parseVmHWM("Name:\tx\nVmRSS:\t1 kB\n"); err == nil {
		t.Fatal("no VmHWM line: no error")
	}
	if _, err := parseVmHWM("VmHWM:\t12 MB\n"); err == nil {
		t.Fatal("unknown unit: no error")
	}
}

func TestParseStages(t *testing.T) {
	rs, err := parseStages(mustReadFixture(t, "stages.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(rs), rs)
	}
	want := stageResult{Package: "github.com/authprobe/authprobe/export", Name: "BenchmarkStageSpanToOTLP/sdk", N: 33596,
		Metrics: map[string]float64{"ns/op": 37283, "B/span": 729, "cpu-ns/op": 24371, "B/op": 9001, "allocs/op": 78}}
	if !reflect.DeepEqual(rs[1], want) {
		t.Errorf("got %+v, want %+v", rs[1], want)
	}
	if rs[2].Package != "github.com/authprobe/authprobe/decoder" || rs[2].Metrics["allocs/op"] != 3 {
		t.Errorf("decoder line: %+v", rs[2])
	}
	md := stagesMarkdown(rs)
	for _, s := range []string{"| export | StageSpanToJSONLine/direct | 1785 | 964 | 0 | 0 | 655.89 MB/s |", "| decoder | StageChunksToExchange | 2100 | – | 512 | 3 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

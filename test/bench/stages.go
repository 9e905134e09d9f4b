package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// The per-stage benchmarks: every stage package names its benchmarks
// BenchmarkStage<What> (sub-benchmarks for variants, "sdk" or "direct"
// for instance) and reports -benchmem figures; export's also report
// cpu-ns/op (the process's CPU time per op, steadier than wall time on a
// shared machine). `make bench-stages` runs them all in one go and prints
// one table, so a stage joins the table by naming its benchmarks so:
//
//	bpf/      ring-buffer event → decoder chunk
//	decoder/  chunks → exchange
//	spanbuilder/  exchange → span (with and without a JWT, hash privacy on)
//	export/   span → JSON line, span → OTLP bytes, export queue → wire
//	cmd/authprobe/  the whole path, ring-buffer sample bytes → exported bytes
//
// Today decoder/, spanbuilder/ (and secattr/'s body parsing), export/ and
// cmd/authprobe/ (the whole path) have them.

// stageResult is one benchmark line.
type stageResult struct {
	Package string             `json:"package"`
	Name    string             `json:"name"`
	N       uint64             `json:"n"`
	Metrics map[string]float64 `json:"metrics"` // by unit: ns/op, B/op, allocs/op, cpu-ns/op, ...
}

func runStages(ctx context.Context, o options, stdout, progress io.Writer) error {
	if err := checkSetup(o); err != nil {
		return err
	}
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkStage", "-benchmem", "-benchtime", o.benchtime, "-count", "1"}
	args = append(args, strings.Fields(o.stagePkgs)...)
	fmt.Fprintf(progress, "bench: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, progress)
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stage benchmarks: %w", err)
	}
	rs, err := parseStages(out.String())
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("no BenchmarkStage* in %s", o.stagePkgs)
	}
	fmt.Fprint(stdout, stagesMarkdown(rs))
	return nil
}

// parseStages reads `go test -bench` output: "pkg:" lines name the
// package of the benchmark lines after them.
func parseStages(out string) ([]stageResult, error) {
	var rs []stageResult
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "BenchmarkStage") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's own log line
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := stageResult{Package: pkg, Name: trimProcs(f[0]), N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parse benchmark line %q: %w", line, err)
			}
			r.Metrics[f[i+1]] = v
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// trimProcs drops the -GOMAXPROCS suffix of a benchmark name.
func trimProcs(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

func stagesMarkdown(rs []stageResult) string {
	var b strings.Builder
	fmt.Fprintln(&b, "## authprobe stage benchmarks")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| package | benchmark | ns/op | cpu-ns/op | B/op | allocs/op | other |")
	fmt.Fprintln(&b, "|---|---|--:|--:|--:|--:|---|")
	for _, r := range rs {
		var other []string
		for unit, v := range r.Metrics {
			switch unit {
			case "ns/op", "cpu-ns/op", "B/op", "allocs/op":
			default:
				other = append(other, fmt.Sprintf("%g %s", v, unit))
			}
		}
		sort.Strings(other)
		cell := func(unit string) string {
			v, ok := r.Metrics[unit]
			if !ok {
				return "–"
			}
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", strings.TrimPrefix(r.Package, "github.com/authprobe/authprobe/"),
			strings.TrimPrefix(r.Name, "Benchmark"), cell("ns/op"), cell("cpu-ns/op"), cell("B/op"), cell("allocs/op"), strings.Join(other, ", "))
	}
	return b.String()
}

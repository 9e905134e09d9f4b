package main

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// The resident set by part, read from this test process's own map: its
// executable's pages and the rest are resident, and the parts add up to
// no more than the whole.
func TestResidentMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(newResidentMetric()))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	require.Equal(t, "authprobe_resident_bytes", mfs[0].GetName())
	parts := map[string]float64{}
	for _, m := range mfs[0].GetMetric() {
		parts[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	require.Len(t, parts, 3)
	require.Positive(t, parts["executable"])
	require.Positive(t, parts["other"])
	require.Zero(t, parts["bpf_maps"], "the test process maps no BPF map")
}

// Start-up ending while a TLS file is analysed: the analysis keeps its
// tight target, and the steady one follows it, not start-up's.
func TestMemoryTargets(t *testing.T) {
	was := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(was) })
	m := &memory{log: slog.New(slog.DiscardHandler)}
	m.setTarget(gogcStartup)
	require.Equal(t, gogcStartup, gcPercent())
	m.parse(func() {
		require.Equal(t, gogcParse, gcPercent())
		m.settle()
		require.Equal(t, gogcParse, gcPercent(), "the analysis keeps its target")
	})
	require.Equal(t, gogcSteady, gcPercent(), "the steady target after it")
	require.True(t, m.parsed.Load())
	m.afterParse()
	require.False(t, m.parsed.Load())

	// GOGC in the environment wins over every setting here.
	user := &memory{log: slog.New(slog.DiscardHandler), userGOGC: true}
	debug.SetGCPercent(77)
	user.setTarget(gogcStartup)
	user.parse(func() { require.Equal(t, 77, gcPercent()) })
	user.settle()
	require.Equal(t, 77, gcPercent())
}

// gcPercent reads the current GOGC.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

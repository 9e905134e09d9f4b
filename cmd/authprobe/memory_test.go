package main

import (
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

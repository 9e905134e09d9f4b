package detect_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/test/testutil"
)

// Bytes per tracked source that docs/detection-metrics.md states.
const (
	docWorstBytesPerSource   = 5632 // every sub-window sketch dense
	docTypicalBytesPerSource = 400  // a few failures: one small sparse sketch
)

// TestMemoryPerSource measures heap per source against the documented
// bounds: the worst case fills every sub-window's sketch past the sparse
// limit, the typical case is one failure per source.
func TestMemoryPerSource(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a few MB of sketches")
	}
	if raceEnabled {
		t.Skip("heap accounting under the race detector is not the agent's")
	}
	const sources = 250
	tests := []struct {
		name     string
		perSlot  int // distinct failures per source and sub-window
		subWins  int
		maxBytes float64
	}{
		{name: "worst", perSlot: 400, subWins: 5, maxBytes: docWorstBytesPerSource},
		{name: "typical", perSlot: 1, subWins: 1, maxBytes: docTypicalBytesPerSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := heapInUse()
			d, clock := mustDetector(t, detect.Config{Window: 10 * time.Minute, MaxSources: sources})
			subnets := make([]string, sources)
			for i := range subnets {
				subnets[i] = fmt.Sprintf("ffff:ffff:%x::/48", i) // long IPv6 subnets: the larger string
			}
			key := uint64(1)
			for w := range tt.subWins {
				if w > 0 {
					clock.Add(150 * time.Second)
				}
				for _, s := range subnets {
					for range tt.perSlot {
						d.Observe(failure(s, key))
						key++
					}
				}
			}
			subnets = nil
			if got := mustGather(t, d); got["authprobe_detect_sources_tracked"] != sources {
				t.Fatalf("tracked %v, want %d", got["authprobe_detect_sources_tracked"], sources)
			}
			per := float64(heapInUse()-before) / sources
			t.Logf("%s: %.0f bytes per source (documented bound %.0f)", tt.name, per, tt.maxBytes)
			if per > tt.maxBytes {
				t.Errorf("%s: %.0f bytes per source, documented bound %.0f", tt.name, per, tt.maxBytes)
			}

			// A window move recomputes every source once; log its CPU cost
			// (wall time means little on a shared machine).
			clock.Add(150 * time.Second)
			cpu := testutil.ProcessCPU(t)
			mustGather(t, d)
			t.Logf("%s: window move and collect over %d sources: %v CPU", tt.name, sources, testutil.ProcessCPU(t)-cpu)
			runtime.KeepAlive(d)
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkObserveFailure measures one failed attempt going through
// Observe: attempt counter, sketch insert, real clock. "spread" rotates
// over 1000 subnets with few usernames each (sparse sketches), "hot" sends
// every failure from one subnet with ever new usernames (dense sketch).
func BenchmarkObserveFailure(b *testing.B) {
	for _, bc := range []struct {
		name    string
		subnets int
	}{{"spread", 1000}, {"hot", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			d, err := detect.New(detect.Config{})
			if err != nil {
				b.Fatal(err)
			}
			spans := make([]spanSample, 4096)
			for i := range spans {
				spans[i] = spanSample{subnet: fmt.Sprintf("10.%d.%d.0/24", (i%bc.subnets)/256, i%bc.subnets), key: uint64(i)*0x9e3779b97f4a7c15 + 1}
			}
			for _, s := range spans { // warm: sketches exist
				d.Observe(failure(s.subnet, s.key))
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				s := spans[i%len(spans)]
				d.Observe(failure(s.subnet, s.key+uint64(i/len(spans))))
				i++
			}
		})
	}
}

type spanSample struct {
	subnet string
	key    uint64
}

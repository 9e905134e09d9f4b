package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestEstimateAccuracy checks the documented error empirically: for each
// n, every one of several independent key sets estimates within three
// standard errors, and the root mean square error is close to the claim.
func TestEstimateAccuracy(t *testing.T) {
	const trials = 20
	for _, n := range []int{10, 100, 1000, 10000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			var sq float64
			for trial := range trials {
				rng := rand.New(rand.NewPCG(uint64(n), uint64(trial)))
				var s sketch
				for range n {
					s.insert(mix(rng.Uint64()))
				}
				got := s.estimateAlone()
				rel := (got - float64(n)) / float64(n)
				sq += rel * rel
				if math.Abs(rel) > 3*stdError {
					t.Errorf("n=%d trial %d: estimate %.1f, error %.2f%% > 3 standard errors (%.2f%%)",
						n, trial, got, 100*rel, 300*stdError)
				}
			}
			rmse := math.Sqrt(sq / trials)
			t.Logf("n=%d: relative RMSE %.2f%% (standard error %.2f%%)", n, 100*rmse, 100*stdError)
			if rmse > 1.5*stdError {
				t.Errorf("n=%d: relative RMSE %.2f%%, want about %.2f%%", n, 100*rmse, 100*stdError)
			}
		})
	}
}

func TestSketchSmallCounts(t *testing.T) {
	for n := 0; n <= 5; n++ {
		var s sketch
		for i := range n {
			s.insert(mix(uint64(i + 1)))
		}
		if got := math.Round(s.estimateAlone()); got != float64(n) {
			t.Errorf("%d keys: estimate %v", n, got)
		}
	}
}

// TestSparseDenseAgree: the sparse form is exact per register, so it
// must estimate exactly what the dense form does, through the switch.
func TestSparseDenseAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sp, de sketch
	de.toDense()
	for i := range 2000 {
		h := mix(rng.Uint64())
		if a, b := sp.insert(h), de.insert(h); a != b {
			t.Fatalf("insert %d: sparse grew=%v, dense grew=%v", i, a, b)
		}
		if i%97 == 0 || i == sparseMax || i == sparseMax+1 {
			if a, b := sp.estimateAlone(), de.estimateAlone(); a != b {
				t.Fatalf("after %d keys: sparse %v, dense %v", i+1, a, b)
			}
		}
	}
	if sp.dense == nil {
		t.Fatal("sketch never became dense")
	}
}

func TestSketchRepeatsDoNotCount(t *testing.T) {
	var s sketch
	for range 3 {
		for i := range 50 {
			s.insert(mix(uint64(i + 1)))
		}
	}
	if got := math.Round(s.estimateAlone()); got < 48 || got > 52 {
		t.Errorf("50 keys inserted 3 times: estimate %v", got)
	}
	if s.insert(mix(1)) {
		t.Error("re-inserting a key grew a register")
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		h       uint64
		idx     uint16
		rho     uint8
		comment string
	}{
		{0, 0, maxRho, "all zero: value capped at q+1"},
		{1 << 53, 0, 1, "first bit after the index set"},
		{1, 0, rhoBits, "only the last bit set"},
		{^uint64(0), registers - 1, 1, "all ones"},
		{uint64(5) << rhoBits, 5, maxRho, "index only"},
	}
	for _, tt := range tests {
		idx, rho := split(tt.h)
		if idx != tt.idx || rho != tt.rho {
			t.Errorf("%s: split(%#x) = %d, %d; want %d, %d", tt.comment, tt.h, idx, rho, tt.idx, tt.rho)
		}
	}
}

func (s *sketch) estimateAlone() float64 {
	var regs [registers]uint8
	s.mergeInto(&regs)
	return estimate(&regs)
}

// TestMergeDense checks the eight-at-a-time register max against the
// plain one over every value a register can hold.
func TestMergeDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		var regs, want [registers]uint8
		var s sketch
		s.toDense()
		for i := range registers {
			regs[i] = uint8(rng.IntN(maxRho + 1))
			s.dense[i] = uint8(rng.IntN(maxRho + 1))
			want[i] = max(regs[i], s.dense[i])
		}
		s.mergeInto(&regs)
		if regs != want {
			t.Fatal("dense merge differs from the register-wise max")
		}
	}
}

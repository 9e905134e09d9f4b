package detect

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// HyperLogLog parameters. Precision 10 gives 1024 registers: a relative
// standard error of 1.04/sqrt(1024) ≈ 3.25% for 1 KiB per dense sketch,
// plenty for alert thresholds on distinct failed usernames, and small
// enough that a source keeps one sketch per sub-window.
const (
	precision = 10
	registers = 1 << precision // m
	rhoBits   = 64 - precision // q: hash bits left after the register index
	maxRho    = rhoBits + 1    // largest register value (all q bits zero)

	// sparseMax is how many (index, value) pairs a sketch keeps before it
	// switches to the dense register array: 256 pairs of 2 bytes are half
	// the dense size, and most sources see only a handful of usernames.
	sparseMax = 256
)

// stdError is the estimator's relative standard error, 1.04/sqrt(m).
const stdError = 1.04 / 32

// sketch is a HyperLogLog register set. Small sets are sparse: a sorted
// list of index<<6|value (the index has 10 bits, the value at most 55 fits
// in 6), which is exact per register and costs 2 bytes a pair; past
// sparseMax pairs it becomes a dense array of one byte per register. The
// zero value is an empty sketch.
type sketch struct {
	sparse []uint16
	dense  *[registers]uint8
}

// mix spreads the bits of a username key. UserKey is already a keyed hash,
// but the estimator relies on uniform bits everywhere, and a finaliser
// (MurmurHash3's fmix64 constants) costs a few cycles.
func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// split returns the register index (top bits) and the register value:
// one plus the leading zeros of the remaining q bits.
func split(h uint64) (idx uint16, rho uint8) {
	idx = uint16(h >> rhoBits)
	r := bits.LeadingZeros64(h<<precision) + 1
	if r > maxRho {
		r = maxRho
	}
	return idx, uint8(r)
}

// insert adds a mixed hash and reports whether a register grew.
func (s *sketch) insert(h uint64) bool {
	idx, rho := split(h)
	if s.dense != nil {
		if s.dense[idx] >= rho {
			return false
		}
		s.dense[idx] = rho
		return true
	}
	e := idx<<6 | uint16(rho)
	i, found := slices.BinarySearchFunc(s.sparse, idx, func(v, target uint16) int {
		return int(v>>6) - int(target)
	})
	if found {
		if uint8(s.sparse[i]&0x3f) >= rho {
			return false
		}
		s.sparse[i] = e
		return true
	}
	if len(s.sparse) < sparseMax {
		s.sparse = slices.Insert(s.sparse, i, e)
		return true
	}
	s.toDense()
	s.dense[idx] = rho
	return true
}

func (s *sketch) toDense() {
	d := new([registers]uint8)
	for _, e := range s.sparse {
		d[e>>6] = uint8(e & 0x3f)
	}
	s.dense, s.sparse = d, nil
}

func (s *sketch) empty() bool { return s.dense == nil && len(s.sparse) == 0 }

// reset empties the sketch and lets its memory go.
func (s *sketch) reset() { *s = sketch{} }

// mergeInto raises regs to the registers of s (HLL union is a register max).
func (s *sketch) mergeInto(regs *[registers]uint8) {
	if s.dense != nil {
		// Eight registers at a time: every value is below 0x80, so with
		// the high bit of each byte of a set, (a|h)-b borrows only inside
		// a byte and leaves that bit set exactly where a >= b.
		const h = 0x8080808080808080
		for i := 0; i < registers; i += 8 {
			a := binary.LittleEndian.Uint64(regs[i:])
			b := binary.LittleEndian.Uint64(s.dense[i:])
			ge := (((a | h) - b) & h) >> 7 * 0xff
			binary.LittleEndian.PutUint64(regs[i:], a&ge|b&^ge)
		}
		return
	}
	for _, e := range s.sparse {
		i, v := e>>6, uint8(e&0x3f)
		regs[i] = max(regs[i], v)
	}
}

// estimate returns the cardinality estimate of a register array with
// Ertl's improved raw estimator ("New cardinality estimation algorithms
// for HyperLogLog sketches", 2017). Unlike the original estimator it needs
// neither a separate linear-counting range nor bias tables: it is close to
// unbiased from one element to far beyond what a window of usernames holds.
func estimate(regs *[registers]uint8) float64 {
	var c [maxRho + 1]int
	for _, v := range regs {
		c[v]++
	}
	if c[0] == registers {
		return 0
	}
	const m = float64(registers)
	z := m * tau(1-float64(c[maxRho])/m)
	for k := rhoBits; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * sigma(float64(c[0])/m)
	alpha := 1 / (2 * math.Ln2)
	return alpha * m * m / z
}

// sigma is x + Σ_{k≥1} x^(2^k)·2^(k-1), summed until it stops changing.
func sigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

// tau is (1 - x - Σ_{k≥1} (1 - x^(2^-k))²·2^-k) / 3.
func tau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}

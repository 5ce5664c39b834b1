package report

import (
	"math"
	"math/bits"
)

// hllPrecision gives 2^14 one-byte registers (16 KiB) and a standard error of
// 1.04/sqrt(2^14), about 0.8%.
const hllPrecision = 14

// hyperLogLog estimates the number of distinct keys in fixed memory (Flajolet, Fusy,
// Gandouet, Meunier 2007, with the linear-counting correction for small counts).
type hyperLogLog struct {
	reg [1 << hllPrecision]uint8
}

// add records one key.
func (h *hyperLogLog) add(key []byte) {
	x := hash64(key)
	i := x >> (64 - hllPrecision)
	// The remaining bits, with a guard bit so that the rank is at most 64-p+1.
	w := x<<hllPrecision | 1<<(hllPrecision-1)
	rank := uint8(bits.LeadingZeros64(w) + 1)
	if rank > h.reg[i] {
		h.reg[i] = rank
	}
}

// estimate returns the estimated number of distinct keys added.
func (h *hyperLogLog) estimate() uint64 {
	const m = float64(1 << hllPrecision)
	alpha := 0.7213 / (1 + 1.079/m)
	sum, zeros := 0.0, 0
	for _, r := range h.reg {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return uint64(math.Round(e))
}

// hash64 is FNV-1a followed by the MurmurHash3 finaliser, which spreads FNV's weak
// high bits (the register index comes from them) over the whole word.
func hash64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

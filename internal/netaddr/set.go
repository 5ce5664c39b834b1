package netaddr

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Set is an immutable set of IPv4 and IPv6 networks. Contains sits on the per-packet
// path, so the networks are flattened into sorted, merged, disjoint address ranges per
// family and looked up by binary search: O(log n), no allocation, no locks.
//
// IPv4 and IPv6 are separate families: 0.0.0.0/0 is every IPv4 address and ::/0 every
// IPv6 one. IPv4-mapped IPv6 networks and addresses are unmapped first, so
// ::ffff:10.0.0.0/104 and 10.0.0.0/8 are the same network. The zero Set and a nil *Set
// are empty.
type Set struct {
	prefixes []netip.Prefix // normalised, deduplicated, sorted: what Prefixes shows

	// Range i of a family is [lo[i], hi[i]]; ranges are sorted, disjoint and
	// non-adjacent. Separate lo slices keep the binary search on dense memory.
	lo4, hi4 []uint32
	lo6, hi6 []u128
	// top4 has a bit per IPv4 /16 that some range touches: most addresses of a flood
	// are rejected by one load from it, before the search's unpredictable branches.
	top4 [1 << 10]uint64
}

// u128 is an IPv6 address as a big-endian 128-bit number, compared as (hi, lo).
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// NewSet builds a Set from any prefixes: they are normalised (masked, unmapped, zone
// dropped) and invalid ones are skipped, so callers may pass raw user input.
func NewSet(prefixes []netip.Prefix) *Set {
	s := &Set{prefixes: make([]netip.Prefix, 0, len(prefixes))}
	for _, p := range prefixes {
		if p = Canonical(p); p.IsValid() {
			s.prefixes = append(s.prefixes, p)
		}
	}
	slices.SortFunc(s.prefixes, netip.Prefix.Compare)
	s.prefixes = slices.Compact(s.prefixes)
	s.buildRanges()
	return s
}

// Contains reports whether a lies in one of the set's networks. a may be IPv4-mapped or
// carry a zone; both are stripped first. It never allocates.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	a = a.Unmap()
	switch {
	case a.Is4():
		x := v4num(a)
		if s.top4[x>>22]&(1<<(x>>16&63)) == 0 {
			return false
		}
		return contains4(s.lo4, s.hi4, x)
	case a.Is6():
		return contains6(s.lo6, s.hi6, v6num(a))
	}
	return false // the zero Addr
}

// Overlaps reports whether any address of p lies in the set: the set holds p, lies
// inside it, or shares part of it. It is for ban checks, off the per-packet path.
func (s *Set) Overlaps(p netip.Prefix) bool {
	if s == nil {
		return false
	}
	if p = Canonical(p); !p.IsValid() {
		return false
	}
	if p.Addr().Is4() {
		lo := v4num(p.Addr())
		hi := lo | ^uint32(0)>>p.Bits()
		// The first range ending at or above lo must start at or below hi.
		i, j := 0, len(s.hi4)
		for i < j {
			m := int(uint(i+j) >> 1)
			if s.hi4[m] < lo {
				i = m + 1
			} else {
				j = m
			}
		}
		return i < len(s.lo4) && s.lo4[i] <= hi
	}
	lo := v6num(p.Addr())
	hi := lo.or(hostMask6(p.Bits()))
	i, j := 0, len(s.hi6)
	for i < j {
		m := int(uint(i+j) >> 1)
		if s.hi6[m].less(lo) {
			i = m + 1
		} else {
			j = m
		}
	}
	return i < len(s.lo6) && !hi.less(s.lo6[i])
}

// Union returns a set holding every network of the given sets (nil ones count as
// empty).
func Union(sets ...*Set) *Set {
	var ps []netip.Prefix
	for _, s := range sets {
		if s != nil {
			ps = append(ps, s.prefixes...)
		}
	}
	return NewSet(ps)
}

// Len is the number of distinct normalised networks in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.prefixes)
}

// Prefixes returns the set's networks normalised, deduplicated and sorted (IPv4 first),
// for printing. The slice is a copy.
func (s *Set) Prefixes() []netip.Prefix {
	if s == nil {
		return nil
	}
	return slices.Clone(s.prefixes)
}

// buildRanges turns the sorted prefixes into merged ranges. Sorting by address puts a
// network before every network it contains (same start, fewer bits first), so one pass
// with "overlaps or touches the previous range" merges everything.
func (s *Set) buildRanges() {
	for _, p := range s.prefixes {
		if p.Addr().Is4() {
			lo := v4num(p.Addr())
			hi := lo | ^uint32(0)>>p.Bits() // Go defines a shift by >= 32 as 0
			s.lo4, s.hi4 = merge4(s.lo4, s.hi4, lo, hi)
			for t := lo >> 16; ; t++ {
				s.top4[t>>6] |= 1 << (t & 63)
				if t == hi>>16 {
					break
				}
			}
			continue
		}
		lo := v6num(p.Addr())
		s.lo6, s.hi6 = merge6(s.lo6, s.hi6, lo, lo.or(hostMask6(p.Bits())))
	}
}

// merge4 appends [lo, hi], merging it into the last range when they overlap or touch.
// Callers append in ascending lo order.
func merge4(los, his []uint32, lo, hi uint32) ([]uint32, []uint32) {
	if n := len(his); n > 0 && (his[n-1] == ^uint32(0) || lo <= his[n-1]+1) {
		his[n-1] = max(his[n-1], hi)
		return los, his
	}
	return append(los, lo), append(his, hi)
}

func merge6(los, his []u128, lo, hi u128) ([]u128, []u128) {
	if n := len(his); n > 0 {
		last := his[n-1]
		if last == maxU128 || !last.inc().less(lo) {
			if last.less(hi) {
				his[n-1] = hi
			}
			return los, his
		}
	}
	return append(los, lo), append(his, hi)
}

// contains4 finds the last range starting at or below x and checks x is inside it.
// Hand-written rather than sort.Search so that no closure is involved on the hot path.
func contains4(los, his []uint32, x uint32) bool {
	i, j := 0, len(los)
	for i < j {
		m := int(uint(i+j) >> 1)
		if los[m] <= x {
			i = m + 1
		} else {
			j = m
		}
	}
	return i > 0 && x <= his[i-1]
}

func contains6(los, his []u128, x u128) bool {
	i, j := 0, len(los)
	for i < j {
		m := int(uint(i+j) >> 1)
		if !x.less(los[m]) {
			i = m + 1
		} else {
			j = m
		}
	}
	return i > 0 && !his[i-1].less(x)
}

var maxU128 = u128{^uint64(0), ^uint64(0)}

func (a u128) or(b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

// inc returns a+1; callers rule out overflow.
func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

// hostMask6 has the low 128-bits bits set.
func hostMask6(bits int) u128 {
	if bits <= 64 {
		return u128{^uint64(0) >> bits, ^uint64(0)}
	}
	return u128{0, ^uint64(0) >> (bits - 64)}
}

func v4num(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6num(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

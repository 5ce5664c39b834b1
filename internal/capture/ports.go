package capture

import (
	"cmp"
	"fmt"
	"slices"
)

// PortRange is an inclusive range of destination ports.
type PortRange struct{ Lo, Hi uint16 }

// Ranges turns a list of ports (any order, duplicates allowed) into the fewest sorted,
// disjoint ranges that cover exactly those ports.
func Ranges(ports []uint16) []PortRange {
	if len(ports) == 0 {
		return nil
	}
	p := slices.Clone(ports)
	slices.Sort(p)
	out := []PortRange{{p[0], p[0]}}
	for _, v := range p[1:] {
		last := &out[len(out)-1]
		if int(v) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, v)
			continue
		}
		out = append(out, PortRange{v, v})
	}
	return out
}

// normalize sorts r and merges overlapping and adjacent ranges. It rejects Lo > Hi.
func normalize(r []PortRange) ([]PortRange, error) {
	if len(r) == 0 {
		return nil, nil
	}
	for _, x := range r {
		if x.Lo > x.Hi {
			return nil, fmt.Errorf("capture: port range %d-%d: low end above high end", x.Lo, x.Hi)
		}
	}
	s := slices.Clone(r)
	slices.SortFunc(s, func(a, b PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	out := s[:1]
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if int(x.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, x.Hi)
			continue
		}
		out = append(out, x)
	}
	return out, nil
}

// Coarsen returns at most limit ranges (at least 1) that cover every port of r, merging
// the ranges separated by the smallest gaps first. The result watches more ports than r
// (the gaps that were merged), so user space must check the exact port set; it exists
// so that a filter always fits in a kernel program. Invalid ranges (Lo > Hi) are
// swapped rather than rejected: Coarsen never fails.
func Coarsen(r []PortRange, limit int) []PortRange {
	fixed := make([]PortRange, len(r))
	for i, x := range r {
		if x.Lo > x.Hi {
			x.Lo, x.Hi = x.Hi, x.Lo
		}
		fixed[i] = x
	}
	n, _ := normalize(fixed)
	if limit < 1 {
		limit = 1
	}
	if len(n) <= limit {
		return n
	}
	// Keep the limit-1 widest gaps as separators and merge across all the others. Sorting
	// the gaps is O(n log n), where merging the nearest pair repeatedly would be O(n²)
	// for the 32768 ranges of a worst-case port list.
	gaps := make([]int, len(n)-1) // gaps[i] lies between n[i] and n[i+1]
	for i := range gaps {
		gaps[i] = i
	}
	width := func(i int) int { return int(n[i+1].Lo) - int(n[i].Hi) }
	// Widest first; among equal gaps the leftmost is merged first (deterministic).
	slices.SortFunc(gaps, func(a, b int) int { return cmp.Or(cmp.Compare(width(b), width(a)), cmp.Compare(b, a)) })
	keep := make([]bool, len(n)-1)
	for _, g := range gaps[:limit-1] {
		keep[g] = true
	}
	out := make([]PortRange, 0, limit)
	cur := n[0]
	for i := 1; i < len(n); i++ {
		if keep[i-1] {
			out = append(out, cur)
			cur = n[i]
			continue
		}
		cur.Hi = n[i].Hi
	}
	return append(out, cur)
}

package config

import (
	"fmt"
	"strconv"
	"strings"
)

// maxPortErrors caps the errors reported for one port list: past a few, more lines of
// the same complaint do not help the operator.
const maxPortErrors = 10

// portSet is a set of ports as a bitmap: 8 KiB, no allocation per port.
type portSet [65536 / 64]uint64

func (s *portSet) has(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) add(p uint16)      { s[p/64] |= 1 << (p % 64) }

// addRange appends to out the ports of lo..hi not yet in s, adding them. Whole words
// already full are skipped, so a list repeating "1-65535" does not cost 65535 steps an
// entry.
func (s *portSet) addRange(out []uint16, lo, hi int) []uint16 {
	for port := lo; port <= hi; {
		if port%64 == 0 && port+63 <= hi && s[port/64] == ^uint64(0) {
			port += 64
			continue
		}
		if p := uint16(port); !s.has(p) {
			s.add(p)
			out = append(out, p)
		}
		port++
	}
	return out
}

// ports reads a port list value for key, reporting problems at line.
func (p *parser) ports(line int, key, val string) []uint16 {
	if trimBlanks(val) == "" {
		return nil
	}
	var (
		out          []uint16
		seen         portSet
		empties, bad int
	)
	for _, entry := range strings.Split(val, ",") {
		entry = trimBlanks(entry)
		if entry == "" {
			empties++
			continue
		}
		lo, hi, msg := parsePortEntry(entry)
		if msg != "" {
			if bad++; bad <= maxPortErrors {
				p.errorf(line, "%s: %s", key, msg)
			}
			continue
		}
		out = seen.addRange(out, lo, hi)
	}
	if bad > maxPortErrors {
		p.errorf(line, "%s: %d more bad entries not shown", key, bad-maxPortErrors)
	}
	if empties > 0 {
		p.warnf(line, "%s: %d empty entries in the port list ignored (stray comma?)", key, empties)
	}
	return out
}

// parsePortEntry reads "N" or "A-B"; msg explains a bad entry.
func parsePortEntry(entry string) (lo, hi int, msg string) {
	a, b, isRange := strings.Cut(entry, "-")
	lo, msg = parsePort(trimBlanks(a), entry)
	if msg != "" || !isRange {
		return lo, lo, msg
	}
	if hi, msg = parsePort(trimBlanks(b), entry); msg != "" {
		return 0, 0, msg
	}
	if lo > hi {
		return 0, 0, fmt.Sprintf("range %s runs backwards (write %d-%d)", shown(entry), hi, lo)
	}
	return lo, hi, ""
}

func parsePort(s, entry string) (int, string) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Sprintf("bad port entry %s: want a port 1-65535 or a range like 1-1024", shown(entry))
	}
	in := ""
	if s != entry {
		in = " in " + shown(entry)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > 65535 {
		return 0, fmt.Sprintf("port %s%s is out of range: ports are 1-65535", shown(s), in)
	}
	if v == 0 {
		return 0, fmt.Sprintf("port 0%s is not a port: ports are 1-65535", in)
	}
	return int(v), ""
}

// formatPorts writes ports as a list that parses back to exactly the same slice. It uses
// ranges, and because parsing drops duplicates a range may overlap ports already listed:
// "2,4,1-5" is 2,4,1,3,5. Greedily, each entry takes as many of the following ports as
// one range can produce.
//
// With compact set, the output is never longer than any list that parses to the same
// slice, so a line that was short enough to read is short enough to write back. The price
// is odd-looking range starts ("1-99,443,99-200" for "1-99,443,100-200"), so WriteTo only
// asks for it when the readable form is too long.
func formatPorts(ports []uint16, compact bool) string {
	var b strings.Builder
	var s *runSet
	for i := 0; i < len(ports); {
		if i > 0 {
			b.WriteByte(',')
		}
		x := ports[i]
		if s == nil {
			s = newRunSet()
		}
		if x == 0 || s.has(x) { // not from Parse; write it as it is
			b.WriteString(strconv.Itoa(int(x)))
			i++
			continue
		}
		start := x
		if compact {
			start = shortestStart(s.freeBelow(x), x)
		}
		s.add(x)
		j, last := i+1, x
		for ; j < len(ports) && s.follows(last, ports[j]); j++ {
			last = ports[j]
			s.add(last)
		}
		writeEntry(&b, start, x, last, j-i)
		i = j
	}
	return b.String()
}

// shortestStart picks, among the range starts lo..x that all produce x as the first new
// port, one with the fewest digits, and the nearest to x among those.
func shortestStart(lo, x uint16) uint16 {
	if d := len(strconv.Itoa(int(lo))); d < len(strconv.Itoa(int(x))) {
		return uint16(pow10(d) - 1) // largest number of d digits, so >= lo and < x
	}
	return x
}

// writeEntry writes one entry starting at start that produces the ports x..last (count
// of them, the others in between being listed already).
func writeEntry(b *strings.Builder, start, x, last uint16, count int) {
	switch {
	case count == 1:
		b.WriteString(strconv.Itoa(int(x)))
	case count == 2 && start == x:
		fmt.Fprintf(b, "%d,%d", x, last)
	default:
		fmt.Fprintf(b, "%d-%d", start, last)
	}
}

func pow10(d int) int {
	n := 1
	for ; d > 0; d-- {
		n *= 10
	}
	return n
}

// runSet is the set of ports written so far, with the start of each run of consecutive
// ports found through a union-find: links point to lower ports and a run's first port is
// its own parent. A plain scan for run starts would be quadratic on long lists.
type runSet struct {
	seen   portSet
	parent []uint16
}

func newRunSet() *runSet { return &runSet{parent: make([]uint16, 65536)} }

func (s *runSet) has(p uint16) bool { return s.seen.has(p) }

// add inserts p (1..65535, not yet present).
func (s *runSet) add(p uint16) {
	s.seen.add(p)
	s.parent[p] = p
	if p > 1 && s.has(p-1) {
		s.parent[p] = p - 1
	}
	if p < 65535 && s.has(p+1) {
		s.parent[p+1] = p // p+1 started its run until now
	}
}

// runStart returns the first port of the run holding p (p must be present).
func (s *runSet) runStart(p uint16) uint16 {
	for s.parent[p] != p {
		s.parent[p] = s.parent[s.parent[p]]
		p = s.parent[p]
	}
	return p
}

// freeBelow returns the lowest a such that every port in [a, x-1] is present: a range
// starting at a produces x as its first new port.
func (s *runSet) freeBelow(x uint16) uint16 {
	if x > 1 && s.has(x-1) {
		return s.runStart(x - 1)
	}
	return x
}

// follows reports whether y is the next port a range reaching past last would produce:
// y is new, above last, and every port between them is present.
func (s *runSet) follows(last, y uint16) bool {
	if y == 0 || y <= last || s.has(y) {
		return false
	}
	return s.has(y-1) && s.runStart(y-1) <= last+1 // y-1 == last is the plain case
}

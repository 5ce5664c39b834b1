package detect

import (
	"encoding/binary"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/fifo"
)

// actedSet is one mode's record of the hosts it has acted on: a bounded map behind a
// one-hash filter of 65,536 bits. Under a spoofed flood every source is new, and a
// clear bit proves that without hashing into the map (perf put the map lookup at a
// tenth of the daemon's CPU under bench/flood.sh; with the filter, 3-5% less CPU per
// packet on the same floods). Bits are only ever set: a forgotten host leaves its bit
// behind, which costs a map lookup now and then, until the filter is rebuilt.
type actedSet struct {
	m     *fifo.Map[netip.Addr, *repeats]
	bits  [filterWords]uint64
	marks int // bits set since the last rebuild, counting repeats
}

// repeats counts the hits of an acted-on host that were not logged one by one.
type repeats struct {
	count  uint32 // hits counted since the last line
	lines  int    // lines logged in the current window
	window int64  // unix nanoseconds the current window began; 0: none yet
}

const filterWords = 1 << 10 // 8 KiB

func newActedSet(size int) *actedSet {
	return &actedSet{m: fifo.New[netip.Addr, *repeats](size)}
}

// filterSlot hashes an address to its word and bit in the filter (a multiplicative
// hash of its 16-byte form; a collision only costs the map lookup the filter saves).
func filterSlot(a netip.Addr) (int, uint64) {
	b := a.As16()
	h := (binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])) * 0xc2b2ae3d27d4eb4f
	i := h >> 48
	return int(i >> 6), 1 << (i & 63)
}

// get returns the host's repeat counter, nil when the mode has not acted on it.
func (s *actedSet) get(a netip.Addr) *repeats {
	if w, bit := filterSlot(a); s.bits[w]&bit == 0 {
		return nil
	}
	r, _ := s.m.Get(a)
	return r
}

func (s *actedSet) add(a netip.Addr) {
	s.m.Set(a, &repeats{})
	s.mark(a)
	// Forgotten and evicted hosts leave bits behind; rebuild once they could be as many
	// as the live ones (amortised: at least Len adds between rebuilds).
	if s.marks > 2*s.m.Len()+1024 {
		s.rebuild()
	}
}

func (s *actedSet) mark(a netip.Addr) {
	w, bit := filterSlot(a)
	s.bits[w] |= bit
	s.marks++
}

func (s *actedSet) rebuild() {
	clear(s.bits[:])
	s.marks = 0
	s.m.Range(func(a netip.Addr, _ *repeats) { s.mark(a) })
}

func (s *actedSet) remove(a netip.Addr) { s.m.Delete(a) }

// removeIn forgets the hosts inside p.
func (s *actedSet) removeIn(p netip.Prefix) {
	s.m.Range(func(a netip.Addr, _ *repeats) {
		if p.Contains(a) {
			s.m.Delete(a)
		}
	})
}

func (s *actedSet) len() int { return s.m.Len() }

package detect

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

// TestActedSetMatchesMap: the filter in front never hides a host the map holds, through
// adds, removals, evictions and rebuilds, and it is rebuilt before stale bits pile up.
func TestActedSetMatchesMap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 3000).Draw(t, "size")
		s := newActedSet(size)
		n := rapid.IntRange(1, 6000).Draw(t, "ops")
		seed := rapid.Uint32().Draw(t, "seed")
		addr := func(i int) netip.Addr {
			x := uint32(i)*2654435761 ^ seed
			if i%3 == 0 {
				return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
			}
			return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		}
		for i := range n {
			a := addr(i % 4000)
			switch {
			case i%7 == 5:
				s.remove(a)
			case i%700 == 6:
				s.removeIn(netip.PrefixFrom(a, 8).Masked())
			default:
				s.add(a)
			}
		}
		live := 0
		s.m.Range(func(a netip.Addr, _ *repeats) {
			live++
			if s.get(a) == nil {
				t.Fatalf("%v is in the map but the filter says no", a)
			}
		})
		if live != s.len() || live > size {
			t.Fatalf("len %d, ranged %d, size %d", s.len(), live, size)
		}
		if s.marks > 2*s.len()+1024+1 {
			t.Fatalf("%d marks for %d hosts: never rebuilt", s.marks, s.len())
		}
	})
}

// TestActedSetRejectsStrangers: after many hosts came and went, few bits are set, so
// the filter still answers most lookups of new sources by itself (its point).
func TestActedSetRejectsStrangers(t *testing.T) {
	s := newActedSet(64)
	for i := range 100_000 {
		s.add(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	set := 0
	for _, w := range s.bits {
		for ; w != 0; w &= w - 1 {
			set++
		}
	}
	if set > 2*64+1024+1 {
		t.Fatalf("%d bits set for %d live hosts: stale bits not cleared", set, s.len())
	}
}

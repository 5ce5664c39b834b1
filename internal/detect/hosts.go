package detect

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// hostTable counts hits per source in a fixed array: open addressing over buckets of
// bucketSlots entries, keyed by the 16-byte address. No Go map and no allocation on the
// per-packet path, and its memory is fixed at creation (32 bytes an entry).
//
// Eviction is what a flood aims at: a stream of one-off forged sources must not push
// out a real scanner before it reaches SCAN_TRIGGER. When a new source finds its bucket
// full, it takes the slot of the entry with the fewest hits, the least recently seen of
// those; an entry that has come back (two hits or more) is only displaced when its
// whole bucket has come back too. The bucket is chosen by a hash keyed with a random
// seed per process, so forged sources cannot be aimed at one real scanner's bucket.
type hostTable struct {
	slots []hostEntry
	mask  uint64 // buckets - 1
	seed  uint64
	len   int
	tick  uint32 // a counter standing in for time: bumped per insert
}

// hostEntry is one source. hits 0 marks a free slot.
type hostEntry struct {
	addr  [16]byte
	hits  uint32
	seen  uint32 // the table's tick at the last hit
	port  uint16 // the last port hit
	ports uint16 // how many times the port changed from one hit to the next (saturating)
	_     [4]byte
}

const bucketSlots = 8

// newHostTable holds at least size entries (rounded up to a power of two of buckets).
func newHostTable(size int) *hostTable {
	buckets := 1
	for buckets*bucketSlots < size {
		buckets <<= 1
	}
	return &hostTable{slots: make([]hostEntry, buckets*bucketSlots), mask: uint64(buckets - 1), seed: rand.Uint64() | 1}
}

func (t *hostTable) bucket(k *[16]byte) []hostEntry {
	// Both halves are folded in and then fully mixed (a 64-bit finaliser): an IPv4
	// address varies only in the last four bytes, which must reach every bucket bit.
	h := binary.LittleEndian.Uint64(k[:8])*0x9e3779b97f4a7c15 ^ t.seed ^ binary.LittleEndian.Uint64(k[8:])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	b := int(h & t.mask)
	return t.slots[b*bucketSlots : (b+1)*bucketSlots]
}

// get returns a's entry, or nil.
func (t *hostTable) get(a netip.Addr) *hostEntry {
	k := a.As16()
	bk := t.bucket(&k)
	for i := range bk {
		if bk[i].hits != 0 && bk[i].addr == k {
			return &bk[i]
		}
	}
	return nil
}

// hit counts one hit of a on port and returns its entry; fresh reports that a was
// not in the table before.
func (t *hostTable) hit(a netip.Addr, port uint16) (e *hostEntry, fresh bool) {
	k := a.As16()
	bk := t.bucket(&k)
	victim := -1
	for i := range bk {
		switch {
		case bk[i].hits == 0:
			if victim < 0 || bk[victim].hits != 0 {
				victim = i
			}
		case bk[i].addr == k:
			e = &bk[i]
			e.hits++
			if e.port != port && e.ports < ^uint16(0) {
				e.ports++
			}
			e.port = port
			e.seen = t.tick
			return e, false
		case victim < 0 || bk[victim].hits != 0 && weaker(&bk[i], &bk[victim], t.tick):
			victim = i
		}
	}
	e = &bk[victim]
	if e.hits == 0 {
		t.len++
	}
	t.tick++
	*e = hostEntry{addr: k, hits: 1, seen: t.tick, port: port}
	return e, true
}

// weaker reports whether x is a better eviction victim than y: fewer hits, or as
// many and seen longer ago (ticks wrap: compared by age, not value).
func weaker(x, y *hostEntry, now uint32) bool {
	if x.hits != y.hits {
		return x.hits < y.hits
	}
	return now-x.seen > now-y.seen
}

// forget removes a's entry, if any.
func (t *hostTable) forget(a netip.Addr) {
	if e := t.get(a); e != nil {
		*e = hostEntry{}
		t.len--
	}
}

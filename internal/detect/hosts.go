package detect

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// hostTable counts hits per source in fixed arrays: no Go map and no allocation on the
// per-packet path, and its memory is fixed at creation.
//
// It is in two tiers, because under a spoofed flood nearly every source is seen once:
//   - once: a direct-mapped array of 32-bit fingerprints of sources seen once. A first
//     hit only writes its slot, in an
//     array small enough to stay in the CPU's cache; a flood of one-off sources
//     overwrites these slots among themselves and costs nothing more.
//   - slots: sources that have come back, in an open-addressing table of buckets of
//     bucketSlots entries keyed by the 16-byte address, with a one-hash filter in
//     front, so that a one-off source's lookup rarely touches it. The filter also
//     holds the hosts the detector has acted on, so a clear bit lets the decision skip
//     the acted-on sets too.
//
// A source whose fingerprint is found in once on its next hit moves to slots with two
// hits. When it finds its bucket full, it takes the place of the entry with the fewest
// hits, the least recently seen of those. One-off forged sources never reach slots,
// so they cannot push out a real scanner that has come back. Positions and
// fingerprints come from a hash keyed with a random seed per process, so forged
// sources can be aimed neither at one scanner's slots nor at a fingerprint.
type hostTable struct {
	slots []hostEntry
	mask  uint64 // buckets - 1
	seed  uint64
	len   int
	tick  uint32   // a counter standing in for time: bumped per insert
	once  []uint32 // fingerprints; 0 is an empty slot
	// bits is the filter: a bit per hash value, set for every source put in slots and
	// every source the detector has acted on (markKnown), so that a clear bit proves a
	// source is neither: most probes of a flood then touch nothing else. marks counts
	// the bits set since the last rebuild, base the sources counted by that rebuild.
	bits        [filterWords]uint64
	marks, base int
	// also lists, for a rebuild, the sources whose bits must stay beside those in
	// slots: the acted-on hosts.
	also func(mark func(netip.Addr))
}

// hostEntry is one source that has come back. hits 0 marks a free slot.
type hostEntry struct {
	addr  [16]byte
	hits  uint32
	seen  uint32 // the table's tick at the last hit
	port  uint16 // the last port hit
	ports uint16 // how many times the port changed from one hit to the next (saturating)
	_     [4]byte
}

const bucketSlots = 8

// onceSlots is the size of the first tier: 32 KiB, small enough to stay in the CPU's
// cache while the capture ring streams through it (a 256 KiB tier cost a flood's
// packets a fifth more CPU, measured side by side with tcpdump; the first tier's
// lookup is still the biggest part of a refused probe's cost). A one-off source is
// remembered until 8192 newer ones have come, 48 ms under a 170,000 packets/s flood:
// long enough for the next probe of any scanner that sends them in bursts (nmap's
// SYN scans do), not for one probing a port every second in the middle of the flood.
const onceSlots = 8192

// newHostTable holds at least size sources that have come back (rounded up to a power
// of two of buckets): 32 bytes each, 2 MiB for the default size, plus the first tier.
func newHostTable(size int) *hostTable {
	buckets := 1
	for buckets*bucketSlots < size {
		buckets <<= 1
	}
	return &hostTable{slots: make([]hostEntry, buckets*bucketSlots), mask: uint64(buckets - 1),
		seed: rand.Uint64() | 1, once: make([]uint32, onceSlots)}
}

// hash mixes both halves of the address with the seed (a 64-bit finaliser): an IPv4
// address varies only in its last four bytes, which must reach every bit used.
func (t *hostTable) hash(k *[16]byte) uint64 {
	h := binary.LittleEndian.Uint64(k[:8])*0x9e3779b97f4a7c15 ^ t.seed ^ binary.LittleEndian.Uint64(k[8:])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// The hash's bits: the low ones pick the bucket, bits 32-47 the filter bit, the top
// ones the once slot and the fingerprint.
func (t *hostTable) bucket(h uint64) []hostEntry {
	b := int(h & t.mask)
	return t.slots[b*bucketSlots : (b+1)*bucketSlots]
}

func filterBit(h uint64) (int, uint64) { i := (h >> 32) & 0xffff; return int(i >> 6), 1 << (i & 63) }

func (t *hostTable) onceAt(h uint64) (*uint32, uint32) {
	return &t.once[int(h>>40)&(len(t.once)-1)], uint32(h>>8) | 1
}

// known reports whether h's filter bit is set: the source may be in slots or acted on.
func (t *hostTable) known(h uint64) bool {
	w, bit := filterBit(h)
	return t.bits[w]&bit != 0
}

// find returns k's entry in slots, or nil.
func (t *hostTable) find(k *[16]byte, h uint64) *hostEntry {
	bk := t.bucket(h)
	for i := range bk {
		if bk[i].hits != 0 && bk[i].addr == *k {
			return &bk[i]
		}
	}
	return nil
}

// hit counts one hit of a on port and returns a's hits so far, its entry once it has
// come back (nil for a first hit), whether a was unknown to both tiers before, and
// whether its filter bit was set before (false proves the detector never acted on it).
func (t *hostTable) hit(a netip.Addr, port uint16) (e *hostEntry, hits uint32, fresh, known bool) {
	k := a.As16()
	h := t.hash(&k)
	if known = t.known(h); known {
		e = t.find(&k, h)
	}
	if e != nil {
		e.hits++
		if e.port != port && e.ports < ^uint16(0) {
			e.ports++
		}
		e.port = port
		e.seen = t.tick
		return e, e.hits, false, true
	}
	s, fp := t.onceAt(h)
	if *s != fp {
		*s = fp
		return nil, 1, true, known
	}
	*s = 0 // it moves to slots (the first hit's port is not kept: ports counts from here)
	e = t.insert(&k, h)
	e.hits, e.port = 2, port
	return e, 2, false, known
}

// insert takes a slot for k in its bucket: a free one, else the weakest entry's.
func (t *hostTable) insert(k *[16]byte, h uint64) *hostEntry {
	bk := t.bucket(h)
	victim := 0
	for i := range bk {
		if bk[i].hits == 0 {
			victim = i
			break
		}
		if weaker(&bk[i], &bk[victim], t.tick) {
			victim = i
		}
	}
	e := &bk[victim]
	if e.hits == 0 {
		t.len++
	}
	t.tick++
	*e = hostEntry{addr: *k, seen: t.tick}
	t.mark(h)
	return e
}

// markKnown sets a's filter bit: the detector has acted on a.
func (t *hostTable) markKnown(a netip.Addr) {
	k := a.As16()
	t.mark(t.hash(&k))
}

// mark sets h's bit. Evicted and forgotten sources leave bits behind; the filter is
// rebuilt once they could be as many as the live ones (amortised: at least as many
// marks between rebuilds as the sources a rebuild counts).
func (t *hostTable) mark(h uint64) {
	w, bit := filterBit(h)
	t.bits[w] |= bit
	if t.marks++; t.marks > 2*t.base+1024 {
		t.rebuild()
	}
}

func (t *hostTable) rebuild() {
	clear(t.bits[:])
	t.marks = 0
	set := func(k *[16]byte) {
		w, bit := filterBit(t.hash(k))
		t.bits[w] |= bit
		t.marks++
	}
	for i := range t.slots {
		if t.slots[i].hits != 0 {
			set(&t.slots[i].addr)
		}
	}
	if t.also != nil {
		t.also(func(a netip.Addr) { k := a.As16(); set(&k) })
	}
	t.base = t.marks
}

// weaker reports whether x is a better eviction victim than y: fewer hits, or as
// many and seen longer ago (ticks wrap: compared by age, not value).
func weaker(x, y *hostEntry, now uint32) bool {
	if x.hits != y.hits {
		return x.hits < y.hits
	}
	return now-x.seen > now-y.seen
}

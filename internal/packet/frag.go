package packet

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Reassembler puts IPv4 and IPv6 fragments back together far enough to read what
// DecodeIP reads from a whole packet: the ports and, for TCP, the flags. It holds no
// payload: of every datagram it keeps only the first fragWindow bytes of the part that
// was fragmented, which is where the transport header sits.
//
// Bounds. The table has a fixed number of entries, allocated once by NewReassembler;
// Add never allocates. Entries sit in buckets of fragWays chosen by a keyed hash of
// (source, destination, identification, protocol), with a key drawn at random per
// table, so a sender cannot aim a flood at one bucket. A new datagram takes a free or
// expired entry of its bucket, else the oldest finished one, else the oldest unfinished
// one (counted in Evicted). An unfinished datagram lives at most the timeout from its
// first fragment seen, whatever follows (counted in TimedOut when it goes). A fragment
// that starts past the window is counted and dropped without touching the table, so
// the tails of big datagrams cost nothing.
//
// Overlaps. For every byte of the window the table keeps the first copy that arrived
// and the last one. A fragment whose bytes disagree with bytes already held is counted
// in Overlaps; no valid sender does that, and Linux drops such datagrams (RFC 5722 for
// IPv6, the same rule for IPv4 since 4.19), so it is an evasion attempt: one copy for
// the detector, another for the target. It is still reported, conservatively: when the
// header is complete the first copy's reading is handed out, unless it is not a stealth
// probe (TCP with ACK or RST) and the last copy's reading is; and if a later
// overlapping fragment turns a datagram that has been read as not a probe into one, that
// reading is handed out then. So a datagram yields at most one stealth reading, and no
// order of overlapping fragments can hide one that the first or the last copy makes.
//
// A Reassembler is used by one goroutine. The caller passes the clock (nanoseconds on
// any clock, such as the kernel's receive timestamps); the table never reads one.
type Reassembler struct {
	slots   []fragSlot
	mask    uint64 // buckets - 1
	seed    maphash.Seed
	timeout int64
	swept   int64 // when the whole table was last looked through for expired entries
	stats   FragStats
}

// Reassembler defaults.
const (
	// DefaultFragEntries is the table size: 1024 entries of 136 bytes, 136 KiB.
	DefaultFragEntries = 1024
	// DefaultFragTimeout is how long an unfinished datagram is kept.
	DefaultFragTimeout = 30 * time.Second
	// maxFragEntries caps NewReassembler's size argument.
	maxFragEntries = 1 << 20
)

const (
	// fragWindow is how many leading bytes of the fragmentable part are kept: the whole
	// TCP header up to its flags even behind 18 bytes of IPv6 extension headers.
	fragWindow = 32
	fragWays   = 4
)

// FragStats are a Reassembler's counters, cumulative since NewReassembler.
type FragStats struct {
	Seen        uint64 // fragments given to Add
	Reassembled uint64 // datagrams whose transport header was read
	TimedOut    uint64 // unfinished datagrams dropped after the timeout
	Evicted     uint64 // unfinished datagrams pushed out by newer ones in a full bucket
	Malformed   uint64 // fragments, or datagrams, that no valid sender makes
	Overlaps    uint64 // fragments whose bytes disagreed with bytes already held
}

type fragKey struct {
	src, dst [16]byte // IPv4: the first 4 bytes
	id       uint32
	proto    uint8 // IPv4 protocol, or the IPv6 fragment header's next header
	v6       bool
}

const (
	slotFree    = iota
	slotPending // waiting for bytes of the transport header
	slotDone    // read; kept to absorb the rest and judge late overlaps
	slotIgnored // not TCP or UDP after all, or broken: absorb the rest silently
)

type fragSlot struct {
	key         fragKey
	born        int64 // when its first fragment (in time, not offset) was seen
	state       uint8
	haveFirst   bool   // the fragment at offset 0 was seen
	ipOpts      bool   // IPv4: the first fragment's header had options
	stealth     bool   // a stealth reading was handed out: never again
	tproto      uint8  // protoTCP or protoUDP, once haveFirst
	tstart      int    // offset of the transport header in the fragmentable part
	have        uint32 // which bytes of the window are held, one bit each
	first, last [fragWindow]byte
}

// NewReassembler returns a table of entries datagrams (rounded up to a power of two, at
// least fragWays) that keeps unfinished ones for timeout (DefaultFragTimeout if <= 0).
func NewReassembler(entries int, timeout time.Duration) *Reassembler {
	n := fragWays
	for n < min(entries, maxFragEntries) {
		n *= 2
	}
	if timeout <= 0 {
		timeout = DefaultFragTimeout
	}
	return &Reassembler{
		slots:   make([]fragSlot, n),
		mask:    uint64(n/fragWays - 1),
		seed:    maphash.MakeSeed(),
		timeout: int64(timeout),
	}
}

// Stats returns the counters.
func (r *Reassembler) Stats() FragStats { return r.stats }

// Len is the number of entries in the table.
func (r *Reassembler) Len() int { return len(r.slots) }

// fragment is one parsed fragment.
type fragment struct {
	key    fragKey
	off    int    // byte offset of data in the fragmentable part
	data   []byte // the fragment's data, as far as it was captured
	ipOpts bool
}

// Add takes one packet, starting at the IP header, for which DecodeIP returned
// ErrFragment, received at now. It reports whether h now holds the header of its
// datagram, decoded as DecodeIP decodes a whole packet; that happens once per datagram
// (twice at most when overlapping fragments disagree, see Reassembler). Otherwise h is
// left alone. Packets that are not fragments are handled too, as datagrams of one
// fragment.
func (r *Reassembler) Add(b []byte, now int64, h *Header) bool {
	r.stats.Seen++
	var f fragment
	if !parseFragment(b, &f) {
		r.stats.Malformed++
		return false
	}
	r.sweep(now)
	if f.key.v6 && (f.key.proto == protoHopByHop || f.key.proto == protoFragment) {
		r.stats.Malformed++ // RFC 8200 §4.1: neither ever follows a fragment header
		return false
	}
	if f.off >= fragWindow || !fragProto(&f.key) {
		return false
	}
	s := r.slot(&f.key, now)
	if s.state == slotIgnored {
		return false
	}
	conflict := s.store(f.off, f.data)
	if conflict {
		r.stats.Overlaps++
	}
	if f.off == 0 && !s.haveFirst {
		if ok, read := r.first(s, &f, h); !ok || read {
			return read
		}
	}
	if s.state == slotDone {
		return conflict && r.reread(s, h)
	}
	return r.complete(s, h)
}

// Expire drops every datagram older than the timeout. Add does this by itself, a
// whole-table pass at most once per timeout; Expire is for a caller that wants the
// counters up to date without fragments arriving.
func (r *Reassembler) Expire(now int64) {
	r.swept = now
	for i := range r.slots {
		if s := &r.slots[i]; s.state != slotFree && r.expired(s, now) {
			r.free(s)
		}
	}
}

func (r *Reassembler) sweep(now int64) {
	if d := now - r.swept; d < r.timeout && d > -r.timeout {
		return
	}
	r.Expire(now)
}

// expired: older than the timeout, or the clock went back by more than that.
func (r *Reassembler) expired(s *fragSlot, now int64) bool {
	d := now - s.born
	return d >= r.timeout || d <= -r.timeout
}

func (r *Reassembler) free(s *fragSlot) {
	if s.state == slotPending {
		r.stats.TimedOut++
	}
	s.state = slotFree
}

// slot finds the datagram's entry or claims one for it.
func (r *Reassembler) slot(k *fragKey, now int64) *fragSlot {
	i := int(r.hash(k)&r.mask) * fragWays
	bucket := r.slots[i : i+fragWays]
	var victim *fragSlot
	for j := range bucket {
		s := &bucket[j]
		if s.state != slotFree && r.expired(s, now) {
			r.free(s)
		}
		if s.state != slotFree && s.key == *k {
			return s
		}
		if victim == nil || evictRank(s) < evictRank(victim) ||
			evictRank(s) == evictRank(victim) && s.born < victim.born {
			victim = s
		}
	}
	if victim.state == slotPending {
		r.stats.Evicted++
	}
	*victim = fragSlot{key: *k, born: now, state: slotPending}
	return victim
}

// evictRank orders the candidates for reuse: free, then finished, then unfinished.
func evictRank(s *fragSlot) int {
	switch s.state {
	case slotFree:
		return 0
	case slotPending:
		return 2
	}
	return 1
}

func (r *Reassembler) hash(k *fragKey) uint64 {
	var b [38]byte
	copy(b[0:], k.src[:])
	copy(b[16:], k.dst[:])
	binary.LittleEndian.PutUint32(b[32:], k.id)
	b[36] = k.proto
	if k.v6 {
		b[37] = 1
	}
	return maphash.Bytes(r.seed, b[:])
}

// store copies the fragment's bytes that fall in the window and reports whether any of
// them disagreed with a byte already held.
func (s *fragSlot) store(off int, data []byte) bool {
	end := min(off+len(data), fragWindow)
	conflict := false
	for i := off; i < end; i++ {
		c, bit := data[i-off], uint32(1)<<i
		if s.have&bit == 0 {
			s.first[i] = c
			s.have |= bit
		} else if s.last[i] != c {
			conflict = true
		}
		s.last[i] = c
	}
	return conflict
}

// first learns from the fragment at offset 0 which transport protocol follows and
// where its header starts. It returns ok false when the datagram is not one to read
// (then it is ignored from now on); read true when it was read here, into h: an IPv6
// header chain that puts the transport header past the window is read from the first
// fragment alone, which must then hold it (RFC 7112 asks for the whole chain there).
func (r *Reassembler) first(s *fragSlot, f *fragment, h *Header) (ok, read bool) {
	s.haveFirst, s.ipOpts = true, f.ipOpts
	s.tproto, s.tstart = f.key.proto, 0
	if f.key.v6 {
		next, p, good := walkFragmentable(f.data, f.key.proto)
		if !good {
			r.stats.Malformed++
		}
		if !good || (next != protoTCP && next != protoUDP) {
			s.state = slotIgnored
			return false, false
		}
		s.tproto, s.tstart = next, p
	}
	if s.tstart+transportNeed(s.tproto) <= fragWindow {
		return true, false
	}
	s.state, s.stealth = slotDone, true // no window copies to judge overlaps with
	d := Header{IPv6: true}
	d.Src, d.Dst = s.key.addrs()
	if decodeTransport(f.data[min(s.tstart, len(f.data)):], s.tproto, &d) != nil {
		r.stats.Malformed++
		return false, false
	}
	r.stats.Reassembled++
	*h = d
	return true, true
}

// walkFragmentable follows the extension headers at the start of an IPv6 first
// fragment's data, beginning with next, and returns the protocol that follows them and
// where it starts. good is false for a chain that no valid packet has: cut by the end
// of the fragment, too long, a hop-by-hop or second fragment header.
func walkFragmentable(data []byte, next uint8) (proto uint8, off int, good bool) {
	for i := 0; ; i++ {
		var n int
		switch next {
		case protoRouting, protoDstOpts, protoAH:
			if i == maxExtHeaders || off+2 > len(data) {
				return 0, 0, false
			}
			if next == protoAH {
				n = (int(data[off+1]) + 2) * 4
			} else {
				n = (int(data[off+1]) + 1) * 8
			}
		case protoHopByHop, protoFragment:
			return 0, 0, false
		default:
			return next, off, true
		}
		next, off = data[off], off+n
		if off > len(data) {
			return 0, 0, false
		}
	}
}

// complete reads a pending datagram once the window holds its transport header.
func (r *Reassembler) complete(s *fragSlot, h *Header) bool {
	if !s.haveFirst {
		return false
	}
	m := windowMask(s.tstart, s.tstart+transportNeed(s.tproto))
	if s.have&m != m {
		return false
	}
	s.state = slotDone
	var a, b Header
	okA, okB := s.read(&s.first, &a) == nil, s.read(&s.last, &b) == nil
	if !okA && !okB {
		r.stats.Malformed++
		s.stealth = true // nothing more to hand out
		return false
	}
	r.stats.Reassembled++
	if okA && (isStealth(&a) || !okB || !isStealth(&b)) {
		*h = a
	} else {
		*h = b
	}
	s.stealth = isStealth(h)
	return true
}

// reread looks again at a datagram that was read as no stealth probe, after an
// overlapping fragment changed the last copies.
func (r *Reassembler) reread(s *fragSlot, h *Header) bool {
	if s.stealth {
		return false
	}
	var b Header
	if s.read(&s.last, &b) != nil || !isStealth(&b) {
		return false
	}
	s.stealth = true
	*h = b
	return true
}

// read decodes the transport header from one copy of the window.
func (s *fragSlot) read(w *[fragWindow]byte, h *Header) error {
	if s.tstart+transportNeed(s.tproto) > fragWindow {
		return ErrTruncated
	}
	*h = Header{IPv6: s.key.v6, IPOptions: s.ipOpts}
	h.Src, h.Dst = s.key.addrs()
	return decodeTransport(w[s.tstart:], s.tproto, h)
}

func (k *fragKey) addrs() (src, dst netip.Addr) {
	if k.v6 {
		return netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst)
	}
	return netip.AddrFrom4([4]byte(k.src[:4])), netip.AddrFrom4([4]byte(k.dst[:4]))
}

// isStealth: the reading is one the stealth modes act on (SPEC §3).
func isStealth(h *Header) bool { return h.Proto == probe.UDP || Candidate(h.TCPFlags) }

// transportNeed is how many bytes of the transport header DecodeIP reads.
func transportNeed(proto uint8) int {
	if proto == protoUDP {
		return udpHeaderLen
	}
	return tcpFlagsEnd
}

// windowMask has bits lo..hi-1 set.
func windowMask(lo, hi int) uint32 {
	return uint32(uint64(1)<<hi - uint64(1)<<lo)
}

// fragProto: the fragment may carry TCP or UDP. IPv6 fragments name the first header
// of the fragmentable part, which may be an extension header before the transport.
func fragProto(k *fragKey) bool {
	switch k.proto {
	case protoTCP, protoUDP:
		return true
	case protoRouting, protoDstOpts, protoAH:
		return k.v6
	}
	return false
}

// parseFragment reads the fragment fields of an IPv4 or IPv6 packet. It refuses what
// no valid sender makes: headers that do not fit, empty fragments, datagrams that would
// be longer than 65535 bytes, IPv4-mapped IPv6 addresses.
func parseFragment(b []byte, f *fragment) bool {
	if len(b) == 0 {
		return false
	}
	switch b[0] >> 4 {
	case 4:
		return parseFragment4(b, f)
	case 6:
		return parseFragment6(b, f)
	}
	return false
}

func parseFragment4(b []byte, f *fragment) bool {
	if len(b) < 20 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total <= ihl || len(b) < ihl {
		return false
	}
	f.off = int(binary.BigEndian.Uint16(b[6:])&0x1fff) * 8
	if f.off+total > 65535 {
		return false
	}
	f.data = b[ihl:min(len(b), total)]
	f.ipOpts = ihl > 20
	f.key = fragKey{id: uint32(binary.BigEndian.Uint16(b[4:])), proto: b[9]}
	copy(f.key.src[:], b[12:16])
	copy(f.key.dst[:], b[16:20])
	return true
}

func parseFragment6(b []byte, f *fragment) bool {
	if len(b) < 40 {
		return false
	}
	end := 40 + int(binary.BigEndian.Uint16(b[4:])) // 0: a jumbogram, never fragmented
	capEnd := min(len(b), end)
	src, dst := [16]byte(b[8:24]), [16]byte(b[24:40])
	if netip.AddrFrom16(src).Is4In6() || netip.AddrFrom16(dst).Is4In6() {
		return false
	}
	next, p := b[6], 40
	for i := 0; next != protoFragment; i++ {
		if i == maxExtHeaders || p+2 > capEnd ||
			!(next == protoRouting || next == protoDstOpts || next == protoHopByHop && i == 0) {
			return false
		}
		next, p = b[p], p+(int(b[p+1])+1)*8
	}
	if p+8 > capEnd || p+8 >= end {
		return false
	}
	f.off = int(binary.BigEndian.Uint16(b[p+2:])>>3) * 8
	if p-40+f.off+(end-p-8) > 65535 {
		return false
	}
	f.data = b[p+8 : capEnd]
	f.ipOpts = false
	f.key = fragKey{src: src, dst: dst, id: binary.BigEndian.Uint32(b[p+4:]), proto: b[p], v6: true}
	return true
}

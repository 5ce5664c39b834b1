package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// piece is one fragment of a datagram: n bytes of its fragmentable part from byte off.
type piece struct{ off, n int }

// pieces cuts a fragmentable part of size bytes into fragments of n bytes.
func pieces(size, n int) []piece {
	var out []piece
	for off := 0; off < size; off += n {
		out = append(out, piece{off, min(n, size-off)})
	}
	return out
}

// fragmentable returns where the fragmentable part of a whole packet built by spec
// starts: after the IPv4 header, or after the IPv6 header (the specs used here put
// every extension header in the fragmentable part).
func fragmentable(pkt []byte) int {
	if pkt[0]>>4 == 4 {
		return int(pkt[0]&0x0f) * 4
	}
	return 40
}

// fragOf cuts one piece out of a whole packet (IPv4 or IPv6, by its version), with
// the more-fragments flag set unless the piece ends the packet, and identification id.
// The bytes of the piece may be replaced (overlap tests) by giving data.
func fragOf(pkt []byte, p piece, id uint32, data []byte) []byte {
	hl := fragmentable(pkt)
	body := pkt[hl:]
	if data == nil {
		data = body[p.off : p.off+p.n]
	}
	more := p.off+len(data) < len(body)
	if pkt[0]>>4 == 4 {
		b := append(append([]byte(nil), pkt[:hl]...), data...)
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:], uint16(id))
		v := uint16(p.off / 8)
		if more {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(b[6:], v)
		return b
	}
	b := append([]byte(nil), pkt[:40]...)
	fh := make([]byte, 8)
	fh[0] = pkt[6]
	v := uint16(p.off/8) << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], v)
	binary.BigEndian.PutUint32(fh[4:], id)
	b[6] = protoFragment
	b = append(append(b, fh...), data...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// split is fragOf for every piece.
func split(pkt []byte, ps []piece, id uint32) [][]byte {
	var out [][]byte
	for _, p := range ps {
		out = append(out, fragOf(pkt, p, id, nil))
	}
	return out
}

// withFlags returns a copy of the TCP header bytes at off..off+n of the fragmentable
// part of pkt with the flags byte replaced: an overlapping fragment that rewrites them.
func withFlags(pkt []byte, tstart int, p piece, flags uint8) []byte {
	hl := fragmentable(pkt)
	d := append([]byte(nil), pkt[hl+p.off:hl+p.off+p.n]...)
	if i := tstart + 13 - p.off; i >= 0 && i < len(d) {
		d[i] = flags
	}
	return d
}

// sec is a point in time for Add: n seconds after an arbitrary start.
func sec(n float64) int64 { return 1_795_539_421_000_000_000 + int64(n*1e9) }

// feed gives the fragments to r, one per millisecond from at, and returns the readings.
func feed(r *Reassembler, at int64, frags ...[]byte) []Header {
	var out []Header
	for i, f := range frags {
		var h Header
		if r.Add(f, at+int64(i)*int64(time.Millisecond), &h) {
			out = append(out, h)
		}
	}
	return out
}

// whole decodes an unfragmented packet: what every reassembly must give.
func whole(t *testing.T, pkt []byte) Header {
	t.Helper()
	var h Header
	if err := DecodeIP(pkt, &h); err != nil {
		t.Fatalf("decode the whole packet: %v", err)
	}
	return h
}

func TestReassembleCases(t *testing.T) {
	syn4 := tcp4(FlagSYN)
	syn4.tcpOpts = 4 // nmap's SYN carries an MSS option: 24 bytes of TCP
	syn4opts := syn4
	syn4opts.ipOpts = 8
	fin6 := tcp6(FlagFIN)
	fin6dst := tcp6(FlagFIN, ext6{typ: protoDstOpts, size: 8})
	udp := udp4()
	udp.payload = 40
	p4, p4o, p6, p6d, pu := syn4.build(), syn4opts.build(), fin6.build(), fin6dst.build(), udp.build()
	ack4 := mutate(p4, func(b []byte) { b[20+13] = FlagACK })
	ack6 := mutate(p6, func(b []byte) { b[40+13] = FlagACK })

	rev := func(f [][]byte) [][]byte {
		out := make([][]byte, len(f))
		for i := range f {
			out[len(f)-1-i] = f[i]
		}
		return out
	}
	twice := func(f [][]byte) [][]byte {
		var out [][]byte
		for _, x := range f {
			out = append(out, x, x)
		}
		return out
	}
	cat := func(f ...[][]byte) [][]byte {
		var out [][]byte
		for _, x := range f {
			out = append(out, x...)
		}
		return out
	}
	one := func(f []byte) [][]byte { return [][]byte{f} }
	ps8 := pieces(24, 8)
	asSYN := func(pkt []byte) Header {
		h := whole(t, pkt)
		h.TCPFlags = FlagSYN
		return h
	}

	cases := []struct {
		name  string
		frags [][]byte
		want  []Header
		stats FragStats
	}{
		{"v4 8-byte fragments (nmap -f)", split(p4, ps8, 1), []Header{whole(t, p4)},
			FragStats{Seen: 3, Reassembled: 1}},
		{"v4 reverse order", rev(split(p4, ps8, 1)), []Header{whole(t, p4)},
			FragStats{Seen: 3, Reassembled: 1}},
		{"v4 every fragment twice", twice(split(p4, ps8, 1)), []Header{whole(t, p4)},
			FragStats{Seen: 6, Reassembled: 1}},
		{"v4 16-byte fragments (--mtu 16): read at the first", split(p4, pieces(24, 16), 1), []Header{whole(t, p4)},
			FragStats{Seen: 2, Reassembled: 1}},
		{"v4 options on the first fragment", split(p4o, ps8, 1), []Header{whole(t, p4o)},
			FragStats{Seen: 3, Reassembled: 1}},
		{"v4 no first fragment", split(p4, ps8, 1)[1:], nil, FragStats{Seen: 2}},
		{"v4 first fragment alone, 8 bytes", split(p4, ps8, 1)[:1], nil, FragStats{Seen: 1}},
		{"v4 two datagrams interleaved", [][]byte{
			fragOf(p4, ps8[0], 1, nil), fragOf(p4o, ps8[0], 2, nil), fragOf(p4o, ps8[1], 2, nil), fragOf(p4, ps8[1], 1, nil)},
			[]Header{whole(t, p4o), whole(t, p4)}, FragStats{Seen: 4, Reassembled: 2}},
		{"v4 same id, other protocol, is another datagram", [][]byte{
			fragOf(p4, ps8[0], 1, nil), fragOf(mutate(p4, func(b []byte) { b[9] = protoUDP }), ps8[1], 1, nil)},
			nil, FragStats{Seen: 2}},
		{"v4 UDP, header in the first fragment", split(pu, pieces(48, 16), 1)[:1], []Header{whole(t, pu)},
			FragStats{Seen: 1, Reassembled: 1}},
		{"v4 tail past the window is not kept", split(pu, pieces(48, 16), 1)[2:], nil, FragStats{Seen: 1}},
		{"v6 8-byte fragments", split(p6, ps8, 7), []Header{whole(t, p6)},
			FragStats{Seen: 3, Reassembled: 1}},
		{"v6 out of order", [][]byte{fragOf(p6, ps8[2], 7, nil), fragOf(p6, ps8[0], 7, nil), fragOf(p6, ps8[1], 7, nil)},
			[]Header{whole(t, p6)}, FragStats{Seen: 3, Reassembled: 1}},
		{"v6 destination options before TCP", split(p6d, pieces(28, 8), 7), []Header{whole(t, p6d)},
			FragStats{Seen: 4, Reassembled: 1}},
		{"v6 same id from another source", [][]byte{fragOf(p6, ps8[0], 7, nil),
			fragOf(mutate(p6, func(b []byte) { b[8] ^= 1 }), ps8[1], 7, nil)}, nil, FragStats{Seen: 2}},

		// Overlaps: an evasion attempt, reported whichever copy is the stealth one.
		{"overlap: ACK first, SYN rewrites before the end", cat(
			one(fragOf(p4, piece{8, 8}, 1, withFlags(ack4, 0, piece{8, 8}, FlagACK))),
			one(fragOf(p4, piece{8, 8}, 1, withFlags(ack4, 0, piece{8, 8}, FlagSYN))), split(ack4, ps8[:1], 1), split(ack4, ps8[2:], 1)),
			[]Header{whole(t, p4)}, FragStats{Seen: 4, Reassembled: 1, Overlaps: 1}},
		{"overlap: SYN first, ACK rewrites before the end", cat(one(fragOf(p4, piece{8, 8}, 1, nil)),
			one(fragOf(p4, piece{8, 8}, 1, withFlags(p4, 0, piece{8, 8}, FlagACK))), split(p4, ps8[:1], 1)),
			[]Header{whole(t, p4)}, FragStats{Seen: 3, Reassembled: 1, Overlaps: 1}},
		{"overlap: read as ACK, a late rewrite makes it a SYN", cat(split(ack4, ps8, 1),
			one(fragOf(p4, piece{8, 8}, 1, withFlags(ack4, 0, piece{8, 8}, FlagSYN)))),
			[]Header{whole(t, ack4), whole(t, p4)}, FragStats{Seen: 4, Reassembled: 1, Overlaps: 1}},
		{"overlap: read as SYN, a late ACK changes nothing", cat(split(p4, ps8, 1),
			one(fragOf(p4, piece{8, 8}, 1, withFlags(p4, 0, piece{8, 8}, FlagACK))),
			one(fragOf(p4, piece{8, 8}, 1, withFlags(p4, 0, piece{8, 8}, FlagFIN)))),
			[]Header{whole(t, p4)}, FragStats{Seen: 5, Reassembled: 1, Overlaps: 2}},
		{"overlap: one stealth reading at most", cat(split(ack6, ps8, 3),
			one(fragOf(p6, piece{8, 8}, 3, withFlags(p6, 0, piece{8, 8}, FlagSYN))),
			one(fragOf(p6, piece{8, 8}, 3, withFlags(p6, 0, piece{8, 8}, FlagFIN)))),
			[]Header{whole(t, ack6), asSYN(p6)}, FragStats{Seen: 5, Reassembled: 1, Overlaps: 2}},
		{"overlap: shifted piece", cat(split(p4, ps8[:1], 1), one(fragOf(p4, piece{0, 16}, 1, withFlags(p4, 0, piece{0, 16}, FlagACK)))),
			[]Header{whole(t, ack4)}, FragStats{Seen: 2, Reassembled: 1}}, // bytes 8-15 were new: no overlap

		// Malformed.
		{"empty fragment", one(fragOf(p4, piece{8, 0}, 1, []byte{})), nil, FragStats{Seen: 1, Malformed: 1}},
		{"v4 past 65535 bytes", one(mutate(fragOf(p4, ps8[1], 1, nil), func(b []byte) { b[6], b[7] = 0x3f, 0xff })), nil,
			FragStats{Seen: 1, Malformed: 1}},
		{"v6 hop-by-hop after the fragment header", split(tcp6(FlagSYN, hbh8).build(), pieces(28, 8), 1)[:1], nil,
			FragStats{Seen: 1, Malformed: 1}},
		{"v6 chain cut by the first fragment's end", split(tcp6(FlagSYN, dst16).build(), pieces(36, 8), 1), nil,
			FragStats{Seen: 5, Malformed: 1}},
		{"not IP", one([]byte{0x50, 1, 2}), nil, FragStats{Seen: 1, Malformed: 1}},
		{"v4 ICMP is not kept", one(fragOf(spec{src: v4a, dst: v4b, proto: 1, payload: 16}.build(), piece{0, 8}, 1, nil)), nil,
			FragStats{Seen: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReassembler(64, 0)
			got := feed(r, sec(0), c.frags...)
			if d := cmp.Diff(c.want, got, addrCmp); d != "" {
				t.Errorf("readings (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.stats, r.Stats()); d != "" {
				t.Errorf("counters (-want +got):\n%s", d)
			}
		})
	}
}

// TestReassembleLongChain: an IPv6 chain after the fragment header that puts TCP past
// the window is read from the first fragment, which holds it.
func TestReassembleLongChain(t *testing.T) {
	p := tcp6(FlagSYN, ah24, dst16).build()
	r := NewReassembler(64, 0)
	got := feed(r, sec(0), split(p, pieces(len(p)-40, 56), 9)...)
	if d := cmp.Diff([]Header{whole(t, p)}, got, addrCmp); d != "" {
		t.Errorf("readings (-want +got):\n%s", d)
	}
	r = NewReassembler(64, 0)
	if got := feed(r, sec(0), split(p, pieces(len(p)-40, 40), 9)...); len(got) != 0 || r.Stats().Malformed != 1 {
		t.Errorf("TCP header split past the window: readings %v, counters %+v", got, r.Stats())
	}
}

// TestReassembleTimeout: an unfinished datagram lives for the timeout from its first
// fragment seen, however its fragments are spaced; a finished one does not count as
// timed out.
func TestReassembleTimeout(t *testing.T) {
	p := tcp4(FlagSYN).build()
	f := split(p, pieces(20, 8), 1)
	var h Header

	r := NewReassembler(64, 2*time.Second)
	r.Add(f[0], sec(0), &h)
	if r.Add(f[1], sec(1.9), &h) != true {
		t.Fatal("second fragment within the timeout: not read")
	}
	r.Add(f[2], sec(2.5), &h) // a finished entry expires silently
	if st := r.Stats(); st.TimedOut != 0 || st.Reassembled != 1 {
		t.Errorf("finished datagram: %+v", st)
	}

	r = NewReassembler(64, 2*time.Second)
	r.Add(f[0], sec(10), &h)
	if r.Add(f[1], sec(12), &h) {
		t.Error("second fragment after the timeout read with the first")
	}
	if st := r.Stats(); st.TimedOut != 1 || st.Reassembled != 0 {
		t.Errorf("after the timeout: %+v", st)
	}

	// A non-first fragment that never sees its first one: counted by the next pass.
	r = NewReassembler(64, 2*time.Second)
	r.Add(f[1], sec(20), &h)
	r.Add(fragOf(p, piece{8, 8}, 99, nil), sec(23), &h) // another datagram: the pass runs
	if st := r.Stats(); st.TimedOut != 1 {
		t.Errorf("orphan: %+v", st)
	}
	r.Expire(sec(30))
	if st := r.Stats(); st.TimedOut != 2 {
		t.Errorf("Expire: %+v", st)
	}

	// The clock stepping back by more than the timeout ends every entry.
	r = NewReassembler(64, 2*time.Second)
	r.Add(f[0], sec(100), &h)
	if r.Add(f[1], sec(50), &h) {
		t.Error("read across a clock step back")
	}
	if st := r.Stats(); st.TimedOut != 1 {
		t.Errorf("clock step: %+v", st)
	}
}

// TestReassembleFlood: a flood of orphan fragments keeps the table at its size and
// pushes out only unfinished datagrams. A datagram is pushed out only once four newer
// ones have come into its bucket, so a split SYN with up to three flood fragments
// between its pieces is read in the middle of the flood, every time, whatever buckets
// the random hash key picks.
func TestReassembleFlood(t *testing.T) {
	r := NewReassembler(256, 0)
	syn := tcp4(FlagSYN).build()
	now := sec(0)
	var h Header
	read, n := 0, 0
	flood := func(k int) {
		for range k {
			n++
			now += 1000 // 1 µs: a million fragments a second
			orphan := tcp4(FlagSYN)
			orphan.src = netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			r.Add(fragOf(orphan.build(), piece{8, 8}, uint32(n), nil), now, &h)
		}
	}
	for i := range 50 {
		flood(1000)
		for _, f := range split(syn, pieces(20, 8), uint32(i)) {
			flood(3)
			if r.Add(f, now, &h) {
				read++
			}
		}
	}
	st := r.Stats()
	if read != 50 || st.Reassembled != 50 {
		t.Errorf("split SYNs read %d times of 50 (%+v)", read, st)
	}
	if r.Len() != 256 || st.Evicted < uint64(n-256) || st.TimedOut != 0 {
		t.Errorf("table %d entries, counters %+v", r.Len(), st)
	}
}

// TestReassembleNoAllocs: the per-fragment path allocates nothing, reading or not.
func TestReassembleNoAllocs(t *testing.T) {
	r := NewReassembler(64, 0)
	var frags [][]byte
	for i, p := range [][]byte{tcp4(FlagSYN).build(), tcp6(FlagFIN).build(), udp4().build()} {
		frags = append(frags, split(p, pieces(len(p)-fragmentable(p), 8), uint32(i))...)
	}
	frags = append(frags, []byte{0x45, 0, 0}, fragOf(tcp4(0).build(), piece{8, 8}, 7, nil))
	now := sec(0)
	var h Header
	a := testing.AllocsPerRun(100, func() {
		for _, f := range frags {
			now += int64(time.Second) // entries expire now and then: that path too
			r.Add(f, now, &h)
		}
	})
	if a != 0 {
		t.Errorf("%v allocations per run", a)
	}
}

func TestNewReassemblerSize(t *testing.T) {
	for _, c := range []struct{ in, want int }{{-1, 4}, {0, 4}, {5, 8}, {1024, 1024}, {1 << 30, maxFragEntries}} {
		if got := NewReassembler(c.in, 0).Len(); got != c.want {
			t.Errorf("NewReassembler(%d): %d entries, want %d", c.in, got, c.want)
		}
	}
}

// BenchmarkReassemble: the cost per fragment of nmap -f style SYNs (three 8-byte
// fragments each), from many sources, each datagram read once.
func BenchmarkReassemble(b *testing.B) {
	r := NewReassembler(DefaultFragEntries, 0)
	var frags [][]byte
	for i := range 256 {
		s := tcp4(FlagSYN)
		s.src = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		frags = append(frags, split(s.build(), pieces(20, 8), uint32(i))...)
	}
	now := sec(0)
	var h Header
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(frags) == 0 {
			now += int64(time.Hour) // a new round: every datagram is new again
		}
		r.Add(frags[i%len(frags)], now, &h)
	}
}

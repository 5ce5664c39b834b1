package packet

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

// genSpec draws a random packet the decoder must accept: random addresses, ports and
// flags, IPv4 options, IPv6 extension chains (atomic fragment headers included), TCP
// options, payload. Real fragments are frag_test.go's.
func genSpec(t *rapid.T) spec {
	s := spec{
		proto:   rapid.SampledFrom([]uint8{protoTCP, protoUDP}).Draw(t, "proto"),
		sport:   rapid.Uint16().Draw(t, "sport"),
		dport:   rapid.Uint16().Draw(t, "dport"),
		payload: rapid.IntRange(0, 64).Draw(t, "payload"),
	}
	if s.proto == protoTCP {
		s.flags = rapid.Uint8().Draw(t, "flags")
		s.tcpOpts = 4 * rapid.IntRange(0, 10).Draw(t, "tcpOpts")
	}
	if rapid.Bool().Draw(t, "v6") {
		s.src, s.dst = genAddr16(t, "src"), genAddr16(t, "dst")
		s.ext = rapid.SliceOfN(rapid.Custom(genExt), 0, maxExtHeaders).Draw(t, "ext")
		if rapid.Bool().Draw(t, "hop-by-hop") && len(s.ext) < maxExtHeaders {
			hbh := ext6{typ: protoHopByHop, size: 8 * rapid.IntRange(1, 32).Draw(t, "hbhSize")}
			s.ext = append([]ext6{hbh}, s.ext...)
		}
		return s
	}
	s.src = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "src")))
	s.dst = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "dst")))
	s.ipOpts = 4 * rapid.IntRange(0, 10).Draw(t, "ipOpts")
	return s
}

func genAddr16(t *rapid.T, label string) netip.Addr {
	a := [16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, label))
	if netip.AddrFrom16(a).Is4In6() {
		a[0] = 0x20 // never on the wire; the decoder rightly refuses it
	}
	return netip.AddrFrom16(a)
}

func genExt(t *rapid.T) ext6 {
	switch rapid.IntRange(0, 3).Draw(t, "kind") {
	case 0:
		return ext6{typ: protoRouting, size: 8 * rapid.IntRange(1, 32).Draw(t, "size")}
	case 1:
		return ext6{typ: protoDstOpts, size: 8 * rapid.IntRange(1, 32).Draw(t, "size")}
	case 2:
		return ext6{typ: protoAH, size: 4 * rapid.IntRange(2, 64).Draw(t, "size")}
	}
	return ext6{typ: protoFragment}
}

// TestDecodeRoundTrip: every generated packet decodes to exactly its spec, and every
// prefix shorter than its fixed headers is refused.
func TestDecodeRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genSpec(t)
		b := s.build()
		var h Header
		if err := DecodeIP(b, &h); err != nil || h != s.want() {
			t.Fatalf("decode %x: %v %+v, want %+v", b, err, h, s.want())
		}
		n := rapid.IntRange(0, len(b)).Draw(t, "cut")
		err := DecodeIP(b[:n], &h)
		if (n < s.need()) != (err != nil) {
			t.Fatalf("cut to %d (need %d): err %v", n, s.need(), err)
		}
	})
}

// genFragSpec draws a packet that a sender may fragment: like genSpec, with IPv6
// extension headers only of the kinds that go in the fragmentable part.
func genFragSpec(t *rapid.T) spec {
	s := genSpec(t)
	if s.src.Is6() {
		s.ext = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) ext6 {
			switch rapid.IntRange(0, 2).Draw(t, "kind") {
			case 0:
				return ext6{typ: protoRouting, size: 8 * rapid.IntRange(1, 4).Draw(t, "size")}
			case 1:
				return ext6{typ: protoDstOpts, size: 8 * rapid.IntRange(1, 4).Draw(t, "size")}
			}
			return ext6{typ: protoAH, size: 4 * rapid.IntRange(3, 8).Draw(t, "size")}
		}), 0, 3).Draw(t, "ext")
	}
	return s
}

// TestReassembleAnyOrder: a packet cut into fragments at any 8-byte boundaries, given
// in any order, some of them twice, is read exactly once, and the reading is what
// DecodeIP makes of the whole packet.
func TestReassembleAnyOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genFragSpec(t)
		pkt := s.build()
		var want Header
		if err := DecodeIP(pkt, &want); err != nil {
			t.Fatalf("whole packet: %v", err)
		}
		body := len(pkt) - fragmentable(pkt)
		// Where the transport header starts in the fragmentable part. The extension
		// headers before it must be whole in the first fragment (RFC 7112), and so must
		// the transport header if they put it past the window.
		tstart := body - len(s.transport())
		minFirst := max(8, tstart)
		if tstart+transportNeed(s.proto) > fragWindow {
			minFirst = tstart + transportNeed(s.proto)
		}
		var cuts []int
		for off := 8; off < body; off += 8 {
			if off >= minFirst && rapid.IntRange(0, 2).Draw(t, "cut") == 0 {
				cuts = append(cuts, off)
			}
		}
		var ps []piece
		prev := 0
		for _, c := range append(cuts, body) {
			ps = append(ps, piece{prev, c - prev})
			prev = c
		}
		frags := split(pkt, ps, rapid.Uint32().Draw(t, "id"))
		for i := range frags {
			if rapid.IntRange(0, 4).Draw(t, "dup") == 0 {
				frags = append(frags, frags[i])
			}
		}
		order := rapid.Permutation(frags).Draw(t, "order")
		r := NewReassembler(rapid.IntRange(1, 64).Draw(t, "entries"), 0)
		got := feed(r, sec(0), order...)
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%d pieces: readings %+v, want one %+v (%+v)", len(ps), got, want, r.Stats())
		}
		if st := r.Stats(); st.Reassembled != 1 || st.Overlaps != 0 || st.Malformed != 0 {
			t.Fatalf("counters %+v", st)
		}
	})
}

package packet

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

// genSpec draws a random packet the decoder must accept: random addresses, ports and
// flags, IPv4 options, IPv6 extension chains, first fragments, TCP options, payload.
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
	s.mf = rapid.Bool().Draw(t, "mf")
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
	return ext6{typ: protoFragment, more: rapid.Bool().Draw(t, "more")}
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

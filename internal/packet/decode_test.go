package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/probe"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// want is the header a correct decoder returns for a spec it accepts.
func (s spec) want() Header {
	h := Header{
		Src: s.src, Dst: s.dst,
		SrcPort: s.sport, DstPort: s.dport,
		IPOptions: s.ipOpts > 0,
		IPv6:      s.src.Is6(),
	}
	switch s.proto {
	case protoTCP:
		h.Proto = probe.TCP
		h.TCPFlags = s.flags & 0x3f
	case protoUDP:
		h.Proto = probe.UDP
	}
	return h
}

// ipOnly is the header left after an error past the IP header: addresses and IP facts.
func (s spec) ipOnly() Header {
	return Header{Src: s.src, Dst: s.dst, IPOptions: s.ipOpts > 0, IPv6: s.src.Is6()}
}

// mutate returns a copy of b changed by f.
func mutate(b []byte, f func(b []byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

func tcp4(flags uint8) spec {
	return spec{src: v4a, dst: v4b, proto: protoTCP, sport: 40000, dport: 143, flags: flags}
}

func tcp6(flags uint8, ext ...ext6) spec {
	return spec{src: v6a, dst: v6b, proto: protoTCP, sport: 40001, dport: 31337, flags: flags, ext: ext}
}

func udp4() spec {
	return spec{src: v4b, dst: v4a, proto: protoUDP, sport: 53, dport: 1524, payload: 12}
}
func udp6() spec {
	return spec{src: v6b, dst: v6a, proto: protoUDP, sport: 5353, dport: 635, payload: 3}
}

var (
	hbh8    = ext6{typ: protoHopByHop, size: 8}
	dst16   = ext6{typ: protoDstOpts, size: 16}
	rt24    = ext6{typ: protoRouting, size: 24}
	ah12    = ext6{typ: protoAH, size: 12}
	ah24    = ext6{typ: protoAH, size: 24}
	frag0   = ext6{typ: protoFragment}
	frag0M  = ext6{typ: protoFragment, more: true}
	frag185 = ext6{typ: protoFragment, fragOff: 185}
)

type decodeCase struct {
	name string
	b    []byte
	want Header
	err  error
}

// validSpecs are packets the decoder must accept; they are reused by the truncation,
// allocation and fuzz-seed code.
func validSpecs() map[string]spec {
	withOpts := func(s spec, ip, tcp int) spec { s.ipOpts, s.tcpOpts = ip, tcp; return s }
	return map[string]spec{
		"v4 SYN":                   tcp4(FlagSYN),
		"v4 SYN ECE CWR":           tcp4(FlagSYN | 0xc0),
		"v4 NULL":                  tcp4(0),
		"v4 XMAS":                  tcp4(FlagFIN | FlagPSH | FlagURG),
		"v4 all flags":             tcp4(0xff),
		"v4 4 option bytes":        withOpts(tcp4(FlagFIN), 4, 0),
		"v4 40 option bytes":       withOpts(tcp4(FlagSYN), 40, 40),
		"v4 TCP options + data":    withOpts(tcp4(FlagSYN|FlagACK), 0, 20),
		"v4 UDP":                   udp4(),
		"v4 UDP empty":             {src: v4a, dst: v4b, proto: protoUDP, sport: 1, dport: 2},
		"v6 SYN":                   tcp6(FlagSYN),
		"v6 NULL":                  tcp6(0),
		"v6 hop-by-hop":            tcp6(FlagSYN, hbh8),
		"v6 big hop-by-hop":        tcp6(FlagSYN, ext6{typ: protoHopByHop, size: 2048}),
		"v6 dstopts":               tcp6(FlagFIN, dst16),
		"v6 routing":               tcp6(FlagSYN, rt24),
		"v6 AH 12":                 tcp6(FlagSYN, ah12),
		"v6 AH 24":                 tcp6(FlagSYN, ah24),
		"v6 atomic fragment":       tcp6(FlagSYN, frag0),
		"v6 long chain":            tcp6(FlagSYN, hbh8, dst16, rt24, frag0, ah12, dst16),
		"v6 eight headers":         tcp6(FlagSYN, hbh8, dst16, dst16, dst16, dst16, dst16, dst16, dst16),
		"v6 TCP options":           {src: v6a, dst: v6b, proto: protoTCP, sport: 9, dport: 10, flags: FlagSYN, tcpOpts: 40, payload: 5},
		"v6 UDP":                   udp6(),
		"v6 UDP after hop-by-hop":  {src: v6a, dst: v6b, proto: protoUDP, sport: 7, dport: 8, ext: []ext6{hbh8}},
		"v4 zero ports max ports":  {src: v4a, dst: v4b, proto: protoTCP, sport: 0, dport: 65535},
		"v6 zero ports max ports":  {src: v6a, dst: v6b, proto: protoUDP, sport: 65535, dport: 0},
		"v4 unspecified addresses": {src: netip.IPv4Unspecified(), dst: netip.MustParseAddr("255.255.255.255"), proto: protoUDP, sport: 68, dport: 67},
	}
}

func TestDecodeValid(t *testing.T) {
	for name, s := range validSpecs() {
		t.Run(name, func(t *testing.T) {
			checkDecode(t, s.build(), s.want(), nil)
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	v4 := tcp4(FlagSYN)
	v6 := tcp6(FlagSYN)
	frag4 := tcp4(FlagSYN)
	frag4.fragOff = 3
	splitTCP4 := tcp4(FlagSYN)
	splitTCP4.mf, splitTCP4.cut = true, 8 // nmap -f: 8 bytes of TCP in the first fragment
	splitUDP6 := udp6()
	splitUDP6.ext, splitUDP6.cut = []ext6{frag0M}, 4
	firstFrag := tcp4(FlagSYN)
	firstFrag.mf, firstFrag.payload = true, 16
	firstFrag6 := tcp6(FlagSYN, hbh8, dst16, rt24, frag0M, ah12, dst16)
	noMF := tcp4(FlagSYN)
	noMF.cut = 8
	icmp4 := spec{src: v4a, dst: v4b, proto: 1, payload: 8}
	icmp6 := spec{src: v6a, dst: v6b, proto: 58, payload: 8}
	esp6 := spec{src: v6a, dst: v6b, proto: 50, payload: 16}
	none6 := spec{src: v6a, dst: v6b, proto: 59}
	frag6 := tcp6(FlagSYN, frag185)
	frag6.cut = 0
	nine := tcp6(FlagSYN, hbh8, dst16, dst16, dst16, dst16, dst16, dst16, dst16, dst16)
	hbhLate := tcp6(FlagSYN, dst16, hbh8)
	opts4 := tcp4(FlagSYN)
	opts4.ipOpts = 8
	icmpOpts := icmp4
	icmpOpts.ipOpts = 4

	cases := []decodeCase{
		{"empty", nil, Header{}, ErrTruncated},
		{"version 0", make([]byte, 40), Header{}, ErrNotIP},
		{"version 5", mutate(v4.build(), func(b []byte) { b[0] = 0x55 }), Header{}, ErrNotIP},
		{"version 15", []byte{0xf0}, Header{}, ErrNotIP},
		{"v4 19 bytes", v4.build()[:19], Header{}, ErrTruncated},
		{"v4 IHL 4", mutate(v4.build(), func(b []byte) { b[0] = 0x44 }), Header{}, ErrMalformed},
		{"v4 IHL 0", mutate(v4.build(), func(b []byte) { b[0] = 0x40 }), Header{}, ErrMalformed},
		{"v4 IHL past total length", mutate(v4.build(), func(b []byte) { b[0] = 0x4f }), Header{}, ErrMalformed},
		{"v4 IHL past capture", mutate(v4.build(), func(b []byte) { b[0] = 0x4f; b[3] = 60 }), Header{}, ErrTruncated},
		{"v4 total length < IHL", mutate(v4.build(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), Header{}, ErrMalformed},
		{"v4 total length cuts TCP", mutate(v4.build(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 33) }), v4.ipOnly(), ErrTruncated},
		{"v4 total length cuts options", mutate(opts4.build(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 24) }), Header{}, ErrMalformed},
		{"v4 non-first fragment", frag4.build(), frag4.ipOnly(), ErrFragment},
		{"v4 max fragment offset", mutate(v4.build(), func(b []byte) { b[6] |= 0x1f; b[7] = 0xff }), v4.ipOnly(), ErrFragment},
		{"v4 fragment offset 4096", mutate(v4.build(), func(b []byte) { b[6] |= 0x10 }), v4.ipOnly(), ErrFragment},
		{"v4 DF and reserved bit are not fragments", mutate(v4.build(), func(b []byte) { b[6] |= 0xc0 }), v4.want(), nil},
		{"v4 first fragment split TCP", splitTCP4.build(), splitTCP4.ipOnly(), ErrFragment},
		{"v4 first fragment, whole TCP header", firstFrag.build(), firstFrag.ipOnly(), ErrFragment},
		{"v4 short TCP without MF", noMF.build(), noMF.ipOnly(), ErrTruncated},
		{"v4 ICMP", icmp4.build(), icmp4.ipOnly(), ErrProto},
		{"v4 ICMP with options", icmpOpts.build(), icmpOpts.ipOnly(), ErrProto},
		{"v4 UDP length 7", mutate(udp4().build(), func(b []byte) { binary.BigEndian.PutUint16(b[24:], 7) }), udp4().ipOnly(), ErrMalformed},
		{"v4 UDP length 1", mutate(udp4().build(), func(b []byte) { binary.BigEndian.PutUint16(b[24:], 1) }), udp4().ipOnly(), ErrMalformed},
		{"v6 39 bytes", v6.build()[:39], Header{}, ErrTruncated},
		{"v6 mapped source", mutate(v6.build(), func(b []byte) { copy(b[8:24], netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()) }), Header{}, ErrMalformed},
		{"v6 mapped destination", mutate(v6.build(), func(b []byte) { copy(b[24:40], netip.MustParseAddr("::ffff:10.0.0.2").AsSlice()) }), Header{}, ErrMalformed},
		{"v6 payload length cuts TCP", mutate(v6.build(), func(b []byte) { binary.BigEndian.PutUint16(b[4:], 13) }), v6.ipOnly(), ErrTruncated},
		{"v6 non-first fragment", frag6.build(), frag6.ipOnly(), ErrFragment},
		{"v6 first fragment split UDP", splitUDP6.build(), splitUDP6.ipOnly(), ErrFragment},
		{"v6 first fragment, whole TCP header", firstFrag6.build(), firstFrag6.ipOnly(), ErrFragment},
		{"v6 ICMPv6", icmp6.build(), icmp6.ipOnly(), ErrProto},
		{"v6 ESP", esp6.build(), esp6.ipOnly(), ErrProto},
		{"v6 no next header", none6.build(), none6.ipOnly(), ErrProto},
		{"v6 nine extension headers", nine.build(), nine.ipOnly(), ErrMalformed},
		{"v6 hop-by-hop not first", hbhLate.build(), hbhLate.ipOnly(), ErrMalformed},
		{"v6 ext length past end", mutate(tcp6(FlagSYN, hbh8).build(), func(b []byte) { b[41] = 200 }), v6.ipOnly(), ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkDecode(t, c.b, c.want, c.err) })
	}
}

// TestDecodeBogusDataOffset: a TCP data offset below 5 (hping3 -O 2) is an evasion
// attempt classic reported; the ports and flags are still where they always are.
func TestDecodeBogusDataOffset(t *testing.T) {
	v4, v6 := tcp4(FlagSYN), tcp6(FlagSYN)
	checkDecode(t, mutate(v4.build(), func(b []byte) { b[32] = 0x20 }), v4.want(), nil)
	checkDecode(t, mutate(v4.build(), func(b []byte) { b[32] = 0 }), v4.want(), nil)
	checkDecode(t, mutate(v6.build(), func(b []byte) { b[52] = 0x10 }), v6.want(), nil)
}

// TestDecodeLengthFields checks that the IP length fields, not the capture length, decide
// where the packet ends, and that zero lengths (GRO/BIG TCP, jumbograms) fall back to it.
func TestDecodeLengthFields(t *testing.T) {
	s4, s6 := tcp4(FlagFIN), tcp6(FlagFIN, hbh8)
	padded := append(s4.build(), 0, 0, 0, 0, 0, 0) // Ethernet minimum-frame padding
	zero4 := mutate(s4.build(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 0) })
	zero6 := mutate(s6.build(), func(b []byte) { binary.BigEndian.PutUint16(b[4:], 0) })
	huge4 := mutate(s4.build(), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 65535) })
	udpZero := mutate(udp6().build(), func(b []byte) { binary.BigEndian.PutUint16(b[44:], 0) })
	udpBig := mutate(udp4().build(), func(b []byte) { binary.BigEndian.PutUint16(b[24:], 9000) })
	checkDecode(t, padded, s4.want(), nil)
	checkDecode(t, zero4, s4.want(), nil)
	checkDecode(t, zero6, s6.want(), nil)
	checkDecode(t, huge4, s4.want(), nil)
	checkDecode(t, udpZero, udp6().want(), nil)
	checkDecode(t, udpBig, udp4().want(), nil)
}

func TestDecodeEthernet(t *testing.T) {
	s4, s6 := tcp4(FlagSYN), tcp6(FlagSYN, hbh8)
	cases := []decodeCase{
		{"IPv4", ethernet(etherTypeIPv4, s4.build()), s4.want(), nil},
		{"IPv6", ethernet(etherTypeIPv6, s6.build()), s6.want(), nil},
		{"802.1Q", ethernet(etherTypeIPv4, s4.build(), etherTypeVLAN), s4.want(), nil},
		{"QinQ", ethernet(etherTypeIPv6, s6.build(), etherTypeQinQ, etherTypeVLAN), s6.want(), nil},
		{"three tags", ethernet(etherTypeIPv4, s4.build(), etherTypeVLAN, etherTypeVLAN, etherTypeVLAN), Header{}, ErrNotIP},
		{"ARP", ethernet(0x0806, make([]byte, 28)), Header{}, ErrNotIP},
		{"IPv4 type, IPv6 packet", ethernet(etherTypeIPv4, s6.build()), Header{}, ErrMalformed},
		{"IPv6 type, IPv4 packet", ethernet(etherTypeIPv6, append(s4.build(), make([]byte, 20)...)), Header{}, ErrMalformed},
		{"no EtherType", make([]byte, 13), Header{}, ErrTruncated},
		{"tag without inner type", ethernet(etherTypeIPv4, nil, etherTypeVLAN)[:16], Header{}, ErrTruncated},
		{"header only", ethernet(etherTypeIPv4, nil), Header{}, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Header
			h.SrcPort = 99 // stale data must not survive
			err := DecodeEthernet(c.b, &h)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if d := cmp.Diff(c.want, h, addrCmp); d != "" {
				t.Errorf("header mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestDecodeTruncation cuts every valid packet at every byte offset: shorter than the
// fixed headers must be an error (truncated, or fragment for split first fragments),
// never a panic; from there on the result must not change, as TCP options and payload
// are optional.
func TestDecodeTruncation(t *testing.T) {
	for name, s := range validSpecs() {
		b, need := s.build(), s.need()
		for n := 0; n <= len(b); n++ {
			var h Header
			err := DecodeIP(b[:n], &h)
			switch {
			case n < need && err == nil:
				t.Fatalf("%s cut to %d of %d: decoded %+v, want an error", name, n, need, h)
			case n < need && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrFragment):
				t.Fatalf("%s cut to %d: err = %v, want truncated or fragment", name, n, err)
			case n >= need && err != nil:
				t.Fatalf("%s cut to %d of %d: %v", name, n, len(b), err)
			case n >= need && h != s.want():
				t.Fatalf("%s cut to %d: got %+v, want %+v", name, n, h, s.want())
			}
		}
	}
}

func TestHeaderAddrPorts(t *testing.T) {
	var h Header
	if err := DecodeIP(tcp6(FlagSYN).build(), &h); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Source(), netip.MustParseAddrPort("[2001:db8::10]:40001"); got != want {
		t.Errorf("Source = %v, want %v", got, want)
	}
	if got, want := h.Destination(), netip.MustParseAddrPort("[2001:db8:ffff::7]:31337"); got != want {
		t.Errorf("Destination = %v, want %v", got, want)
	}
}

// checkDecode decodes b into a header holding stale values and compares everything.
func checkDecode(t *testing.T, b []byte, want Header, wantErr error) {
	t.Helper()
	h := Header{Src: v6b, SrcPort: 7, DstPort: 7, TCPFlags: 0x3f, IPOptions: true, IPv6: true, Proto: probe.UDP}
	err := DecodeIP(b, &h)
	if !errors.Is(err, wantErr) {
		t.Fatalf("err = %v, want %v", err, wantErr)
	}
	if d := cmp.Diff(want, h, addrCmp); d != "" {
		t.Errorf("header mismatch (-want +got):\n%s", d)
	}
	if err == nil && (!h.Src.IsValid() || h.Src != probe.Canonical(h.Src) || h.Dst != probe.Canonical(h.Dst)) {
		t.Errorf("addresses not canonical: %v %v", h.Src, h.Dst)
	}
}

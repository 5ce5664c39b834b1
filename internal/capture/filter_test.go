package capture

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
	"pgregory.net/rapid"
)

// vmRun runs f's program, with the VM-compatible prefix, on pkt and reports acceptance.
func vmRun(t testing.TB, f Filter, pkt []byte) bool {
	t.Helper()
	ins, err := f.build(true)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n != 0 && n != Snaplen {
		t.Fatalf("filter returned %d, want 0 or %d", n, Snaplen)
	}
	return n == Snaplen
}

// reference is the filter's contract in plain Go (after the ancillary prefix: the
// packet is for this host, untagged, and its EtherType matches its version nibble). A
// read past the end of the packet drops it, as in the kernel.
func reference(f Filter, b []byte) bool {
	tcp, _ := normalize(f.TCPPorts)
	udp, _ := normalize(f.UDPPorts)
	if len(tcp) == 0 && len(udp) == 0 {
		return false
	}
	in := func(r []PortRange, p uint16) bool {
		for _, x := range r {
			if x.Lo <= p && p <= x.Hi {
				return true
			}
		}
		return false
	}
	watched := func(proto byte) bool {
		return proto == 6 && len(tcp) > 0 || proto == 17 && len(udp) > 0
	}
	transport := func(proto byte, x int) bool {
		if proto == 6 {
			if len(b) < x+14 || b[x+13]&0x14 != 0 {
				return false
			}
			return in(tcp, binary.BigEndian.Uint16(b[x+2:]))
		}
		return len(b) >= x+4 && in(udp, binary.BigEndian.Uint16(b[x+2:]))
	}
	if len(b) == 0 {
		return false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 10 {
			return false
		}
		if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 { // any fragment: reassembled in user space
			return watched(b[9])
		}
		return watched(b[9]) && transport(b[9], 4*int(b[0]&0xf))
	case 6:
		if len(b) < 7 {
			return false
		}
		switch nh := b[6]; {
		case watched(nh):
			return transport(nh, 40)
		case nh == 0 || nh == 43 || nh == 51 || nh == 60:
			return true
		case nh != 44:
			return false
		}
		if len(b) < 44 {
			return false
		}
		if binary.BigEndian.Uint16(b[42:])&0xfff9 != 0 { // not atomic: reassembled in user space
			nh := b[40]
			return watched(nh) || nh == 43 || nh == 51 || nh == 60
		}
		switch nh := b[40]; {
		case watched(nh):
			return transport(nh, 48)
		case nh == 43 || nh == 44 || nh == 51 || nh == 60:
			return true
		}
	}
	return false
}

// Packet builders. Checksums are left zero: neither the filter nor the decoder looks.

func ipv4(proto byte, l4 []byte, opts int) []byte {
	ihl := 20 + 4*opts
	b := make([]byte, ihl, ihl+len(l4))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(ihl+len(l4)))
	b[8], b[9] = 64, proto
	copy(b[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	return append(b, l4...)
}

// ipv6 builds an IPv6 packet; ext is a chain of extension headers whose first next
// header is nh (the caller fills the chain's own next-header bytes).
func ipv6(nh byte, ext, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(ext)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+len(l4)))
	b[6], b[7] = nh, 64
	copy(b[8:], []byte{0x20, 0x01, 0x0d, 0xb8}) // 2001:db8::2 → 2001:db8::1
	copy(b[24:], []byte{0x20, 0x01, 0x0d, 0xb8})
	b[23], b[39] = 2, 1
	b = append(b, ext...)
	return append(b, l4...)
}

func tcpHdr(sport, dport uint16, flags byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], 1024)
	return b
}

func udpHdr(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

// fragHdr is an IPv6 fragment header (8 bytes) with offset in 8-octet units.
func fragHdr(next byte, offset uint16, more bool) []byte {
	v := offset << 3
	if more {
		v |= 1
	}
	b := []byte{next, 0, 0, 0, 0, 0, 0, 42}
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

// optsHdr is a hop-by-hop / destination options / routing header of 8 bytes.
func optsHdr(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
	fURG = 0x20
	fECE = 0x40
	fCWR = 0x80
)

func TestProgramCases(t *testing.T) {
	f := Filter{
		TCPPorts: []PortRange{{1000, 1000}, {2000, 2010}},
		UDPPorts: []PortRange{{3000, 3000}},
	}
	frag4 := func(p []byte, off uint16, mf bool) []byte {
		v := off
		if mf {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(p[6:], v)
		return p
	}
	cases := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"v4 SYN watched", ipv4(6, tcpHdr(1, 1000, fSYN), 0), true},
		{"v4 SYN range low end", ipv4(6, tcpHdr(1, 2000, fSYN), 0), true},
		{"v4 SYN range high end", ipv4(6, tcpHdr(1, 2010, fSYN), 0), true},
		{"v4 SYN just above range", ipv4(6, tcpHdr(1, 2011, fSYN), 0), false},
		{"v4 SYN unwatched", ipv4(6, tcpHdr(1, 1001, fSYN), 0), false},
		{"v4 SYN to UDP port", ipv4(6, tcpHdr(1, 3000, fSYN), 0), false},
		{"v4 FIN", ipv4(6, tcpHdr(1, 1000, fFIN), 0), true},
		{"v4 NULL", ipv4(6, tcpHdr(1, 1000, 0), 0), true},
		{"v4 XMAS", ipv4(6, tcpHdr(1, 1000, fFIN|fURG|fPSH), 0), true},
		{"v4 SYN ECE CWR", ipv4(6, tcpHdr(1, 1000, fSYN|fECE|fCWR), 0), true},
		{"v4 ACK", ipv4(6, tcpHdr(1, 1000, fACK), 0), false},
		{"v4 SYN-ACK", ipv4(6, tcpHdr(1, 1000, fSYN|fACK), 0), false},
		{"v4 RST", ipv4(6, tcpHdr(1, 1000, fRST), 0), false},
		{"v4 RST-ACK", ipv4(6, tcpHdr(1, 1000, fRST|fACK), 0), false},
		{"v4 options SYN", ipv4(6, tcpHdr(1, 1000, fSYN), 3), true},
		{"v4 options SYN unwatched", ipv4(6, tcpHdr(1, 1001, fSYN), 10), false},
		{"v4 UDP watched", ipv4(17, udpHdr(1, 3000, 10), 0), true},
		{"v4 UDP unwatched", ipv4(17, udpHdr(1, 3001, 10), 0), false},
		{"v4 UDP to TCP port", ipv4(17, udpHdr(1, 1000, 10), 0), false},
		{"v4 ICMP", ipv4(1, make([]byte, 8), 0), false},
		{"v4 first fragment", frag4(ipv4(6, tcpHdr(1, 1000, fSYN), 0), 0, true), true},
		{"v4 first fragment, unwatched port", frag4(ipv4(6, tcpHdr(1, 1001, fSYN), 0), 0, true), true},
		{"v4 first fragment ACK", frag4(ipv4(6, tcpHdr(1, 1000, fACK), 0), 0, true), true},
		{"v4 first fragment of 8 bytes (nmap -f)", frag4(ipv4(6, tcpHdr(1, 1000, fSYN)[:8], 0), 0, true), true},
		{"v4 first fragment of 4 bytes", frag4(ipv4(6, tcpHdr(1, 1000, fSYN)[:4], 0), 0, true), true},
		{"v4 non-first fragment", frag4(ipv4(6, tcpHdr(1, 1000, fSYN), 0), 3, false), true},
		{"v4 non-first fragment, more follow", frag4(ipv4(6, make([]byte, 8), 0), 1, true), true},
		{"v4 non-first fragment, no payload captured", frag4(ipv4(6, nil, 0), 1, false), true},
		{"v4 UDP fragment", frag4(ipv4(17, make([]byte, 8), 0), 2, false), true},
		{"v4 ICMP fragment", frag4(ipv4(1, make([]byte, 8), 0), 1, false), false},
		{"v4 DF is no fragment", frag4(ipv4(6, tcpHdr(1, 1000, fACK), 0), 0x4000, false), false},
		{"v4 truncated TCP", ipv4(6, tcpHdr(1, 1000, fSYN), 0)[:33], false},
		{"v6 SYN watched", ipv6(6, nil, tcpHdr(1, 1000, fSYN)), true},
		{"v6 SYN unwatched", ipv6(6, nil, tcpHdr(1, 999, fSYN)), false},
		{"v6 ACK", ipv6(6, nil, tcpHdr(1, 1000, fACK)), false},
		{"v6 UDP watched", ipv6(17, nil, udpHdr(1, 3000, 0)), true},
		{"v6 UDP unwatched", ipv6(17, nil, udpHdr(1, 3002, 0)), false},
		{"v6 ICMPv6", ipv6(58, nil, make([]byte, 8)), false},
		{"v6 dst opts → user space", ipv6(60, optsHdr(6), tcpHdr(1, 999, fSYN)), true},
		{"v6 hop-by-hop → user space", ipv6(0, optsHdr(6), tcpHdr(1, 999, fSYN)), true},
		{"v6 first fragment watched", ipv6(44, fragHdr(6, 0, true), tcpHdr(1, 1000, fSYN)), true},
		{"v6 first fragment unwatched", ipv6(44, fragHdr(6, 0, true), tcpHdr(1, 1001, fSYN)), true},
		{"v6 first fragment ACK", ipv6(44, fragHdr(6, 0, true), tcpHdr(1, 1000, fACK)), true},
		{"v6 atomic fragment unwatched", ipv6(44, fragHdr(6, 0, false), tcpHdr(1, 1001, fSYN)), false},
		{"v6 atomic fragment ACK", ipv6(44, fragHdr(6, 0, false), tcpHdr(1, 1000, fACK)), false},
		{"v6 atomic fragment UDP", ipv6(44, fragHdr(17, 0, false), udpHdr(1, 3000, 0)), true},
		{"v6 first fragment of 8 bytes", ipv6(44, fragHdr(6, 0, true), tcpHdr(1, 1000, fSYN)[:8]), true},
		{"v6 non-first fragment", ipv6(44, fragHdr(6, 1, false), tcpHdr(1, 1000, fSYN)), true},
		{"v6 non-first UDP fragment", ipv6(44, fragHdr(17, 3, true), make([]byte, 8)), true},
		{"v6 non-first fragment after dst opts", ipv6(44, fragHdr(60, 1, false), make([]byte, 8)), true},
		{"v6 ICMPv6 fragment", ipv6(44, fragHdr(58, 1, false), make([]byte, 8)), false},
		{"v6 fragment header cut", ipv6(44, nil, []byte{6, 0}), false},
		{"v6 fragment then dst opts", ipv6(44, append(fragHdr(60, 0, true), optsHdr(6)...), tcpHdr(1, 9, fSYN)), true},
		{"v6 fragment then hop-by-hop", ipv6(44, append(fragHdr(0, 0, true), optsHdr(6)...), tcpHdr(1, 1000, fSYN)), false},
		{"v6 no next header", ipv6(59, nil, nil), false},
		{"not IP", []byte{0x00, 0x01, 0x08, 0x00, 6, 4, 0, 1}, false},
		{"empty", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := vmRun(t, f, c.pkt); got != c.want {
				t.Errorf("VM verdict %v, want %v", got, c.want)
			}
			if got := reference(f, c.pkt); got != c.want {
				t.Errorf("reference verdict %v, want %v", got, c.want)
			}
		})
	}
}

func TestProgramEmptyFilters(t *testing.T) {
	syn := ipv4(6, tcpHdr(1, 1000, fSYN), 0)
	udp := ipv4(17, udpHdr(1, 1000, 0), 0)
	ext := ipv6(60, optsHdr(6), tcpHdr(1, 1000, fSYN))
	tcpFrag4, udpFrag4 := ipv4(6, make([]byte, 8), 0), ipv4(17, make([]byte, 8), 0)
	tcpFrag4[7], udpFrag4[7] = 1, 1 // offset 8
	tcpFrag6, udpFrag6 := ipv6(44, fragHdr(6, 1, false), make([]byte, 8)), ipv6(44, fragHdr(17, 1, false), make([]byte, 8))
	all := []PortRange{{0, 65535}}
	for _, c := range []struct {
		f             Filter
		tcp, udp, ext bool
	}{
		{Filter{}, false, false, false},
		{Filter{TCPPorts: []PortRange{}, UDPPorts: []PortRange{}}, false, false, false},
		{Filter{TCPPorts: all}, true, false, true},
		{Filter{UDPPorts: all}, false, true, true},
	} {
		for _, p := range [][]byte{tcpFrag4, tcpFrag6} {
			if got := vmRun(t, c.f, p); got != c.tcp {
				t.Errorf("%+v: TCP fragment accepted %v", c.f, got)
			}
		}
		for _, p := range [][]byte{udpFrag4, udpFrag6} {
			if got := vmRun(t, c.f, p); got != c.udp {
				t.Errorf("%+v: UDP fragment accepted %v", c.f, got)
			}
		}
		if got := vmRun(t, c.f, syn); got != c.tcp {
			t.Errorf("%+v: SYN accepted %v", c.f, got)
		}
		if got := vmRun(t, c.f, udp); got != c.udp {
			t.Errorf("%+v: UDP accepted %v", c.f, got)
		}
		if got := vmRun(t, c.f, ext); got != c.ext {
			t.Errorf("%+v: IPv6 with extension header accepted %v", c.f, got)
		}
	}
}

func TestProgramRejectsBadRange(t *testing.T) {
	if _, err := (Filter{TCPPorts: []PortRange{{10, 5}}}).Program(); err == nil {
		t.Fatal("Program accepted Lo > Hi")
	}
}

// genPort favours the edges of the port space and a small area where ranges collide.
func genPort() *rapid.Generator[uint16] {
	return rapid.OneOf(
		rapid.Uint16Range(0, 40),
		rapid.Uint16Range(65500, 65535),
		rapid.Uint16(),
	)
}

func genRanges(maxLen int) *rapid.Generator[[]PortRange] {
	r := rapid.Custom(func(t *rapid.T) PortRange {
		lo := genPort().Draw(t, "lo")
		hi := lo + rapid.Uint16Range(0, 5).Draw(t, "width")
		if hi < lo {
			hi = 65535
		}
		return PortRange{lo, hi}
	})
	return rapid.OneOf(
		rapid.Just[[]PortRange](nil),
		rapid.SliceOfN(r, 0, 8),
		rapid.SliceOfN(r, 0, maxLen),
	)
}

// genPacket draws mostly well-formed IPv4/IPv6 TCP/UDP packets with random fields, cut
// at a random length, so that every branch of the program is reached.
func genPacket(t *rapid.T) []byte {
	port := genPort()
	l4 := func(proto byte) []byte {
		if proto == 17 {
			return udpHdr(port.Draw(t, "sport"), port.Draw(t, "dport"), rapid.IntRange(0, 4).Draw(t, "payload"))
		}
		return tcpHdr(port.Draw(t, "sport"), port.Draw(t, "dport"), rapid.Byte().Draw(t, "flags"))
	}
	proto := rapid.SampledFrom([]byte{6, 17, 6, 17, 1, 58, 0, 43, 44, 51, 60, 59}).Draw(t, "proto")
	var p []byte
	switch rapid.IntRange(0, 2).Draw(t, "kind") {
	case 0:
		p = ipv4(proto, l4(proto), rapid.IntRange(0, 10).Draw(t, "opts"))
		if rapid.Bool().Draw(t, "frag") {
			binary.BigEndian.PutUint16(p[6:], rapid.Uint16().Draw(t, "fragfield"))
		}
		if rapid.IntRange(0, 9).Draw(t, "badihl") == 0 {
			p[0] = 0x40 | rapid.Byte().Draw(t, "ihl")&0xf
		}
	case 1:
		var ext []byte
		next := proto
		if proto == 44 || proto == 0 || proto == 43 || proto == 51 || proto == 60 {
			inner := rapid.SampledFrom([]byte{6, 17, 0, 43, 44, 58, 60}).Draw(t, "inner")
			if proto == 44 {
				ext = fragHdr(inner, rapid.Uint16Range(0, 3).Draw(t, "fragoff"), rapid.Bool().Draw(t, "mf"))
			} else {
				ext = optsHdr(inner)
			}
			next = inner
		}
		p = ipv6(proto, ext, l4(next))
	default:
		p = rapid.SliceOfN(rapid.Byte(), 0, 80).Draw(t, "raw")
	}
	cut := rapid.IntRange(0, len(p)).Draw(t, "cut")
	if rapid.Bool().Draw(t, "whole") {
		cut = len(p)
	}
	return p[:cut]
}

// TestProgramMatchesReference: for random filters and packets the VM agrees with the
// plain Go statement of the filter. Long range lists exercise the far jumps of the tree.
func TestProgramMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f := Filter{TCPPorts: genRanges(300).Draw(t, "tcp"), UDPPorts: genRanges(300).Draw(t, "udp")}
		ins, err := f.build(true)
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatalf("NewVM: %v", err)
		}
		for i := range 20 {
			pkt := genPacket(t)
			n, err := vm.Run(pkt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got, want := n == Snaplen, reference(f, pkt); got != want || (n != 0 && n != Snaplen) {
				t.Fatalf("packet %d %x: VM returned %d, reference accepts: %v", i, pkt, n, want)
			}
		}
	})
}

// TestPortTreeExhaustive checks every port against random range sets, TCP and UDP.
func TestPortTreeExhaustive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRanges(400).Draw(t, "ranges")
		n, _ := normalize(r)
		ins, err := Filter{UDPPorts: r}.build(true)
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		pkt := ipv4(17, udpHdr(1, 0, 0), 0)
		for _, p := range []uint16{0, 1, 65534, 65535, genPort().Draw(t, "p"), genPort().Draw(t, "q")} {
			want := false
			for _, x := range n {
				want = want || x.Lo <= p && p <= x.Hi
			}
			binary.BigEndian.PutUint16(pkt[22:], p)
			if got, _ := vm.Run(pkt); (got == Snaplen) != want {
				t.Fatalf("port %d: VM %d, want accepted=%v", p, got, want)
			}
		}
	})
}

// TestProgramSize: MaxRanges ranges always fit, in any mix of TCP and UDP and for the
// densest layouts; far more fail with ErrTooLarge, and Fit repairs them.
func TestProgramSize(t *testing.T) {
	layouts := map[string]func(i int) PortRange{
		"singles gap 1": func(i int) PortRange { p := uint16(2 * i); return PortRange{p, p} },
		"pairs gap 1":   func(i int) PortRange { p := uint16(3*i + 1); return PortRange{p, p + 1} },
		"wide":          func(i int) PortRange { p := uint16(70*i + 5); return PortRange{p, p + 60} },
	}
	for name, mk := range layouts {
		for _, split := range []int{0, 1, MaxRanges / 3, MaxRanges / 2, MaxRanges - 1, MaxRanges} {
			var all []PortRange
			for i := range MaxRanges {
				all = append(all, mk(i))
			}
			f := Filter{TCPPorts: all[:split], UDPPorts: all[split:], UDPReplies: true}
			prog, err := f.Program()
			if err != nil {
				t.Fatalf("%s split %d: %v", name, split, err)
			}
			if len(prog) > MaxInstructions-400 {
				t.Errorf("%s split %d: %d instructions, margin too thin", name, split, len(prog))
			}
		}
	}
	big := Ranges(evenPorts())
	f := Filter{TCPPorts: big, UDPPorts: big}
	if _, err := f.Program(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("32768+32768 ranges: err %v, want ErrTooLarge", err)
	}
	fit := f.Fit()
	if n := len(fit.TCPPorts) + len(fit.UDPPorts); n > MaxRanges {
		t.Fatalf("Fit left %d ranges", n)
	}
	if _, err := fit.Program(); err != nil {
		t.Fatalf("Fit: %v", err)
	}
}

func evenPorts() []uint16 {
	var p []uint16
	for i := 0; i < 65536; i += 2 {
		p = append(p, uint16(i))
	}
	return p
}

func TestRanges(t *testing.T) {
	got := Ranges([]uint16{5, 1, 2, 3, 3, 9, 65535, 10, 65534})
	want := []PortRange{{1, 3}, {5, 5}, {9, 10}, {65534, 65535}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Ranges (-want +got):\n%s", diff)
	}
	if Ranges(nil) != nil {
		t.Error("Ranges(nil) not nil")
	}
}

func TestCoarsen(t *testing.T) {
	r := []PortRange{{1, 1}, {3, 3}, {10, 12}, {100, 100}, {102, 102}, {1000, 1000}}
	for _, c := range []struct {
		limit int
		want  []PortRange
	}{
		{10, r},
		{6, r},
		{5, []PortRange{{1, 3}, {10, 12}, {100, 100}, {102, 102}, {1000, 1000}}},
		{4, []PortRange{{1, 3}, {10, 12}, {100, 102}, {1000, 1000}}},
		{3, []PortRange{{1, 12}, {100, 102}, {1000, 1000}}},
		{2, []PortRange{{1, 102}, {1000, 1000}}},
		{1, []PortRange{{1, 1000}}},
		{0, []PortRange{{1, 1000}}},
	} {
		if diff := cmp.Diff(c.want, Coarsen(r, c.limit)); diff != "" {
			t.Errorf("Coarsen(%d) (-want +got):\n%s", c.limit, diff)
		}
	}
	if got := Coarsen([]PortRange{{9, 7}}, 3); !cmp.Equal(got, []PortRange{{7, 9}}) {
		t.Errorf("Coarsen swapped range: %v", got)
	}
}

// TestCoarsenProperty: the result is sorted, disjoint, within the limit, covers every
// input port, and merges nothing when it does not have to.
func TestCoarsenProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRanges(60).Draw(t, "r")
		limit := rapid.IntRange(1, 70).Draw(t, "limit")
		got := Coarsen(r, limit)
		n, _ := normalize(r)
		if len(got) > limit || len(got) != min(len(n), limit) {
			t.Fatalf("%d ranges for limit %d (input %d)", len(got), limit, len(n))
		}
		if len(n) <= limit && !cmp.Equal(got, n) {
			t.Fatalf("changed a list that fits: %v → %v", n, got)
		}
		for i := 1; i < len(got); i++ {
			if int(got[i].Lo) <= int(got[i-1].Hi)+1 {
				t.Fatalf("not sorted/disjoint: %v", got)
			}
		}
		for _, x := range n {
			covered := false
			for _, y := range got {
				covered = covered || y.Lo <= x.Lo && x.Hi <= y.Hi
			}
			if !covered {
				t.Fatalf("%v lost in %v", x, got)
			}
		}
	})
}

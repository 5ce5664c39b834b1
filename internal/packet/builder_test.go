package packet

import (
	"encoding/binary"
	"net/netip"
)

// This file is a small test-only packet builder: it writes IPv4/IPv6 + TCP/UDP packets
// byte by byte from a spec, so every test states the packet it means in plain fields.

// ext6 is one IPv6 extension header.
type ext6 struct {
	typ     uint8  // protoHopByHop, protoRouting, protoDstOpts, protoAH, protoFragment
	size    int    // total bytes; multiple of 8 (AH: of 4), at least 8; unused for fragment
	fragOff uint16 // fragment header: offset in 8-octet units
	more    bool   // fragment header: M bit
}

// spec describes a packet. The IP version follows src.
type spec struct {
	src, dst     netip.Addr
	proto        uint8 // protoTCP, protoUDP or anything else (payload only)
	sport, dport uint16
	flags        uint8 // the raw TCP flags byte, ECE/CWR included
	ipOpts       int   // IPv4 option bytes, multiple of 4, at most 40
	fragOff      uint16
	mf           bool
	ext          []ext6
	tcpOpts      int // multiple of 4, at most 40
	payload      int
	cut          int // >0: the IP payload holds only this many transport bytes (a split header)
	udpLen       int // >0: overrides the UDP length field
}

var (
	v4a = netip.MustParseAddr("192.0.2.10")
	v4b = netip.MustParseAddr("198.51.100.7")
	v6a = netip.MustParseAddr("2001:db8::10")
	v6b = netip.MustParseAddr("2001:db8:ffff::7")
)

func (s spec) build() []byte {
	t := s.transport()
	if s.src.Is4() {
		return s.ipv4(t)
	}
	return s.ipv6(t)
}

// need is how many leading bytes of the built packet the decoder must see: everything
// up to the end of the fixed transport header (TCP options and data are optional).
// need is how many bytes the decoder needs: the IP headers and, for TCP, the header up
// to the flags byte (the rest of the fixed TCP header is not needed to classify).
func (s spec) need() int {
	n := len(s.build()) - s.tcpOpts - s.payload
	if s.proto == protoTCP {
		n -= 20 - tcpFlagsEnd
	}
	return n
}

func (s spec) transport() []byte {
	var t []byte
	switch s.proto {
	case protoTCP:
		t = make([]byte, 20+s.tcpOpts+s.payload)
		binary.BigEndian.PutUint16(t[0:], s.sport)
		binary.BigEndian.PutUint16(t[2:], s.dport)
		binary.BigEndian.PutUint32(t[4:], 0x01020304) // sequence number
		t[12] = byte((20+s.tcpOpts)/4) << 4
		t[13] = s.flags
		binary.BigEndian.PutUint16(t[14:], 1024) // window
		for i := 20; i < 20+s.tcpOpts; i++ {
			t[i] = 1 // NOP options
		}
		fill(t[20+s.tcpOpts:])
	case protoUDP:
		t = make([]byte, 8+s.payload)
		binary.BigEndian.PutUint16(t[0:], s.sport)
		binary.BigEndian.PutUint16(t[2:], s.dport)
		l := len(t)
		if s.udpLen > 0 {
			l = s.udpLen
		}
		binary.BigEndian.PutUint16(t[4:], uint16(l))
		fill(t[8:])
	default:
		t = make([]byte, s.payload)
		fill(t)
	}
	if s.cut > 0 {
		t = t[:s.cut]
	}
	return t
}

func (s spec) ipv4(t []byte) []byte {
	ihl := 20 + s.ipOpts
	b := make([]byte, ihl+len(t))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234) // identification
	frag := s.fragOff & 0x1fff
	if s.mf {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = s.proto
	src, dst := s.src.As4(), s.dst.As4()
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ihl]))
	copy(b[ihl:], t)
	return b
}

func (s spec) ipv6(t []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	b[7] = 64
	src, dst := s.src.As16(), s.dst.As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	next := 6 // index of the byte naming the header that follows
	for _, e := range s.ext {
		b[next] = e.typ
		next = len(b)
		b = append(b, e.bytes()...)
	}
	b[next] = s.proto
	b = append(b, t...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// bytes encodes the extension header with a zero next-header byte; ipv6 fills it in.
func (e ext6) bytes() []byte {
	if e.typ == protoFragment {
		h := make([]byte, 8)
		off := e.fragOff << 3
		if e.more {
			off |= 1
		}
		binary.BigEndian.PutUint16(h[2:], off)
		binary.BigEndian.PutUint32(h[4:], 0xdeadbeef) // identification
		return h
	}
	h := make([]byte, e.size)
	if e.typ == protoAH {
		h[1] = byte(e.size/4 - 2)
	} else {
		h[1] = byte(e.size/8 - 1)
	}
	for i := 2; i < len(h); i++ {
		h[i] = 0xa5
	}
	return h
}

func fill(p []byte) {
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
}

func checksum(p []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(p); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ethernet wraps an IP packet in an Ethernet header with the given VLAN tags.
func ethernet(etherType uint16, ip []byte, vlans ...uint16) []byte {
	b := make([]byte, 12, 14+4*len(vlans)+len(ip))
	for i := range 12 {
		b[i] = byte(i + 1) // MAC addresses, content irrelevant
	}
	for _, v := range vlans {
		b = binary.BigEndian.AppendUint16(b, v)
		b = binary.BigEndian.AppendUint16(b, 100) // TCI: VLAN 100
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, ip...)
}

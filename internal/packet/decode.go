package packet

import (
	"encoding/binary"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// IP protocol / IPv6 next-header numbers the decoder knows.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
)

// maxExtHeaders bounds the IPv6 extension-header walk. Real traffic has at most a
// handful; the bound keeps a hostile chain from costing more than a few steps.
const maxExtHeaders = 8

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // 802.1Q
	etherTypeQinQ = 0x88a8 // 802.1ad outer tag
)

// DecodeIP decodes a packet that starts at the IP header, as an AF_PACKET socket of type
// SOCK_DGRAM delivers it, choosing IPv4 or IPv6 by the version nibble.
//
// h is overwritten. On success every field is set. On an error the transport fields are
// zero; Src, Dst, IPv6 and IPOptions are still filled whenever the IP header itself was
// readable, so a caller may note who sent a fragment or an odd protocol.
func DecodeIP(b []byte, h *Header) error {
	*h = Header{}
	if len(b) == 0 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return decodeIPv4(b, h)
	case 6:
		return decodeIPv6(b, h)
	}
	return ErrNotIP
}

// DecodeEthernet decodes a frame that starts at the Ethernet header (SOCK_RAW capture),
// skipping up to two VLAN tags. Anything but IPv4/IPv6 is ErrNotIP; a version nibble
// that disagrees with the EtherType is ErrMalformed.
func DecodeEthernet(b []byte, h *Header) error {
	*h = Header{}
	off := 12 // EtherType follows the two MAC addresses
	for range 3 {
		if len(b) < off+2 {
			return ErrTruncated
		}
		et := binary.BigEndian.Uint16(b[off:])
		off += 2
		switch et {
		case etherTypeIPv4:
			return decodeIPv4(b[off:], h)
		case etherTypeIPv6:
			return decodeIPv6(b[off:], h)
		case etherTypeVLAN, etherTypeQinQ:
			off += 2 // the tag's TCI; the inner EtherType comes next
		default:
			return ErrNotIP
		}
	}
	return ErrNotIP
}

func decodeIPv4(b []byte, h *Header) error {
	if len(b) < 20 {
		return ErrTruncated
	}
	if b[0]>>4 != 4 {
		return ErrMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return ErrMalformed
	}
	// Bytes past the total length are link-layer padding, not transport data. A zero
	// total length is what Linux puts in GRO/BIG TCP super-packets: trust the capture.
	end := len(b)
	if total := int(binary.BigEndian.Uint16(b[2:])); total != 0 {
		if total < ihl {
			return ErrMalformed
		}
		end = min(end, total)
	}
	if ihl > end {
		return ErrTruncated
	}
	h.Src = netip.AddrFrom4([4]byte(b[12:16]))
	h.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	h.IPOptions = ihl > 20
	// Any fragment, first or not, goes to a Reassembler: a first fragment's transport
	// header may be cut short (nmap -f) or contradicted by a later, overlapping one.
	// MF is 0x2000, the offset the low 13 bits; DF and the reserved bit do not count.
	if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return ErrFragment
	}
	return decodeTransport(b[ihl:end], b[9], h)
}

func decodeIPv6(b []byte, h *Header) error {
	if len(b) < 40 {
		return ErrTruncated
	}
	if b[0]>>4 != 6 {
		return ErrMalformed
	}
	// A zero payload length means a jumbogram or a BIG TCP super-packet: trust the capture.
	end := len(b)
	if plen := int(binary.BigEndian.Uint16(b[4:])); plen != 0 {
		end = min(end, 40+plen)
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	// RFC 4291 §2.5.5.2: IPv4-mapped addresses never appear on the wire and Linux drops
	// such packets. Accepting one would let a spoofed IPv6 packet get an IPv4 host
	// blocked once the address is canonicalised, so refuse it here.
	if src.Is4In6() || dst.Is4In6() {
		return ErrMalformed
	}
	h.Src, h.Dst, h.IPv6 = src, dst, true
	return walkIPv6(b[40:end], b[6], h)
}

// walkIPv6 follows the extension-header chain in p, starting with next, until it reaches
// TCP or UDP.
func walkIPv6(p []byte, next uint8, h *Header) error {
	for i := 0; ; i++ {
		if next == protoTCP || next == protoUDP {
			return decodeTransport(p, next, h)
		}
		if i == maxExtHeaders {
			return ErrMalformed
		}
		n, err := extHeaderLen(p, next, i)
		if err != nil {
			return err
		}
		if len(p) < n {
			return ErrTruncated
		}
		next, p = p[0], p[n:]
	}
}

// extHeaderLen returns the length of the extension header at the start of p. A fragment
// header is walked only if it is atomic (offset 0, M clear: RFC 6946), which is a whole
// packet; any other is ErrFragment. Anything that is not a walkable extension header
// (ESP 50, no next header 59, ICMPv6, ...) is ErrProto.
func extHeaderLen(p []byte, next uint8, index int) (int, error) {
	switch next {
	case protoHopByHop, protoRouting, protoDstOpts:
		// RFC 8200 §4.3: hop-by-hop options only ever follow the IPv6 header directly.
		if next == protoHopByHop && index != 0 {
			return 0, ErrMalformed
		}
		if len(p) < 2 {
			return 0, ErrTruncated
		}
		return (int(p[1]) + 1) * 8, nil // length in 8-octet units, first 8 not counted
	case protoAH:
		if len(p) < 2 {
			return 0, ErrTruncated
		}
		return (int(p[1]) + 2) * 4, nil // RFC 4302: 4-octet units, minus 2
	case protoFragment:
		if len(p) < 8 {
			return 0, ErrTruncated
		}
		if binary.BigEndian.Uint16(p[2:])&fragOffsetMore6 != 0 {
			return 0, ErrFragment
		}
		return 8, nil
	}
	return 0, ErrProto
}

// fragOffsetMore6 masks the offset (top 13 bits) and the M flag (bit 0) of the second
// word of an IPv6 fragment header.
const fragOffsetMore6 = 0xfff9

func decodeTransport(p []byte, proto uint8, h *Header) error {
	switch proto {
	case protoTCP:
		return decodeTCP(p, h)
	case protoUDP:
		return decodeUDP(p, h)
	}
	return ErrProto
}

// decodeTCP reads only what classification needs: ports and flags, the first 14 bytes.
// A header with a nonsense data offset (hping3 -O 2) is an evasion attempt that classic
// reported, so it is not rejected.
func decodeTCP(p []byte, h *Header) error {
	if len(p) < tcpFlagsEnd {
		return ErrTruncated
	}
	h.Proto = probe.TCP
	h.SrcPort = binary.BigEndian.Uint16(p[0:])
	h.DstPort = binary.BigEndian.Uint16(p[2:])
	h.TCPFlags = p[13] & flagMask
	return nil
}

// tcpFlagsEnd is the length of the TCP header up to and including the flags byte.
const tcpFlagsEnd = 14

// udpHeaderLen is the length of the UDP header.
const udpHeaderLen = 8

// decodeUDP ignores the length field except that 1..7 can never be valid (0 is allowed:
// IPv6 jumbograms use it).
func decodeUDP(p []byte, h *Header) error {
	if len(p) < udpHeaderLen {
		return ErrTruncated
	}
	if l := binary.BigEndian.Uint16(p[4:]); l != 0 && l < 8 {
		return ErrMalformed
	}
	h.Proto = probe.UDP
	h.SrcPort = binary.BigEndian.Uint16(p[0:])
	h.DstPort = binary.BigEndian.Uint16(p[2:])
	return nil
}

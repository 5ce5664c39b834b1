package testnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TCP flag bits, as they appear in byte 13 of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// IP protocol numbers used by the builders.
const (
	protoTCP = 6
	protoUDP = 17
)

// IPv4 options for BuildTCP: record route with room for two addresses (the option an
// unmodified Linux router and host accept), padded to a multiple of four bytes.
var OptRecordRoute = []byte{7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0 /* end of list */}

// BuildTCP returns an IPv4 or IPv6 packet (by the family of src and dst, which must
// agree) holding a 20-byte TCP header with flags and no payload, with correct lengths
// and checksums. ipOpts are IPv4 options, padded by the caller to a multiple of four
// bytes (nil for none; not allowed for IPv6).
func BuildTCP(src, dst netip.AddrPort, flags uint8, ipOpts []byte) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], 0x5053_0001) // sequence number
	if flags&TCPAck != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 0x5053_1000)
	}
	tcp[12] = 5 << 4 // data offset: 5 words
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 1024) // window
	return buildIP(src.Addr(), dst.Addr(), protoTCP, ipOpts, tcp)
}

// BuildUDP returns an IPv4 or IPv6 packet holding one UDP datagram with payload.
func BuildUDP(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	return buildIP(src.Addr(), dst.Addr(), protoUDP, nil, udp)
}

// buildIP wraps a transport segment (checksum field zero) into an IP header and fills in
// the transport checksum.
func buildIP(src, dst netip.Addr, proto uint8, opts []byte, seg []byte) []byte {
	if src.Is4() != dst.Is4() {
		panic(fmt.Sprintf("testnet: BuildTCP/BuildUDP: mixed families %v -> %v", src, dst))
	}
	if len(opts)%4 != 0 || len(opts) > 40 {
		panic(fmt.Sprintf("testnet: IPv4 options must be a multiple of 4 bytes, at most 40, not %d", len(opts)))
	}
	csumAt := 16 // TCP
	if proto == protoUDP {
		csumAt = 6
	}
	// Pseudo-header sum.
	var sum uint32
	s, d := src.AsSlice(), dst.AsSlice()
	sum = sumBytes(sum, s)
	sum = sumBytes(sum, d)
	sum += uint32(proto) + uint32(len(seg))
	sum = sumBytes(sum, seg)
	c := fold(sum)
	if proto == protoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[csumAt:], c)

	if src.Is4() {
		hl := 20 + len(opts)
		pkt := make([]byte, hl+len(seg))
		pkt[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[4:], 0x5053) // identification
		pkt[8] = 64                                 // TTL
		pkt[9] = proto
		copy(pkt[12:], s)
		copy(pkt[16:], d)
		copy(pkt[20:], opts)
		binary.BigEndian.PutUint16(pkt[10:], fold(sumBytes(0, pkt[:hl])))
		copy(pkt[hl:], seg)
		return pkt
	}
	if len(opts) > 0 {
		panic("testnet: IPv4 options given for an IPv6 packet")
	}
	pkt := make([]byte, 40+len(seg))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(seg)))
	pkt[6] = proto
	pkt[7] = 64 // hop limit
	copy(pkt[8:], s)
	copy(pkt[24:], d)
	copy(pkt[40:], seg)
	return pkt
}

func sumBytes(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Inject sends IP packets (IPv4 or IPv6, by their version nibble) as Ethernet frames
// out of the scanner's veth, addressed to the defended veth's MAC address. They go
// through an AF_PACKET socket, so the scanner's kernel neither checks nor changes them:
// truncated or malformed packets arrive at the defended side exactly as given (whose
// own IP stack may then drop them, after a packet sensor has seen them).
func (p *Pair) Inject(t testing.TB, pkts ...[]byte) {
	t.Helper()
	dstMAC := p.mac(t, p.Defended, p.DefIf)
	srcMAC := p.mac(t, p.Scanner, p.ScanIf)
	var frames [][]byte
	for _, pkt := range pkts {
		etype := uint16(unix.ETH_P_IP)
		if len(pkt) > 0 && pkt[0]>>4 == 6 {
			etype = unix.ETH_P_IPV6
		}
		f := make([]byte, 14+len(pkt))
		copy(f[0:], dstMAC)
		copy(f[6:], srcMAC)
		binary.BigEndian.PutUint16(f[12:], etype)
		copy(f[14:], pkt)
		frames = append(frames, f)
	}
	p.InjectFrames(t, frames...)
}

// InjectFrames sends whole Ethernet frames out of the scanner's veth, unchanged.
func (p *Pair) InjectFrames(t testing.TB, frames ...[]byte) {
	t.Helper()
	err := Do(p.Scanner, func() error {
		ifc, err := net.InterfaceByName(p.ScanIf)
		if err != nil {
			return err
		}
		// Protocol 0: this socket only sends, it receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		for _, f := range frames {
			if len(f) < 14 {
				return fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(f))
			}
			sa := &unix.SockaddrLinklayer{
				Protocol: htons(binary.BigEndian.Uint16(f[12:])),
				Ifindex:  ifc.Index,
				Halen:    6,
			}
			copy(sa.Addr[:], f[0:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testnet: inject frames from %s: %v", p.Scanner, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// mac returns the hardware address of interface ifc in namespace ns.
func (p *Pair) mac(t testing.TB, ns, ifc string) net.HardwareAddr {
	t.Helper()
	var hw net.HardwareAddr
	err := Do(ns, func() error {
		i, err := net.InterfaceByName(ifc)
		if err != nil {
			return err
		}
		hw = i.HardwareAddr
		return nil
	})
	if err != nil || len(hw) != 6 {
		t.Fatalf("testnet: MAC address of %s in %s: %v (%v)", ifc, ns, hw, err)
	}
	return hw
}

// Fragments cuts an IP packet made by BuildTCP or BuildUDP into fragments carrying size
// bytes of its payload each (a multiple of 8, except in the last), as `nmap -f` (8) or
// `nmap --mtu 16` does: IPv4 fragments repeat the header with MF and the offset set,
// IPv6 ones get a fragment header. id is the datagram's identification.
func Fragments(pkt []byte, size int, id uint32) [][]byte {
	if size <= 0 || size%8 != 0 {
		panic(fmt.Sprintf("testnet: fragment size %d is not a positive multiple of 8", size))
	}
	hl := 40
	if pkt[0]>>4 == 4 {
		hl = int(pkt[0]&0x0f) * 4
	}
	var out [][]byte
	for off := 0; off < len(pkt)-hl; off += size {
		end := min(off+size, len(pkt)-hl)
		out = append(out, Fragment(pkt, off, pkt[hl+off:hl+end], end < len(pkt)-hl, id))
	}
	return out
}

// Fragment returns one fragment of pkt (see Fragments): data at byte offset off of the
// payload, with the more-fragments flag more. data need not be pkt's own bytes, so a
// test can forge overlapping fragments that disagree.
func Fragment(pkt []byte, off int, data []byte, more bool, id uint32) []byte {
	if pkt[0]>>4 == 4 {
		hl := int(pkt[0]&0x0f) * 4
		f := append(append([]byte(nil), pkt[:hl]...), data...)
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		binary.BigEndian.PutUint16(f[4:], uint16(id))
		v := uint16(off / 8)
		if more {
			v |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], v)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], fold(sumBytes(0, f[:hl])))
		return f
	}
	f := append([]byte(nil), pkt[:40]...)
	v := uint16(off/8) << 3
	if more {
		v |= 1
	}
	fh := []byte{pkt[6], 0, byte(v >> 8), byte(v), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(fh[4:], id)
	f[6] = 44 // fragment header
	f = append(append(f, fh...), data...)
	binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
	return f
}

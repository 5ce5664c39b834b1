// Package packet turns a captured frame into the few header fields the stealth sensors
// need (addresses, ports, TCP flags, whether IPv4 options were set) and names TCP flag
// sets the way classic PortSentry 1.2 logs them.
//
// Decoding never allocates and never panics, whatever the input: it runs once per
// captured packet, and under a flood (SPEC §8) that is the hot path of the daemon.
package packet

import (
	"errors"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// TCP flag bits as they sit in byte 13 of the TCP header. Header.TCPFlags only ever
// holds these six; ECE and CWR are masked off because classic PortSentry does not look
// at them and ECN-capable SYNs must not turn into "Unknown Type" scans.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
	FlagURG uint8 = 0x20

	flagMask = FlagFIN | FlagSYN | FlagRST | FlagPSH | FlagACK | FlagURG
)

// Header is what one packet tells the sensors. It is a plain value so a capture loop
// can reuse one Header for every packet.
type Header struct {
	// Src and Dst are canonical: IPv4 is a 4-byte address, IPv6 is never IPv4-mapped
	// (such packets are rejected as ErrMalformed) and has no zone.
	Src, Dst         netip.Addr
	Proto            probe.Proto // probe.TCP or probe.UDP
	SrcPort, DstPort uint16
	TCPFlags         uint8 // FlagFIN..FlagURG; zero for UDP
	IPOptions        bool  // IPv4 header longer than 20 bytes (classic's "IP options set")
	IPv6             bool
}

// Source is the sender's address and port.
func (h *Header) Source() netip.AddrPort { return netip.AddrPortFrom(h.Src, h.SrcPort) }

// Destination is the local address and port the packet was sent to.
func (h *Header) Destination() netip.AddrPort { return netip.AddrPortFrom(h.Dst, h.DstPort) }

// Decoding errors. They are fixed values so that returning one costs no allocation;
// compare with errors.Is or ==.
var (
	// ErrTruncated: the frame ends before a header the decoder needs.
	ErrTruncated = errors.New("packet: truncated")
	// ErrNotIP: neither IPv4 nor IPv6.
	ErrNotIP = errors.New("packet: not IPv4 or IPv6")
	// ErrFragment: one fragment of a bigger datagram (IPv4 MF or offset set, or an IPv6
	// fragment header that is not atomic), first or not. Its transport header, if it has
	// one, may be cut short (nmap -f) or contradicted by another fragment, so it is not
	// decoded: give the packet to a Reassembler.
	ErrFragment = errors.New("packet: fragment")
	// ErrProto: the payload is neither TCP nor UDP (ICMP, ESP, no next header, ...).
	ErrProto = errors.New("packet: not TCP or UDP")
	// ErrMalformed: a header field that no valid packet can carry.
	ErrMalformed = errors.New("packet: malformed header")
)

package capture

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Snaplen is how many bytes of each accepted packet are captured, counted from the IP
// header. The accept instruction of the filter returns it, and the kernel truncates the
// copy into the ring to the filter's return value: 60 bytes of IPv4 header plus 60 of
// TCP header need 120, and the rest leaves room for IPv6 extension headers.
const Snaplen = 256

// MaxInstructions is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MaxInstructions = 4096

// MaxRanges is the number of port ranges (TCP and UDP together, after merging) that
// always fits in one program, whatever the ranges. Filter.Fit coarsens to it. A range
// costs about 4 instructions (a compare in the search tree and a leaf of 1 to 4), so 800
// take some 3300: the margin covers the fixed part and unlucky layouts (tested).
const MaxRanges = 800

// ErrTooLarge is returned by Filter.Program when the program would exceed
// MaxInstructions. Use Filter.Fit (or Coarsen) and try again.
var ErrTooLarge = errors.New("capture: filter program exceeds the kernel's 4096 instructions")

// Filter says which packets the kernel passes to user space.
type Filter struct {
	TCPPorts []PortRange // destination ports for TCP; empty = no TCP at all
	UDPPorts []PortRange // destination ports for UDP; empty = no UDP at all
	// UDPReplies also accepts the UDP datagrams this host sends from a port in
	// UDPPorts (Info.Outgoing is set on them), so that user space can tell the answers
	// to a short-lived local client from probes. Without it the kernel does not even
	// offer outgoing packets to the socket (PACKET_IGNORE_OUTGOING).
	UDPReplies bool
}

// Fit returns f with each port list coarsened so that the two together have at most
// MaxRanges ranges and Program cannot fail with ErrTooLarge. The budget is shared in
// proportion to the lists' sizes. Invalid ranges (Lo > Hi) are swapped.
func (f Filter) Fit() Filter {
	t, u := Coarsen(f.TCPPorts, MaxRanges), Coarsen(f.UDPPorts, MaxRanges)
	if len(t)+len(u) <= MaxRanges {
		return Filter{TCPPorts: t, UDPPorts: u, UDPReplies: f.UDPReplies}
	}
	bt := max(1, MaxRanges*len(t)/(len(t)+len(u)))
	bu := max(1, MaxRanges-bt)
	return Filter{TCPPorts: Coarsen(t, bt), UDPPorts: Coarsen(u, bu), UDPReplies: f.UDPReplies}
}

// outgoing reports whether the filter takes any outgoing packet.
func (f Filter) outgoing() bool { return f.UDPReplies && len(f.UDPPorts) > 0 }

// Program assembles the filter for SO_ATTACH_FILTER.
//
// Kernel semantics (offsets are from the IP header: the socket is SOCK_DGRAM):
//   - packet type (ancillary SKF_AD_PKTTYPE) must be PACKET_HOST: this drops outgoing
//     copies (loopback traffic is seen twice, outgoing and incoming: this keeps one),
//     broadcast, multicast and frames for other hosts (promiscuous NICs);
//   - except, with UDPReplies, PACKET_OUTGOING UDP (IPv4, or IPv6 with no extension
//     header; no non-first fragment) whose source port is in the UDP ranges;
//   - no VLAN tag may be present (SKF_AD_VLAN_TAG_PRESENT): a tagged frame is seen
//     once on the parent device with the tag still attached and once more on the VLAN
//     device without it; only the second is traffic the host processes;
//   - the protocol (SKF_AD_PROTOCOL) must be IPv4 or IPv6 and agree with the version
//     nibble, so non-IP frames that happen to start with 0x4? or 0x6? never pass;
//   - IPv4: a fragment (MF set or offset ≠ 0), first or not, → ACCEPT if its protocol
//     is TCP or UDP and watched: its ports and flags may sit in another fragment, and
//     user space reassembles them (packet.Reassembler); otherwise TCP or UDP with the
//     transport header at 4*IHL;
//   - IPv6: next header TCP/UDP → transport at 40; a fragment header (44) with offset
//     or M set → ACCEPT if the fragment's next header is a watched TCP/UDP, routing,
//     AH or destination options; an atomic fragment header → TCP/UDP at 48 (routing,
//     fragment, AH, destination options there → ACCEPT); hop-by-hop (0), routing (43),
//     AH (51) or destination options (60) at 40 → ACCEPT unexamined, user space walks
//     the chain; anything else (ICMPv6, ESP, no next header) → drop;
//   - TCP: drop if ACK or RST is set (real connections, backscatter); ECE/CWR ignored;
//   - the destination port must be in the protocol's ranges;
//   - accept returns Snaplen; a load past the end of a short packet drops it (kernel
//     semantics).
//
// Fragments are never checked for ports or flags here, so fragmented traffic of a
// watched protocol always reaches user space; the reassembly table bounds what that
// costs.
func (f Filter) Program() ([]bpf.RawInstruction, error) {
	ins, err := f.build(false)
	if err != nil {
		return nil, err
	}
	if len(ins) > MaxInstructions {
		return nil, fmt.Errorf("%w (%d)", ErrTooLarge, len(ins))
	}
	return bpf.Assemble(ins)
}

// IP protocol numbers the filter knows.
const (
	ipProtoHopByHop = 0
	ipProtoTCP      = 6
	ipProtoUDP      = 17
	ipProtoRouting  = 43
	ipProtoFragment = 44
	ipProtoAH       = 51
	ipProtoDstOpts  = 60
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	tcpAckRst     = 0x14

	packetOutgoing = 4 // PACKET_OUTGOING, an SKF_AD_PKTTYPE value
)

// build lays out the program. With vm set, the prefix that uses ancillary loads (which
// x/net/bpf's VM cannot run) is replaced by a dispatch on the version nibble, so tests
// can run everything else in the VM.
func (f Filter) build(vm bool) ([]bpf.Instruction, error) {
	tcp, err := normalize(f.TCPPorts)
	if err != nil {
		return nil, err
	}
	udp, err := normalize(f.UDPPorts)
	if err != nil {
		return nil, err
	}
	drop := bpf.RetConstant{Val: 0}
	accept := bpf.RetConstant{Val: Snaplen}
	if len(tcp) == 0 && len(udp) == 0 {
		return []bpf.Instruction{drop}, nil
	}

	var a asm
	lDrop, lAccept, lV4, lV6, lFrag := a.label(), a.label(), a.label(), a.label(), a.label()
	lTCP, lUDP := a.label(), a.label() // trampolines: the port trees may be far away
	replies := f.outgoing()
	lOut, lOutUDP, lUDPTree := a.label(), a.label(), a.label()

	if vm {
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		a.jmp(bpf.JumpEqual, 4, lV4, next)
		a.jmp(bpf.JumpEqual, 6, lV6, lDrop)
	} else {
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		if replies {
			a.jmp(bpf.JumpEqual, packetOutgoing, lOut, next)
		}
		a.jmp(bpf.JumpEqual, 0, next, lDrop) // PACKET_HOST
		a.emit(bpf.LoadExtension{Num: bpf.ExtVLANTagPresent})
		a.jmp(bpf.JumpEqual, 0, next, lDrop)
		a.emit(bpf.LoadExtension{Num: bpf.ExtProto})
		a.jmp(bpf.JumpEqual, etherTypeIPv4, lV4, next)
		a.jmp(bpf.JumpEqual, etherTypeIPv6, lV6, lDrop)
	}

	// transport jumps to the TCP/UDP trampolines for the protocol number in A, if the
	// protocol is watched at all.
	transport := func() {
		if len(tcp) > 0 {
			a.jmp(bpf.JumpEqual, ipProtoTCP, lTCP, next)
		}
		if len(udp) > 0 {
			a.jmp(bpf.JumpEqual, ipProtoUDP, lUDP, next)
		}
	}
	// extHeaders accepts the walkable IPv6 extension headers, for user space to decode.
	extHeaders := func(protos ...uint32) {
		for _, p := range protos {
			a.jmp(bpf.JumpEqual, p, lAccept, next)
		}
	}

	// fragments accepts a fragment whose protocol number (in A) is watched: its ports
	// and flags may be in another fragment, user space reassembles them.
	fragments := func() {
		if len(tcp) > 0 {
			a.jmp(bpf.JumpEqual, ipProtoTCP, lAccept, next)
		}
		if len(udp) > 0 {
			a.jmp(bpf.JumpEqual, ipProtoUDP, lAccept, next)
		}
	}

	a.mark(lV4)
	a.emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	a.jmp(bpf.JumpEqual, 0x40, next, lDrop)
	a.emit(bpf.LoadAbsolute{Off: 6, Size: 2})
	lFrag4 := a.label()
	a.jmp(bpf.JumpBitsSet, 0x3fff, lFrag4, next) // MF or fragment offset ≠ 0
	a.emit(bpf.LoadMemShift{Off: 0})             // X = 4*IHL
	a.emit(bpf.LoadAbsolute{Off: 9, Size: 1})
	transport()
	a.emit(drop)
	a.mark(lFrag4)
	a.emit(bpf.LoadAbsolute{Off: 9, Size: 1})
	fragments()
	a.emit(drop)

	a.mark(lV6)
	a.emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	a.jmp(bpf.JumpEqual, 0x60, next, lDrop)
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 40})
	a.emit(bpf.LoadAbsolute{Off: 6, Size: 1})
	transport()
	a.jmp(bpf.JumpEqual, ipProtoFragment, lFrag, next)
	extHeaders(ipProtoHopByHop, ipProtoRouting, ipProtoAH, ipProtoDstOpts)
	a.emit(drop)

	// Fragment header at 40: next header [40], offset in the top 13 bits of [42:44] and
	// M in bit 0. An atomic fragment (both zero) is a whole packet: judged as one.
	lFrag6 := a.label()
	a.mark(lFrag)
	a.emit(bpf.LoadAbsolute{Off: 42, Size: 2})
	a.jmp(bpf.JumpBitsSet, 0xfff9, lFrag6, next)
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 48})
	a.emit(bpf.LoadAbsolute{Off: 40, Size: 1})
	transport()
	// Hop-by-hop is only valid right after the IPv6 header (the decoder rejects it here).
	extHeaders(ipProtoRouting, ipProtoFragment, ipProtoAH, ipProtoDstOpts)
	a.emit(drop)
	// A real fragment, first or not: TCP, UDP, or an extension header that the first
	// fragment's chain walk in user space may find TCP or UDP behind (every fragment
	// names the same first header of the fragmentable part).
	a.mark(lFrag6)
	a.emit(bpf.LoadAbsolute{Off: 40, Size: 1})
	fragments()
	extHeaders(ipProtoRouting, ipProtoAH, ipProtoDstOpts)
	a.emit(drop)

	if replies && !vm {
		// Outgoing UDP: the same checks as above, then the UDP tree on the source port.
		a.mark(lOut)
		a.emit(bpf.LoadExtension{Num: bpf.ExtProto})
		lOut4, lOut6 := a.label(), a.label()
		a.jmp(bpf.JumpEqual, etherTypeIPv4, lOut4, next)
		a.jmp(bpf.JumpEqual, etherTypeIPv6, lOut6, lDrop)
		a.mark(lOut4)
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
		a.jmp(bpf.JumpEqual, 0x40, next, lDrop)
		a.emit(bpf.LoadAbsolute{Off: 6, Size: 2})
		a.jmp(bpf.JumpBitsSet, 0x1fff, lDrop, next)
		a.emit(bpf.LoadMemShift{Off: 0})
		a.emit(bpf.LoadAbsolute{Off: 9, Size: 1})
		a.jmp(bpf.JumpEqual, ipProtoUDP, lOutUDP, lDrop)
		a.mark(lOut6)
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
		a.jmp(bpf.JumpEqual, 0x60, next, lDrop)
		a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 40})
		a.emit(bpf.LoadAbsolute{Off: 6, Size: 1})
		a.jmp(bpf.JumpEqual, ipProtoUDP, lOutUDP, lDrop)
	}

	a.mark(lDrop)
	a.emit(drop)
	a.mark(lAccept)
	a.emit(accept)

	// The port trees come last, behind two trampolines, because a conditional jump
	// reaches only 255 instructions and the TCP tree can be longer than that. The trees
	// are self-contained (every path ends in a return) and use relative skips only.
	codeTCP, codeUDP := a.label(), a.label()
	a.mark(lTCP)
	a.ja(codeTCP)
	a.mark(lUDP)
	a.ja(codeUDP)
	if replies && !vm {
		a.mark(lOutUDP)
		a.emit(bpf.LoadIndirect{Off: 0, Size: 2}) // source port
		a.ja(lUDPTree)
	}
	a.mark(codeTCP)
	if len(tcp) > 0 {
		a.emit(bpf.LoadIndirect{Off: 13, Size: 1}) // TCP flags
		a.emit(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpAckRst, SkipTrue: 0, SkipFalse: 1})
		a.emit(drop)
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2}) // destination port
		a.emit(portTree(tcp, 0, 0xffff)...)
	}
	a.mark(codeUDP)
	if len(udp) > 0 {
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2}) // destination port
		a.mark(lUDPTree)
		a.emit(portTree(udp, 0, 0xffff)...)
	}
	a.emit(drop) // only reached if a section is empty; keeps every label in bounds
	return a.resolve()
}

// portTree is a binary search over sorted, disjoint ranges for the port in A. The caller
// knows that lo <= A <= hi, which lets leaves skip a compare: O(log n) compares per
// packet, and about 4 instructions per range.
func portTree(r []PortRange, lo, hi uint32) []bpf.Instruction {
	accept := bpf.RetConstant{Val: Snaplen}
	drop := bpf.RetConstant{Val: 0}
	if len(r) == 1 {
		x := r[0]
		needLo, needHi := lo < uint32(x.Lo), hi > uint32(x.Hi)
		switch {
		case !needLo && !needHi:
			return []bpf.Instruction{accept}
		case x.Lo == x.Hi:
			return []bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(x.Lo), SkipFalse: 1}, accept, drop}
		case !needHi:
			return []bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(x.Lo), SkipFalse: 1}, accept, drop}
		case !needLo:
			return []bpf.Instruction{bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(x.Hi), SkipTrue: 1}, accept, drop}
		}
		return []bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(x.Hi), SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(x.Lo), SkipFalse: 1},
			accept, drop,
		}
	}
	m := len(r) / 2
	split := uint32(r[m].Lo) // > r[m-1].Hi >= 0, so split-1 does not wrap
	left := portTree(r[:m], lo, split-1)
	right := portTree(r[m:], split, hi)
	var out []bpf.Instruction
	if len(left) <= 255 {
		out = append(out, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipTrue: uint8(len(left))})
	} else { // too far for a conditional jump: go through an unconditional one
		out = append(out,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(left))})
	}
	out = append(out, left...)
	return append(out, right...)
}

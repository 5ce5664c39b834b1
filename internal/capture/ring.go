package capture

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"
)

// The TPACKET_V3 receive ring (linux/if_packet.h, Documentation/networking/packet_mmap.rst).
//
// The ring is NumBlocks blocks of BlockSize bytes, mapped into our memory. The kernel
// fills one block at a time with variable-length packets; it hands a block over when the
// block is full or when the retire timeout expires with at least one packet in it, by
// setting its block_status to TP_STATUS_USER and waking the socket. We walk the block and
// give it back by storing TP_STATUS_KERNEL. Blocks are filled and returned strictly in
// order, so reader and kernel meet at the same index. If the next block is still ours
// when the kernel needs it, the kernel freezes the queue and drops (counted in
// PACKET_STATISTICS) until we give a block back.
//
// A block begins with struct tpacket_block_desc:
//
//	0  u32 version, 4 u32 offset_to_priv,
//	8  struct tpacket_hdr_v1 { u32 block_status; u32 num_pkts; u32 offset_to_first_pkt;
//	                           u32 blk_len; u64 seq_num; ts_first_pkt; ts_last_pkt }
//
// Each packet begins with struct tpacket3_hdr (48 bytes) followed, at
// TPACKET_ALIGN(48) = 48, by the struct sockaddr_ll the kernel fills in. The packet data
// starts tp_net bytes from the tpacket3_hdr (for SOCK_DGRAM tp_mac == tp_net, 96 with no
// reserve: TPACKET_ALIGN(48+20) + 16). tp_snaplen bytes were copied, tp_len is the
// packet's real length. tp_next_offset leads to the next packet; it is 0 in the last one.
const (
	blkStatus   = 8
	blkNumPkts  = 12
	blkFirstPkt = 16
	blkHdrLen   = 48 // sizeof(struct tpacket_block_desc)

	pktNext    = 0
	pktSec     = 4
	pktNsec    = 8
	pktSnaplen = 12
	pktLen     = 16
	pktNet     = 26
	pktHdrLen  = 48 // sizeof(struct tpacket3_hdr)

	sllProtocol = pktHdrLen + 2  // __be16
	sllIfindex  = pktHdrLen + 4  // int
	sllPkttype  = pktHdrLen + 10 // unsigned char
	sllLen      = 20             // sizeof(struct sockaddr_ll)

	// tpHdrLen is TPACKET3_HDRLEN; the kernel puts SOCK_DGRAM data at
	// TPACKET_ALIGN(tpHdrLen) + 16, and a frame must hold at least that much.
	tpHdrLen = pktHdrLen + sllLen

	statusKernel = 0 // TP_STATUS_KERNEL
	statusUser   = 1 // TP_STATUS_USER
)

// tpacketAlign is TPACKET_ALIGN: ring structures are 16-byte aligned.
func tpacketAlign(n int) int { return (n + 15) &^ 15 }

// Info describes one captured packet. It is a plain value: passing it costs nothing.
type Info struct {
	Ifindex   int    // interface the packet arrived on
	Proto     uint16 // EtherType in host order: 0x0800 IPv4, 0x86dd IPv6
	Len       int    // length of the packet from the IP header on; the frame may be shorter
	Sec, Nsec uint32 // kernel receive time
	Outgoing  bool   // sent by this host (only with Filter.UDPReplies)
}

// Time is the kernel's receive timestamp.
func (i Info) Time() time.Time { return time.Unix(int64(i.Sec), int64(i.Nsec)) }

// ne reads the ring's fields, which the kernel writes in host byte order.
var ne = binary.NativeEndian

// blockStatus points at block_status, which the kernel and we hand back and forth; it is
// only ever accessed atomically. Blocks are page aligned, so the word is aligned.
func blockStatus(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[blkStatus])) }

// walkBlock calls fn for every packet in a block we own and returns how many it saw. It
// stops early once stop is set (Close was called). Offsets come from the kernel, but
// they are bounds-checked all the same: a bad block ends the walk, it never panics.
// The frame passed to fn has its capacity cut to its length so that an append cannot
// write into the ring.
func walkBlock(b []byte, stop *atomic.Bool, fn func(frame []byte, info Info)) int {
	if len(b) < blkHdrLen {
		return 0
	}
	n := int(ne.Uint32(b[blkNumPkts:]))
	off := int(ne.Uint32(b[blkFirstPkt:]))
	seen := 0
	for ; seen < n && !stop.Load(); seen++ {
		if off < blkHdrLen || off > len(b)-tpHdrLen {
			break
		}
		p := b[off:]
		start := int(ne.Uint16(p[pktNet:]))
		end := start + int(ne.Uint32(p[pktSnaplen:]))
		if start < tpHdrLen || end > len(p) {
			break
		}
		fn(p[start:end:end], Info{
			Ifindex:  int(int32(ne.Uint32(p[sllIfindex:]))),
			Proto:    binary.BigEndian.Uint16(p[sllProtocol:]),
			Len:      int(ne.Uint32(p[pktLen:])),
			Sec:      ne.Uint32(p[pktSec:]),
			Nsec:     ne.Uint32(p[pktNsec:]),
			Outgoing: p[sllPkttype] == packetOutgoing,
		})
		nx := int(ne.Uint32(p[pktNext:]))
		if nx == 0 {
			seen++
			break
		}
		off += nx
	}
	return seen
}

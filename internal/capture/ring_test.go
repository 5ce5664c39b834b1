package capture

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/packet"
	"pgregory.net/rapid"
)

// synthBlock lays packets out in a block the way the kernel does for a SOCK_DGRAM
// TPACKET_V3 socket: block descriptor, then for each packet a tpacket3_hdr, the
// sockaddr_ll and the data at offset 96, each packet 16-byte aligned.
func synthBlock(size int, pkts [][]byte, infos []Info) []byte {
	b := make([]byte, size)
	ne.PutUint32(b[0:], 3) // TPACKET_V3
	ne.PutUint32(b[blkStatus:], statusUser)
	ne.PutUint32(b[blkNumPkts:], uint32(len(pkts)))
	ne.PutUint32(b[blkFirstPkt:], blkHdrLen)
	off := blkHdrLen
	net := tpacketAlign(tpHdrLen) + 16
	for i, p := range pkts {
		h := b[off:]
		snap := min(len(p), Snaplen)
		total := tpacketAlign(net + snap)
		if i < len(pkts)-1 {
			ne.PutUint32(h[pktNext:], uint32(total))
		}
		ne.PutUint32(h[pktSec:], infos[i].Sec)
		ne.PutUint32(h[pktNsec:], infos[i].Nsec)
		ne.PutUint32(h[pktSnaplen:], uint32(snap))
		ne.PutUint32(h[pktLen:], uint32(infos[i].Len))
		ne.PutUint16(h[24:], uint16(net)) // tp_mac
		ne.PutUint16(h[pktNet:], uint16(net))
		ne.PutUint16(h[pktHdrLen:], 17) // AF_PACKET
		binary.BigEndian.PutUint16(h[sllProtocol:], infos[i].Proto)
		ne.PutUint32(h[sllIfindex:], uint32(infos[i].Ifindex))
		copy(h[net:], p[:snap])
		off += total
	}
	ne.PutUint32(b[20:], uint32(off)) // blk_len
	return b
}

func TestWalkBlock(t *testing.T) {
	pkts := [][]byte{
		ipv4(6, tcpHdr(40000, 22, fSYN), 0),
		ipv6(17, nil, udpHdr(53, 3000, 1000)),
		ipv4(6, tcpHdr(40001, 23, fFIN), 2),
	}
	infos := []Info{
		{Ifindex: 2, Proto: 0x0800, Len: len(pkts[0]), Sec: 1700000000, Nsec: 1},
		{Ifindex: 3, Proto: 0x86dd, Len: len(pkts[1]), Sec: 1700000000, Nsec: 2},
		{Ifindex: 2, Proto: 0x0800, Len: len(pkts[2]), Sec: 1700000001, Nsec: 999999999},
	}
	b := synthBlock(8192, pkts, infos)
	var gotInfo []Info
	var gotLen []int
	var stop atomic.Bool
	n := walkBlock(b, &stop, func(frame []byte, info Info) {
		gotInfo = append(gotInfo, info)
		gotLen = append(gotLen, len(frame))
		if cap(frame) != len(frame) {
			t.Errorf("frame cap %d > len %d: an append would write into the ring", cap(frame), len(frame))
		}
		var h packet.Header
		if err := packet.DecodeIP(frame, &h); err != nil {
			t.Errorf("decode frame %d: %v", len(gotInfo), err)
		}
	})
	if n != 3 {
		t.Errorf("walked %d packets, want 3", n)
	}
	if diff := cmp.Diff(infos, gotInfo); diff != "" {
		t.Errorf("infos (-want +got):\n%s", diff)
	}
	if want := []int{40, Snaplen, 48}; !cmp.Equal(want, gotLen) {
		t.Errorf("frame lengths %v, want %v", gotLen, want)
	}
	stop.Store(true)
	if n := walkBlock(b, &stop, func([]byte, Info) {}); n != 0 {
		t.Errorf("walked %d packets after stop", n)
	}
}

// TestWalkBlockCorrupt: whatever the block holds, the walk neither panics nor hands out a
// frame outside the block.
func TestWalkBlockCorrupt(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pkts := [][]byte{ipv4(6, tcpHdr(1, 2, fSYN), 0), ipv4(17, udpHdr(1, 2, 300), 0)}
		b := synthBlock(4096, pkts, make([]Info, 2))
		for range rapid.IntRange(1, 8).Draw(t, "n") {
			i := rapid.IntRange(0, 400).Draw(t, "at")
			b[i] = rapid.Byte().Draw(t, "v")
		}
		var stop atomic.Bool
		walkBlock(b, &stop, func([]byte, Info) {}) // must not panic
	})
}

func TestWalkBlockAllocs(t *testing.T) {
	pkts, infos := synthPackets(64) // fits a default block
	b := synthBlock(DefaultBlockSize, pkts, infos)
	var stop atomic.Bool
	var h packet.Header
	fn := func(frame []byte, _ Info) { _ = packet.DecodeIP(frame, &h) }
	if a := testing.AllocsPerRun(100, func() { walkBlock(b, &stop, fn) }); a != 0 {
		t.Errorf("%v allocations per block walk", a)
	}
}

func synthPackets(n int) ([][]byte, []Info) {
	var pkts [][]byte
	var infos []Info
	for i := range n {
		p := ipv4(6, tcpHdr(uint16(40000+i), uint16(i), fSYN), 0)
		if i%3 == 0 {
			p = ipv6(17, nil, udpHdr(uint16(i), 53, 20))
		}
		pkts = append(pkts, p)
		infos = append(infos, Info{Ifindex: 2, Proto: 0x0800, Len: len(p)})
	}
	return pkts, infos
}

// BenchmarkWalkBlock measures the per-packet cost of reading the ring (without the
// syscalls): one full default-sized block of SYN-sized packets, each decoded.
func BenchmarkWalkBlock(b *testing.B) {
	n := (DefaultBlockSize - blkHdrLen) / tpacketAlign(tpacketAlign(tpHdrLen)+16+60)
	pkts, infos := synthPackets(n)
	blk := synthBlock(DefaultBlockSize, pkts, infos)
	var stop atomic.Bool
	var h packet.Header
	fn := func(frame []byte, _ Info) { _ = packet.DecodeIP(frame, &h) }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		walkBlock(blk, &stop, fn)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
}

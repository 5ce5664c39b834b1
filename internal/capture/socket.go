package capture

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ignoreOutgoing lets Open and SetFilter set PACKET_IGNORE_OUTGOING when the filter
// takes no outgoing packets. Tests turn it off to prove that the filter alone keeps
// outgoing packets out.
var ignoreOutgoing = true

// setIgnoreOutgoing turns PACKET_IGNORE_OUTGOING on when neither the filter nor the
// tests want outgoing packets, and off otherwise: with it on, the kernel does not even
// offer the socket a copy of what the host sends.
func setIgnoreOutgoing(fd int, f Filter) error {
	on := 0
	if ignoreOutgoing && !f.outgoing() {
		on = 1
	}
	// Since Linux 4.20. The filter drops outgoing packets too, so an older kernel
	// (ENOPROTOOPT) is fine.
	err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, on)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return fmt.Errorf("capture: PACKET_IGNORE_OUTGOING: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// newSocket creates the packet socket, in ns when ns > 0 (a socket belongs to the
// network namespace of the thread that creates it, for its whole life).
//
// The protocol is 0: such a socket is hooked into no receive path and gets nothing
// until bind names a protocol. Open attaches the filter and sets up the ring first and
// binds last, so no packet is ever queued unfiltered; there is nothing to drain.
func newSocket(ns netns.NsHandle) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return -1, fmt.Errorf("capture: socket: %w", err)
		}
		return fd, nil
	}
	if ns <= 0 {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked: when this goroutine returns, the runtime ends
		// the thread instead of handing it, still in ns, to other goroutines.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			ch <- result{-1, fmt.Errorf("capture: setns: %w", err)}
			return
		}
		fd, err := open()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// attachFilter installs prog, atomically replacing any filter already attached: the
// kernel swaps the pointer under RCU, every packet sees either the old or the new one.
func attachFilter(fd int, prog []bpf.RawInstruction) error {
	if len(prog) == 0 {
		return errors.New("capture: empty filter program")
	}
	f := make([]unix.SockFilter, len(prog))
	for i, r := range prog {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fp := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("capture: SO_ATTACH_FILTER: %w", err)
	}
	return nil
}

// setup turns a fresh socket into a bound TPACKET_V3 ring reader and returns the
// mapping. The order matters: version before ring (the ring layout depends on it),
// filter before bind (nothing unfiltered may enter the ring).
func setup(fd int, o *Options, prog []bpf.RawInstruction) ([]byte, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("capture: PACKET_VERSION: %w", err)
	}
	if err := attachFilter(fd, prog); err != nil {
		return nil, err
	}
	if err := setIgnoreOutgoing(fd, o.Filter); err != nil {
		return nil, err
	}
	// With TPACKET_V3 the frame size only has to divide the block evenly enough for the
	// kernel's frame count check (frame_nr == block_size/frame_size * block_nr); packets
	// are packed at their real length. Snapping is done by the filter's return value.
	frame := tpacketAlign(tpacketAlign(tpHdrLen) + 16 + Snaplen)
	req := unix.TpacketReq3{
		Block_size:     uint32(o.BlockSize),
		Block_nr:       uint32(o.NumBlocks),
		Frame_size:     uint32(frame),
		Frame_nr:       uint32(o.BlockSize / frame * o.NumBlocks),
		Retire_blk_tov: uint32((o.Timeout + 999_999) / 1_000_000), // milliseconds, rounded up
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("capture: PACKET_RX_RING (%d blocks of %d bytes): %w", o.NumBlocks, o.BlockSize, err)
	}
	ring, err := unix.Mmap(fd, 0, o.BlockSize*o.NumBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("capture: mmap ring: %w", err)
	}
	sa := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: o.Ifindex}
	if err := unix.Bind(fd, &sa); err != nil {
		unix.Munmap(ring)
		return nil, fmt.Errorf("capture: bind to ifindex %d: %w", o.Ifindex, err)
	}
	return ring, nil
}

// tpacketStats reads and accumulates PACKET_STATISTICS. The kernel zeroes its counters
// on every read, so the handle keeps the running totals.
func tpacketStats(fd int, s *Stats) error {
	st, err := unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return fmt.Errorf("capture: PACKET_STATISTICS: %w", err)
	}
	s.Packets += uint64(st.Packets)
	s.Drops += uint64(st.Drops)
	s.FreezeQueueCount += uint64(st.Freeze_q_cnt)
	return nil
}

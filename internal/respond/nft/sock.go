package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sockBuf is the send and receive buffer size asked for. A batch of 1000 IPv6 bans
// (destroy + add, start and end elements) is about 200 KiB, and netlink refuses a
// message larger than the send buffer.
const sockBuf = 8 << 20

// dumpRecvLen is the largest receive length the kernel takes into account when sizing
// the buffers of a netlink dump (32 KiB minus overhead).
const dumpRecvLen = 32 << 10

// tuneSocket is a socket option for the nftables connection. Giving it replaces the
// library's own buffer enlarging, so it sets both buffers (forcing past the sysctl
// limits when we may). It also fixes a dump speed trap.
//
// The kernel sizes each part of a netlink dump by the largest receive length the
// socket has ever used. mdlayher/netlink receives with a page-sized buffer and grows it
// only when a part does not fit, which never happens, so a dump comes in ~4 KiB parts:
// ~80 set elements. And nf_tables resumes an rbtree (interval set) dump by walking the
// tree from its first element, so a dump costs O(n²/part): reading back 100,000 bans
// took 3 s. One receive with a 32 KiB buffer, here of the answer to a harmless
// NFT_MSG_GETGEN, makes every later part 8 times larger and the dump 8 times cheaper.
func tuneSocket(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBuf) != nil {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBuf); err != nil {
					serr = err
				}
			}
		}
	})
	if err := errors.Join(cerr, serr); err != nil {
		return fmt.Errorf("set socket buffers: %w", err)
	}

	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	if _, err := c.Send(req); err != nil {
		return fmt.Errorf("send NFT_MSG_GETGEN: %w", err)
	}
	buf := make([]byte, dumpRecvLen)
	var n int
	cerr = rc.Read(func(fd uintptr) bool {
		n, _, _, _, serr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err := errors.Join(cerr, serr); err != nil {
		return fmt.Errorf("receive NFT_MSG_GETGEN reply: %w", err)
	}
	msgs, err := netlinkParse(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == netlink.Error && len(m.Data) >= 4 {
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return fmt.Errorf("NFT_MSG_GETGEN: %w", unix.Errno(-code))
			}
		}
	}
	return nil
}

func netlinkParse(b []byte) ([]netlink.Message, error) {
	var out []netlink.Message
	for len(b) >= unix.NLMSG_HDRLEN {
		var m netlink.Message
		if err := m.UnmarshalBinary(b[:min(len(b), int(binary.NativeEndian.Uint32(b)))]); err != nil {
			return nil, fmt.Errorf("parse netlink reply: %w", err)
		}
		out = append(out, m)
		l := (int(m.Header.Length) + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l <= 0 || l > len(b) {
			break
		}
		b = b[l:]
	}
	return out, nil
}

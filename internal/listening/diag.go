//go:build linux

package listening

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Layout of <linux/inet_diag.h>; x/sys/unix does not carry these structs.
const (
	sizeofDiagReq    = 56 // struct inet_diag_req_v2
	sizeofDiagMsg    = 72 // struct inet_diag_msg
	inetDiagSKV6Only = 11 // INET_DIAG_SKV6ONLY: u8, sent for LISTEN and CLOSE sockets

	tcpEstablished = 1  // TCP_ESTABLISHED; also a connected UDP socket
	tcpClose       = 7  // TCP_CLOSE; also an unconnected UDP socket
	tcpListen      = 10 // TCP_LISTEN
)

// recvBufSize holds the largest dump message: the kernel caps each at 32 KiB.
const recvBufSize = 64 << 10

// recvTimeout bounds one receive, so a kernel that never answers cannot hang a refresh
// (and with it Stop) for ever.
const recvTimeout = 5 * time.Second

// errInterrupted says the kernel's socket tables changed during a dump
// (NLM_F_DUMP_INTR): the result may miss sockets and the dump must be repeated.
var errInterrupted = errors.New("sock_diag dump interrupted by concurrent change")

// kind is one of the four dumps: a protocol in an address family.
type kind struct {
	proto  probe.Proto
	family uint8
	proc   string // file name under /proc/net for the fallback
}

var kinds = [...]kind{
	{probe.TCP, unix.AF_INET, "tcp"},
	{probe.TCP, unix.AF_INET6, "tcp6"},
	{probe.UDP, unix.AF_INET, "udp"},
	{probe.UDP, unix.AF_INET6, "udp6"},
}

// states is the kernel-side filter: only listeners are sent, so a host with many
// connections costs little more than one with none.
func (k kind) states() uint32 {
	if k.proto == probe.TCP {
		return 1 << tcpListen
	}
	return 1<<tcpClose | 1<<tcpEstablished
}

func (k kind) ipproto() uint8 {
	if k.proto == probe.TCP {
		return unix.IPPROTO_TCP
	}
	return unix.IPPROTO_UDP
}

// diagConn is a NETLINK_SOCK_DIAG socket. It answers for the network namespace it
// was created in, whichever thread reads it later.
type diagConn struct {
	fd  int
	seq uint32
	buf []byte
}

// openDiag opens the socket; buf (len recvBufSize) receives the answers.
func openDiag(buf []byte) (*diagConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag receive timeout: %w", err)
	}
	return &diagConn{fd: fd, buf: buf}, nil
}

func (c *diagConn) close() { unix.Close(c.fd) }

// dump lists the listeners of one kind. It reads every part of the multi-part answer
// even after an interruption, so the socket is clean for the next dump.
func (c *diagConn) dump(k kind) ([]listener, error) {
	c.seq++
	req := diagRequest(c.seq, k)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var st dumpState
	for !st.done {
		n, err := c.recv()
		if err != nil {
			return nil, err
		}
		if err := st.parse(c.buf[:n], c.seq, k.proto); err != nil {
			return nil, err
		}
	}
	if st.interrupted {
		return nil, errInterrupted
	}
	return st.out, nil
}

func (c *diagConn) recv() (int, error) {
	for {
		n, _, flags, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sock_diag receive: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return 0, errors.New("sock_diag receive: message truncated")
		}
		return n, nil
	}
}

// diagRequest encodes nlmsghdr + inet_diag_req_v2 asking for a dump of one kind.
func diagRequest(seq uint32, k kind) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[unix.SizeofNlMsghdr:]
	r[0], r[1] = k.family, k.ipproto()
	// r[2] (extensions) stays 0: INET_DIAG_SKV6ONLY is sent without being asked for.
	ne.PutUint32(r[4:], k.states())
	return b
}

// dumpState accumulates the answer to one dump across receives.
type dumpState struct {
	out         []listener
	done        bool
	interrupted bool
}

// parse consumes one datagram of netlink messages. Messages of another sequence
// number are left over from an earlier request and skipped.
func (st *dumpState) parse(b []byte, seq uint32, proto probe.Proto) error {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr && !st.done {
		n := int(ne.Uint32(b[0:]))
		if n < unix.SizeofNlMsghdr || n > len(b) {
			return fmt.Errorf("sock_diag: bad message length %d of %d", n, len(b))
		}
		typ, flags, mseq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
		body := b[unix.SizeofNlMsghdr:n]
		b = b[min(nlAlign(n), len(b)):]
		if mseq != seq {
			continue
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			st.interrupted = true
		}
		if err := st.message(typ, body, proto); err != nil {
			return err
		}
	}
	return nil
}

func (st *dumpState) message(typ uint16, body []byte, proto probe.Proto) error {
	switch typ {
	case unix.NLMSG_DONE:
		st.done = true
		return errnoIn(body)
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return errors.New("sock_diag: short error message")
		}
		return errnoIn(body)
	case unix.SOCK_DIAG_BY_FAMILY:
		l, ok, err := parseDiagMsg(body, proto)
		if err != nil {
			return err
		}
		if ok {
			st.out = append(st.out, l)
		}
	}
	return nil // NLMSG_NOOP and unknown types carry nothing for us
}

// errnoIn reads the negative errno that starts an NLMSG_ERROR or NLMSG_DONE body
// (0 for an acknowledgement or a clean end).
func errnoIn(body []byte) error {
	if len(body) < 4 {
		return nil // old kernels send an empty NLMSG_DONE
	}
	if e := int32(binary.NativeEndian.Uint32(body)); e < 0 {
		return fmt.Errorf("sock_diag: %w", unix.Errno(-e))
	}
	return nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseDiagMsg decodes struct inet_diag_msg and its attributes. ok is false for a
// socket that does not take new packets (a TCP socket that is not listening). The
// kernel filters by state already; checking again keeps a filter-ignoring kernel
// from making established sockets look like listeners.
func parseDiagMsg(b []byte, proto probe.Proto) (l listener, ok bool, err error) {
	if len(b) < sizeofDiagMsg {
		return l, false, fmt.Errorf("sock_diag: short socket message (%d bytes)", len(b))
	}
	family, state := b[0], b[1]
	sport := binary.BigEndian.Uint16(b[4:])
	var addr netip.Addr
	switch family {
	case unix.AF_INET:
		addr = netip.AddrFrom4([4]byte(b[8:12]))
	case unix.AF_INET6:
		addr = netip.AddrFrom16([16]byte(b[8:24]))
	default:
		return l, false, nil
	}
	if !takesPackets(proto, state) {
		return l, false, nil
	}
	return newListener(proto, addr, sport, v6onlyAttr(b[sizeofDiagMsg:])), true, nil
}

// takesPackets: a TCP socket takes new connections only when listening; every bound
// UDP socket counts, connected ones too. A connected UDP socket's port receives its
// peer's replies, which are not probes (a local DNS or NTP client on a low port would
// otherwise be "scanned" by every answer), and classic's bind test saw the port as busy
// as well.
func takesPackets(proto probe.Proto, state uint8) bool {
	if proto == probe.TCP {
		return state == tcpListen
	}
	return state == tcpClose || state == tcpEstablished
}

// v6onlyAttr finds INET_DIAG_SKV6ONLY among the rtattrs. Without it (old kernels) the
// socket is taken as dual-stack, Linux's default (net.ipv6.bindv6only=0).
func v6onlyAttr(b []byte) bool {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofRtAttr {
		n := int(ne.Uint16(b[0:]))
		if n < unix.SizeofRtAttr || n > len(b) {
			return false
		}
		if ne.Uint16(b[2:]) == inetDiagSKV6Only && n > unix.SizeofRtAttr {
			return b[unix.SizeofRtAttr] != 0
		}
		b = b[min(nlAlign(n), len(b)):]
	}
	return false
}

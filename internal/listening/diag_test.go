//go:build linux

package listening

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// nlmsg frames body as one netlink message, padded to 4 bytes like the kernel does.
func nlmsg(typ, flags uint16, seq uint32, body []byte) []byte {
	n := unix.SizeofNlMsghdr + len(body)
	b := make([]byte, nlAlign(n))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	copy(b[unix.SizeofNlMsghdr:], body)
	return b
}

// v6onlyUnset leaves INET_DIAG_SKV6ONLY out, as an old kernel would.
const v6onlyUnset = -1

// diagMsg builds struct inet_diag_msg for a socket, with an INET_DIAG_SKV6ONLY attribute
// unless v6only is v6onlyUnset.
func diagMsg(state uint8, local, remote netip.AddrPort, v6only int) []byte {
	b := make([]byte, sizeofDiagMsg)
	b[0], b[1] = unix.AF_INET, state
	if local.Addr().Is6() {
		b[0] = unix.AF_INET6
	}
	binary.BigEndian.PutUint16(b[4:], local.Port())
	binary.BigEndian.PutUint16(b[6:], remote.Port())
	putAddr(b[8:24], local.Addr())
	putAddr(b[24:40], remote.Addr())
	if v6only != v6onlyUnset {
		attr := make([]byte, 8) // rtattr (4) + u8, padded
		binary.NativeEndian.PutUint16(attr[0:], 5)
		binary.NativeEndian.PutUint16(attr[2:], inetDiagSKV6Only)
		attr[4] = byte(v6only)
		b = append(b, attr...)
	}
	return b
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

func errBody(errno unix.Errno) []byte {
	b := make([]byte, 4+unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(b, uint32(-int32(errno)))
	return b
}

var (
	any4   = netip.MustParseAddrPort("0.0.0.0:0")
	doneOK = nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, 7, make([]byte, 4))
)

func sockMsg(state uint8, local, remote string, v6only int) []byte {
	return nlmsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, 7,
		diagMsg(state, netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote), v6only))
}

// withLen is a copy of msg with a corrupt nlmsg_len.
func withLen(msg []byte, n uint32) []byte {
	b := append([]byte(nil), msg...)
	binary.NativeEndian.PutUint32(b, n)
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestDumpStateMultipart feeds a dump split over several datagrams, with sockets to keep
// and to drop, a stale message of another request and a NOOP.
func TestDumpStateMultipart(t *testing.T) {
	var st dumpState
	datagrams := [][]byte{
		cat(sockMsg(tcpListen, "127.0.0.1:22", "0.0.0.0:0", v6onlyUnset),
			nlmsg(unix.NLMSG_NOOP, 0, 7, nil),
			sockMsg(tcpEstablished, "127.0.0.1:22", "127.0.0.1:40000", v6onlyUnset)),
		cat(nlmsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, 6, // stale: seq 6
			diagMsg(tcpListen, netip.MustParseAddrPort("10.9.9.9:9"), any4, v6onlyUnset)),
			sockMsg(tcpListen, "[::]:80", "[::]:0", 0),
			sockMsg(tcpListen, "[::]:443", "[::]:0", 1),
			sockMsg(tcpListen, "[::]:8080", "[::]:0", v6onlyUnset),
			sockMsg(tcpListen, "[::ffff:10.0.0.1]:25", "[::]:0", 0)),
		doneOK,
	}
	for i, d := range datagrams {
		if st.done {
			t.Fatalf("done after datagram %d of %d", i, len(datagrams))
		}
		if err := st.parse(d, 7, probe.TCP); err != nil {
			t.Fatal(err)
		}
	}
	if !st.done || st.interrupted {
		t.Fatalf("done=%v interrupted=%v", st.done, st.interrupted)
	}
	want := []string{"TCP 127.0.0.1:22", "TCP [::]:80 dual", "TCP [::]:443", "TCP [::]:8080 dual", "TCP 10.0.0.1:25"}
	if diff := cmp.Diff(want, strs(st.out)); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
}

func TestDumpStateUDP(t *testing.T) {
	var st dumpState
	d := cat(
		sockMsg(tcpClose, "0.0.0.0:53", "0.0.0.0:0", v6onlyUnset),
		sockMsg(tcpEstablished, "127.0.0.1:5000", "127.0.0.1:53", v6onlyUnset), // connected
		sockMsg(tcpClose, "127.0.0.1:5001", "127.0.0.1:53", v6onlyUnset),       // inconsistent: has a peer
		sockMsg(tcpListen, "127.0.0.1:5002", "0.0.0.0:0", v6onlyUnset),         // not a UDP state
		doneOK)
	if err := st.parse(d, 7, probe.UDP); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"UDP 0.0.0.0:53", "UDP 127.0.0.1:5000", "UDP 127.0.0.1:5001"}, strs(st.out)); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
}

func TestDumpStateInterrupted(t *testing.T) {
	var st dumpState
	d := cat(
		sockMsg(tcpListen, "127.0.0.1:22", "0.0.0.0:0", v6onlyUnset),
		nlmsg(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, 7,
			diagMsg(tcpListen, netip.MustParseAddrPort("127.0.0.1:23"), any4, v6onlyUnset)),
		nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, 7, make([]byte, 4)))
	if err := st.parse(d, 7, probe.TCP); err != nil {
		t.Fatal(err)
	}
	if !st.done || !st.interrupted {
		t.Errorf("done=%v interrupted=%v, want both", st.done, st.interrupted)
	}
}

func TestDumpStateErrors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want error // nil: any error
	}{
		{"netlink error", nlmsg(unix.NLMSG_ERROR, 0, 7, errBody(unix.ENOENT)), unix.ENOENT},
		{"error in done", nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, 7, errBody(unix.ENOBUFS)[:4]), unix.ENOBUFS},
		{"short error", nlmsg(unix.NLMSG_ERROR, 0, 7, []byte{1}), nil},
		{"short socket", nlmsg(unix.SOCK_DIAG_BY_FAMILY, 0, 7, make([]byte, 10)), nil},
		{"length beyond data", withLen(doneOK, 200), nil},
		{"length below header", withLen(doneOK, 3), nil},
	}
	for _, c := range cases {
		var st dumpState
		err := st.parse(c.data, 7, probe.TCP)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	var st dumpState
	if err := st.parse(nlmsg(unix.NLMSG_ERROR, 0, 7, errBody(0)), 7, probe.TCP); err != nil || st.done {
		t.Errorf("ack: err=%v done=%v", err, st.done)
	}
	if !unsupported(errors.Join(errors.New("x"), unix.ENOENT)) || unsupported(unix.ENOBUFS) {
		t.Error("unsupported() misclassifies")
	}
}

// TestDiagRequest pins the request layout against <linux/inet_diag.h>.
func TestDiagRequest(t *testing.T) {
	b := diagRequest(42, kind{probe.UDP, unix.AF_INET6, "udp6"})
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != unix.SOCK_DIAG_BY_FAMILY ||
		ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || ne.Uint32(b[8:]) != 42 {
		t.Fatalf("bad header % x", b[:16])
	}
	r := b[16:]
	if r[0] != unix.AF_INET6 || r[1] != unix.IPPROTO_UDP || ne.Uint32(r[4:]) != 1<<tcpClose|1<<tcpEstablished {
		t.Errorf("bad request % x", r)
	}
}

// FuzzParseDiag: arbitrary kernel answers never panic and yield only canonical listeners.
func FuzzParseDiag(f *testing.F) {
	f.Add(cat(sockMsg(tcpListen, "[::]:80", "[::]:0", 0), doneOK), false)
	f.Add(cat(sockMsg(tcpClose, "0.0.0.0:53", "0.0.0.0:0", v6onlyUnset), doneOK), true)
	f.Add(nlmsg(unix.NLMSG_ERROR, 0, 7, errBody(unix.ENOENT)), false)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		proto := probe.TCP
		if udp {
			proto = probe.UDP
		}
		var st dumpState
		_ = st.parse(data, 7, proto)
		for _, l := range st.out {
			checkCanonical(t, l, proto)
		}
	})
}

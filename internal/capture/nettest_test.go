package capture

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

// A pair of network namespaces joined by a veth: "cap" is the host under capture, "scan"
// sends to it. Traffic never leaves the two namespaces.
var (
	capV4  = netip.MustParseAddr("198.18.0.1")
	scanV4 = netip.MustParseAddr("198.18.0.2")
	capV6  = netip.MustParseAddr("2001:db8::1")
	scanV6 = netip.MustParseAddr("2001:db8::2")
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	multicastMAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	otherMAC     = net.HardwareAddr{0x02, 0x00, 0x00, 0x12, 0x34, 0x56}
)

type testNet struct {
	capName, scanName string
	capNs, scanNs     netns.NsHandle
	capIf             int
	capMAC            net.HardwareAddr
	scanIf            int
	injectFD          int // AF_PACKET SOCK_DGRAM socket on scan0 for hand-made packets
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and AF_PACKET")
	}
}

// newTestNet builds the pair; t.Cleanup removes it.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	needRoot(t)
	tn := &testNet{}
	tn.capName, tn.capNs = testnet.NewNS(t, "pscapa")
	tn.scanName, tn.scanNs = testnet.NewNS(t, "pscapb")

	hc := nlHandle(t, tn.capNs)
	hs := nlHandle(t, tn.scanNs)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cap0"}, PeerName: "scan0", PeerNamespace: netlink.NsFd(int(tn.scanNs))}
	if err := hc.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	capLink := linkUp(t, hc, "cap0", "198.18.0.1/24", "2001:db8::1/64")
	scanLink := linkUp(t, hs, "scan0", "198.18.0.2/24", "2001:db8::2/64")
	linkUp(t, hc, "lo")
	linkUp(t, hs, "lo")
	tn.capIf, tn.capMAC = capLink.Attrs().Index, capLink.Attrs().HardwareAddr
	tn.scanIf = scanLink.Attrs().Index

	var err error
	inNs(t, tn.scanNs, func() {
		tn.injectFD, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	})
	if err != nil {
		t.Fatalf("inject socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(tn.injectFD) })
	return tn
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func linkUp(t *testing.T, h *netlink.Handle, name string, addrs ...string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatalf("addr %s on %s: %v", a, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("up %s: %v", name, err)
	}
	l, err = h.LinkByName(name) // again, for the address the kernel gave it
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// inNs runs fn on a thread in ns. Sockets fn creates stay in ns after it returns.
func inNs(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: see newSocket
		if err = netns.Set(ns); err != nil {
			return
		}
		fn()
	}()
	<-done
	if err != nil {
		t.Fatalf("setns: %v", err)
	}
}

// inject sends an IP packet (or, with proto 0x8100, a tagged one) from scan0 to mac.
func (tn *testNet) inject(t *testing.T, mac net.HardwareAddr, proto uint16, pkt []byte) {
	t.Helper()
	sa := unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: tn.scanIf, Halen: 6}
	copy(sa.Addr[:], mac)
	if err := unix.Sendto(tn.injectFD, pkt, 0, &sa); err != nil {
		t.Fatalf("inject: %v", err)
	}
}

func (tn *testNet) inject4(t *testing.T, pkt []byte) { tn.inject(t, tn.capMAC, 0x0800, pkt) }
func (tn *testNet) inject6(t *testing.T, pkt []byte) { tn.inject(t, tn.capMAC, 0x86dd, pkt) }

// markerPort is the source port of the SYN that ends a batch (see collect).
const markerPort = 65000

func (tn *testNet) marker(t *testing.T, dport uint16) {
	tn.inject4(t, ipv4(6, tcpHdr(markerPort, dport, fSYN), 0))
}

// open opens a handle in the cap namespace with a reader goroutine; Cleanup closes it
// and checks that Read returned nil.
func (tn *testNet) open(t *testing.T, o Options) (*Handle, <-chan seen) {
	t.Helper()
	o.Netns = tn.capNs
	h, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return h, startReader(t, h)
}

// seen is one captured packet as the test sees it.
type seen struct {
	h    packet.Header
	err  error // from the decoder
	info Info
	n    int // bytes captured
	// fragID is a fragment's identification (IPv6: its low 16 bits), which the tests
	// set to the case's id: a fragment does not decode, so it has no source port.
	fragID uint16
}

func fragID(b []byte) uint16 {
	switch {
	case len(b) >= 6 && b[0]>>4 == 4:
		return binary.BigEndian.Uint16(b[4:])
	case len(b) >= 48 && b[0]>>4 == 6 && b[6] == 44:
		return binary.BigEndian.Uint16(b[46:])
	}
	return 0
}

func startReader(t *testing.T, h *Handle) <-chan seen {
	ch := make(chan seen, 100000)
	done := make(chan error, 1)
	go func() {
		var hdr packet.Header
		done <- h.Read(func(frame []byte, info Info) {
			err := packet.DecodeIP(frame, &hdr)
			var id uint16
			if err == packet.ErrFragment {
				id = fragID(frame)
			}
			select {
			case ch <- seen{hdr, err, info, len(frame), id}:
			default: // the test stopped listening; drop
			}
		})
	}()
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Read: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Read did not return after Close")
		}
	})
	return ch
}

// collect returns the packets captured before the marker SYN (source port markerPort).
// The marker is sent after everything under test on the same path, so once it is in,
// everything the kernel would deliver is in too.
func collect(t *testing.T, ch <-chan seen) []seen {
	t.Helper()
	var out []seen
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-ch:
			if s.err == nil && s.h.SrcPort == markerPort {
				return out
			}
			out = append(out, s)
		case <-deadline:
			t.Fatalf("marker not captured; got %d packets before it", len(out))
		}
	}
}

// quiet fails if anything is captured within d.
func quiet(t *testing.T, ch <-chan seen, d time.Duration) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("unexpected packet %+v", s)
	case <-time.After(d):
	}
}

func srcPorts(ss []seen) []uint16 {
	var p []uint16
	for _, s := range ss {
		if s.err == packet.ErrFragment {
			p = append(p, s.fragID)
		} else {
			p = append(p, s.h.SrcPort)
		}
	}
	return p
}

package capture

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var testFilter = Filter{
	TCPPorts: []PortRange{{1000, 1000}, {2000, 2010}},
	UDPPorts: []PortRange{{3000, 3000}},
}

// TestKernelFilter sends hand-made packets over the veth; each carries its own source
// port as an id, and the test compares which ids the handle saw.
func TestKernelFilter(t *testing.T) {
	tn := newTestNet(t)
	_, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: testFilter})

	// Fragments carry the case id in their identification field (see seen.fragID).
	v4frag := func(p []byte, v, id uint16) []byte {
		binary.BigEndian.PutUint16(p[4:], id)
		binary.BigEndian.PutUint16(p[6:], v)
		return p
	}
	v6frag := func(next byte, offset uint16, more bool, id uint16, l4 []byte) []byte {
		fh := fragHdr(next, offset, more)
		binary.BigEndian.PutUint16(fh[6:], id)
		return ipv6(44, fh, l4)
	}
	type pk struct {
		id   uint16
		v6   bool
		mac  net.HardwareAddr
		pkt  []byte
		want bool
	}
	tcp4 := func(id, dport uint16, flags byte) []byte { return ipv4(6, tcpHdr(id, dport, flags), 0) }
	tcp6 := func(id, dport uint16, flags byte) []byte { return ipv6(6, nil, tcpHdr(id, dport, flags)) }
	cases := []pk{
		{id: 1, pkt: tcp4(1, 1000, fSYN), want: true},
		{id: 2, pkt: tcp4(2, 1001, fSYN)},
		{id: 3, pkt: tcp4(3, 2005, fSYN), want: true},
		{id: 4, pkt: tcp4(4, 1000, fRST)},
		{id: 5, pkt: tcp4(5, 1000, fACK)},
		{id: 6, pkt: tcp4(6, 1000, fRST|fACK)},
		{id: 7, pkt: tcp4(7, 1000, fSYN|fACK)},
		{id: 8, pkt: tcp4(8, 1000, fFIN), want: true},
		{id: 9, pkt: tcp4(9, 1000, 0), want: true},
		{id: 10, pkt: tcp4(10, 1000, fFIN|fURG|fPSH), want: true},
		{id: 11, pkt: tcp4(11, 1000, fSYN|fECE|fCWR), want: true},
		{id: 12, pkt: ipv4(17, udpHdr(12, 3000, 4), 0), want: true},
		{id: 13, pkt: ipv4(17, udpHdr(13, 3001, 4), 0)},
		{id: 14, pkt: tcp4(14, 3000, fSYN)},
		{id: 15, pkt: ipv4(17, udpHdr(15, 1000, 4), 0)},
		{id: 16, pkt: v4frag(tcp4(16, 1000, fSYN), 0x0003, 16), want: true},                   // non-first fragment
		{id: 17, pkt: v4frag(tcp4(17, 1000, fSYN), 0x2000, 17), want: true},                   // first fragment
		{id: 23, pkt: v4frag(ipv4(6, tcpHdr(23, 1000, fSYN)[:8], 0), 0x2000, 23), want: true}, // nmap -f
		{id: 24, pkt: v4frag(ipv4(6, tcpHdr(24, 1000, fSYN)[8:16], 0), 0x2001, 24), want: true},
		{id: 25, pkt: v4frag(ipv4(17, udpHdr(25, 3000, 8)[8:], 0), 0x0002, 25), want: true},
		{id: 26, pkt: v4frag(ipv4(1, make([]byte, 8), 0), 0x0001, 26)}, // ICMP fragment
		{id: 27, pkt: v4frag(tcp4(27, 1000, fACK), 0x4000, 27)},        // DF is no fragment
		{id: 18, pkt: ipv4(6, tcpHdr(18, 1000, fSYN), 2), want: true},
		{id: 19, pkt: ipv4(1, []byte{8, 0, 0, 0, 0, 19, 0, 1}, 0)},
		{id: 20, mac: broadcastMAC, pkt: tcp4(20, 1000, fSYN)},
		{id: 21, mac: multicastMAC, pkt: tcp4(21, 1000, fSYN)},
		{id: 22, mac: otherMAC, pkt: tcp4(22, 1000, fSYN)},
		{id: 31, v6: true, pkt: tcp6(31, 1000, fSYN), want: true},
		{id: 32, v6: true, pkt: tcp6(32, 999, fSYN)},
		{id: 33, v6: true, pkt: ipv6(17, nil, udpHdr(33, 3000, 0)), want: true},
		{id: 34, v6: true, pkt: ipv6(17, nil, udpHdr(34, 3001, 0))},
		{id: 35, v6: true, pkt: tcp6(35, 1000, fACK)},
		{id: 36, v6: true, pkt: ipv6(60, optsHdr(6), tcpHdr(36, 999, fSYN)), want: true}, // for user space
		{id: 37, v6: true, pkt: v6frag(6, 0, true, 37, tcpHdr(37, 1000, fSYN)), want: true},
		{id: 38, v6: true, pkt: v6frag(6, 0, false, 0, tcpHdr(38, 1001, fSYN))}, // atomic, unwatched
		{id: 39, v6: true, pkt: v6frag(6, 2, false, 39, tcpHdr(39, 1000, fSYN)), want: true},
		{id: 44, v6: true, pkt: v6frag(6, 0, true, 44, tcpHdr(44, 1000, fSYN)[:8]), want: true},
		{id: 45, v6: true, pkt: v6frag(17, 1, false, 45, make([]byte, 8)), want: true},
		{id: 46, v6: true, pkt: v6frag(58, 1, false, 46, make([]byte, 8))},
		{id: 40, v6: true, pkt: ipv6(58, nil, []byte{128, 0, 0, 0, 0, 40, 0, 1})},
		{id: 41, v6: true, pkt: tcp6(41, 1000, fSYN|fACK)},
		{id: 42, v6: true, pkt: tcp6(42, 2010, fFIN), want: true},
		{id: 43, v6: true, mac: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, pkt: tcp6(43, 1000, fSYN)},
	}
	var want []uint16
	for _, c := range cases {
		mac, proto := c.mac, uint16(0x0800)
		if mac == nil {
			mac = tn.capMAC
		}
		if c.v6 {
			proto = 0x86dd
		}
		tn.inject(t, mac, proto, c.pkt)
		if c.want {
			want = append(want, c.id)
		}
	}
	tn.marker(t, 1000)
	got := collect(t, ch)
	if diff := cmp.Diff(want, srcPorts(got)); diff != "" {
		t.Errorf("captured ids (-want +got):\n%s", diff)
	}
	for _, s := range got {
		if s.err != nil && s.err != packet.ErrFragment {
			t.Errorf("id %d: decode: %v", s.h.SrcPort, s.err)
		}
		wantProto := uint16(0x0800)
		if s.h.IPv6 {
			wantProto = 0x86dd
		}
		if s.info.Proto != wantProto || s.info.Ifindex != tn.capIf {
			t.Errorf("id %d: info %+v, want proto %#x ifindex %d", s.h.SrcPort, s.info, wantProto, tn.capIf)
		}
	}
}

// TestKernelInfo: a long packet is cut to Snaplen; Info carries the real length.
func TestKernelInfo(t *testing.T) {
	tn := newTestNet(t)
	_, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: testFilter})
	before := time.Now()
	tn.inject4(t, ipv4(17, udpHdr(7, 3000, 1000), 0))
	tn.inject6(t, ipv6(17, nil, udpHdr(8, 3000, 100)))
	tn.marker(t, 1000)
	got := collect(t, ch)
	if len(got) != 2 {
		t.Fatalf("captured %d packets, want 2", len(got))
	}
	if s := got[0]; s.n != Snaplen || s.info.Len != 20+8+1000 || s.info.Proto != 0x0800 {
		t.Errorf("IPv4: %d bytes captured, info %+v; want %d of %d", s.n, s.info, Snaplen, 1028)
	}
	if s := got[1]; s.n != 40+8+100 || s.info.Len != 148 || s.info.Proto != 0x86dd {
		t.Errorf("IPv6: %d bytes captured, info %+v; want 148 of 148", s.n, s.info)
	}
	if ts := got[0].info.Time(); ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("timestamp %v, sent at %v", ts, before)
	}
}

// TestKernelEstablished: a real connection with data both ways shows up as its SYN alone
// when the port is watched, and not at all when it is not.
func TestKernelEstablished(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
		t.Run(name, func(t *testing.T) {
			tn := newTestNet(t)
			_, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: testFilter})
			dst, src := capV4, scanV4
			if v6 {
				dst, src = capV6, scanV6
			}
			for _, port := range []uint16{1000, 1500} {
				transfer(t, tn, netip.AddrPortFrom(dst, port), 1<<20)
			}
			tn.marker(t, 1000)
			got := collect(t, ch)
			if len(got) != 1 {
				t.Fatalf("captured %d packets, want the one SYN: %+v", len(got), got)
			}
			h := got[0].h
			if h.Src != src || h.DstPort != 1000 || h.TCPFlags != 0x02 {
				t.Errorf("captured %+v, want the SYN from %v to port 1000", h, src)
			}
		})
	}
}

// transfer listens on addr in cap, connects from scan and moves n bytes each way.
func transfer(t *testing.T, tn *testNet, addr netip.AddrPort, n int64) {
	t.Helper()
	var ln net.Listener
	var err error
	inNs(t, tn.capNs, func() { ln, err = net.Listen("tcp", addr.String()) })
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		if _, err := io.CopyN(io.Discard, c, n); err != nil {
			served <- err
			return
		}
		_, err = io.CopyN(c, zeros{}, n)
		served <- err
	}()
	var c net.Conn
	inNs(t, tn.scanNs, func() { c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second) })
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.CopyN(c, zeros{}, n); err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := io.CopyN(io.Discard, c, n); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestKernelNoOutgoing: packets the captured host sends, on the veth or on loopback,
// never appear; loopback packets appear once, as received. Run with and without
// PACKET_IGNORE_OUTGOING, so that the filter's own PACKET_HOST check is proven too.
func TestKernelNoOutgoing(t *testing.T) {
	for _, ignore := range []bool{true, false} {
		name := map[bool]string{true: "ignore-outgoing", false: "filter-only"}[ignore]
		t.Run(name, func(t *testing.T) {
			defer func(v bool) { ignoreOutgoing = v }(ignoreOutgoing)
			ignoreOutgoing = ignore
			tn := newTestNet(t)
			_, ch := tn.open(t, Options{Filter: testFilter}) // all interfaces
			inNs(t, tn.capNs, func() {
				for _, dst := range []string{"198.18.0.2:3000", "[2001:db8::2]:3000", "127.0.0.1:3000", "[::1]:3000"} {
					if c, err := net.Dial("udp", dst); err == nil {
						c.Write([]byte("x"))
						c.Close()
					}
				}
				for _, dst := range []string{"198.18.0.2:1000", "[2001:db8::2]:1000"} {
					if c, err := net.DialTimeout("tcp", dst, 2*time.Second); err == nil {
						c.Close() // refused: scan has no listener
					}
				}
			})
			tn.marker(t, 1000)
			got := collect(t, ch)
			var dsts []string
			for _, s := range got {
				dsts = append(dsts, s.h.Destination().String())
				if s.info.Ifindex != 1 {
					t.Errorf("packet to %v on ifindex %d, want lo", s.h.Destination(), s.info.Ifindex)
				}
			}
			if want := []string{"127.0.0.1:3000", "[::1]:3000"}; !cmp.Equal(want, dsts) {
				t.Errorf("captured %v, want only the loopback datagrams, once each: %v", dsts, want)
			}
		})
	}
}

// TestKernelUDPReplies: with UDPReplies, the datagrams the captured host sends from a
// watched UDP port appear, marked Outgoing, on the veth and on loopback (where the
// received copy, to an unwatched port, does not); those from other ports, and outgoing
// TCP from a watched port, do not. Switching UDPReplies off with SetFilter stops them.
func TestKernelUDPReplies(t *testing.T) {
	tn := newTestNet(t)
	f := testFilter
	f.UDPReplies = true
	h, ch := tn.open(t, Options{Filter: f}) // all interfaces
	send := func(local string, remotes ...string) {
		inNs(t, tn.capNs, func() {
			for _, r := range remotes {
				la, err := net.ResolveUDPAddr("udp", local)
				if err != nil {
					t.Fatal(err)
				}
				c, err := net.DialUDP("udp", la, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(r)))
				if err != nil {
					t.Fatalf("dial %s from %s: %v", r, local, err)
				}
				c.Write([]byte("query"))
				c.Close()
			}
		})
	}
	send("198.18.0.1:3000", "198.18.0.2:53")
	send("[2001:db8::1]:3000", "[2001:db8::2]:53")
	send("127.0.0.1:3000", "127.0.0.1:53")
	send("198.18.0.1:3001", "198.18.0.2:53") // port not watched
	inNs(t, tn.capNs, func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: capV4.AsSlice(), Port: 3000}, Timeout: 2 * time.Second}
		if c, err := d.Dial("tcp", "198.18.0.2:3000"); err == nil {
			c.Close()
		}
	})
	tn.marker(t, 1000)
	got := collect(t, ch)
	var flows []string
	for _, s := range got {
		if s.err != nil || !s.info.Outgoing {
			t.Errorf("captured %+v, want only outgoing datagrams", s)
			continue
		}
		flows = append(flows, s.h.Source().String()+">"+s.h.Destination().String())
	}
	want := []string{"198.18.0.1:3000>198.18.0.2:53", "[2001:db8::1]:3000>[2001:db8::2]:53", "127.0.0.1:3000>127.0.0.1:53"}
	if !cmp.Equal(want, flows) {
		t.Errorf("outgoing datagrams %v, want %v", flows, want)
	}

	if err := h.SetFilter(testFilter); err != nil {
		t.Fatal(err)
	}
	send("198.18.0.1:3000", "198.18.0.2:53")
	tn.marker(t, 1000)
	if got := collect(t, ch); len(got) != 0 {
		t.Errorf("without UDPReplies, captured %+v", got)
	}
}

// TestKernelSetFilter: a new port set takes effect at once.
func TestKernelSetFilter(t *testing.T) {
	tn := newTestNet(t)
	h, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: Filter{TCPPorts: []PortRange{{1000, 1000}}}})
	tn.inject4(t, ipv4(6, tcpHdr(1, 1000, fSYN), 0))
	tn.inject4(t, ipv4(6, tcpHdr(2, 2000, fSYN), 0))
	tn.marker(t, 1000)
	if got := srcPorts(collect(t, ch)); !cmp.Equal(got, []uint16{1}) {
		t.Fatalf("before SetFilter: %v, want [1]", got)
	}
	if err := h.SetFilter(Filter{TCPPorts: []PortRange{{2000, 2000}}, UDPPorts: []PortRange{{53, 53}}}); err != nil {
		t.Fatal(err)
	}
	tn.inject4(t, ipv4(6, tcpHdr(3, 1000, fSYN), 0))
	tn.inject4(t, ipv4(6, tcpHdr(4, 2000, fSYN), 0))
	tn.inject6(t, ipv6(17, nil, udpHdr(5, 53, 0)))
	tn.marker(t, 2000)
	if got := srcPorts(collect(t, ch)); !cmp.Equal(got, []uint16{4, 5}) {
		t.Fatalf("after SetFilter: %v, want [4 5]", got)
	}
	if err := h.SetFilter(Filter{TCPPorts: []PortRange{{2, 1}}}); err == nil {
		t.Error("SetFilter accepted an invalid range")
	}
}

// TestKernelStatsDrops: a tiny ring that is not read overflows; the kernel's counters
// (reset by every read) are accumulated, and every packet is either read or dropped.
func TestKernelStatsDrops(t *testing.T) {
	tn := newTestNet(t)
	const n = 400
	h, err := Open(Options{Netns: tn.capNs, Ifindex: tn.capIf, Filter: testFilter,
		BlockSize: os.Getpagesize(), NumBlocks: 2, Timeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i := range n {
		tn.inject4(t, ipv4(6, tcpHdr(uint16(i+1), 1000, fSYN), 0))
	}
	time.Sleep(50 * time.Millisecond)
	st, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d packets into an unread ring of 2×%d: %+v", n, os.Getpagesize(), st)
	if st.Packets != n || st.Drops == 0 || st.Drops >= n || st.FreezeQueueCount == 0 {
		t.Fatalf("stats %+v: want Packets %d, 0 < Drops < %d, FreezeQueueCount > 0", st, n, n)
	}
	// Read what the ring holds; only then send the marker, or the still frozen ring
	// would drop it too.
	ch := startReader(t, h)
	read := 0
	for drained := false; !drained; {
		select {
		case <-ch:
			read++
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	tn.marker(t, 1000)
	read += len(collect(t, ch))
	st2, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Packets != n+1 || st2.Drops != st.Drops || uint64(read)+st.Drops != n {
		t.Fatalf("read %d, stats %+v (before %+v): want read+drops = %d and Packets = %d", read, st2, st, n, n+1)
	}
}

// TestKernelCloseWhileReading: Close wakes a Read that waits for packets.
func TestKernelCloseWhileReading(t *testing.T) {
	tn := newTestNet(t)
	h, err := Open(Options{Netns: tn.capNs, Ifindex: tn.capIf, Filter: testFilter})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Read(func([]byte, Info) {}) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		t.Logf("Read returned %v after Close", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1s after Close")
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.Read(func([]byte, Info) { t.Error("callback after Close") }); err != nil {
		t.Errorf("Read after Close: %v", err)
	}
	if err := h.SetFilter(testFilter); !errors.Is(err, ErrClosed) || !errors.Is(err, os.ErrClosed) {
		t.Errorf("SetFilter after Close: %v", err)
	}
	if _, err := h.Stats(); err != nil {
		t.Errorf("Stats after Close: %v", err)
	}
}

// TestKernelCloseFromCallback: fn may Close the handle; no further packet is delivered.
func TestKernelCloseFromCallback(t *testing.T) {
	tn := newTestNet(t)
	h, err := Open(Options{Netns: tn.capNs, Ifindex: tn.capIf, Filter: testFilter})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		tn.inject4(t, ipv4(6, tcpHdr(uint16(i+1), 1000, fSYN), 0))
	}
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- h.Read(func([]byte, Info) {
			calls++
			h.Close()
		})
	}()
	select {
	case err := <-done:
		if err != nil || calls != 1 {
			t.Fatalf("Read: %v after %d calls, want nil after 1", err, calls)
		}
	case <-time.After(5 * time.Second):
		h.Close()
		t.Fatal("Read did not return")
	}
}

// TestKernelInterfaceGone: Read waits through link down/up, and fails with
// ErrInterfaceGone when the interface is deleted.
func TestKernelInterfaceGone(t *testing.T) {
	tn := newTestNet(t)
	h, err := Open(Options{Netns: tn.capNs, Ifindex: tn.capIf, Filter: testFilter})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := make(chan uint16, 10)
	done := make(chan error, 1)
	go func() {
		done <- h.Read(func(frame []byte, _ Info) {
			select {
			case got <- binary.BigEndian.Uint16(frame[20:]):
			default:
			}
		})
	}()
	nl := nlHandle(t, tn.capNs)
	link, err := nl.LinkByName("cap0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := nl.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Read returned %v on link down", err)
	default:
	}
	// The sending side may drop packets until link watch has reactivated its qdisc
	// (this can take a while), so send until one arrives.
	deadline := time.Now().Add(5 * time.Second)
	for captured := false; !captured; {
		if time.Now().After(deadline) {
			t.Fatal("nothing captured after the link came back up")
		}
		tn.inject4(t, ipv4(6, tcpHdr(77, 1000, fSYN), 0))
		select {
		case p := <-got:
			if p != 77 {
				t.Fatalf("after link up: source port %d", p)
			}
			captured = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := nl.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterfaceGone) {
			t.Fatalf("Read after the interface was deleted: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not notice the interface was deleted")
	}
}

// TestKernelVLAN: a tagged frame is captured only where the host processes it, on the
// VLAN device, although with Ifindex 0 the socket also sees it on the parent device
// (untagged into skb metadata by the core before taps run). Without a VLAN device for
// the tag it is not captured at all. (Kernels without 802.1Q support skip the first part.)
func TestKernelVLAN(t *testing.T) {
	tn := newTestNet(t)
	nl := nlHandle(t, tn.capNs)
	vlanIf := 0
	vlan := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "cap0.100", ParentIndex: tn.capIf}, VlanId: 100}
	if err := nl.LinkAdd(vlan); err == nil {
		vlanIf = linkUp(t, nl, "cap0.100", "198.19.0.1/24").Attrs().Index
	} else {
		t.Logf("no VLAN device (%v): checking the parent device only", err)
	}
	_, ch := tn.open(t, Options{Filter: testFilter})
	tag := func(vid byte, id uint16) []byte {
		return append([]byte{0x00, vid, 0x08, 0x00}, ipv4(6, tcpHdr(id, 1000, fSYN), 0)...)
	}
	tn.inject(t, tn.capMAC, 0x8100, tag(100, 9))
	tn.inject(t, tn.capMAC, 0x8100, tag(200, 10)) // no device for VLAN 200
	tn.marker(t, 1000)
	got := collect(t, ch)
	var want []uint16
	if vlanIf != 0 {
		want = []uint16{9}
	}
	if !cmp.Equal(want, srcPorts(got)) {
		t.Fatalf("captured %+v, want source ports %v", got, want)
	}
	if vlanIf != 0 && got[0].info.Ifindex != vlanIf {
		t.Errorf("captured on ifindex %d, want the VLAN device %d", got[0].info.Ifindex, vlanIf)
	}
}

// TestKernelNothingUnfilteredAtOpen: handles opened while unwatched traffic is flowing
// never see any of it (the socket is bound only after the filter is in place).
func TestKernelNothingUnfilteredAtOpen(t *testing.T) {
	tn := newTestNet(t)
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		sa := unix.SockaddrLinklayer{Protocol: htons(0x0800), Ifindex: tn.scanIf, Halen: 6}
		copy(sa.Addr[:], tn.capMAC)
		pkt := ipv4(17, udpHdr(1, 4000, 10), 0)
		i := 0
		for ; i < 50000; i++ {
			select {
			case <-stop:
				flooded <- i
				return
			default:
			}
			unix.Sendto(tn.injectFD, pkt, 0, &sa)
		}
		flooded <- i
	}()
	total := 0
	for range 20 {
		h, err := Open(Options{Netns: tn.capNs, Filter: testFilter})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.Read(func([]byte, Info) { total++ })
		}()
		time.Sleep(5 * time.Millisecond)
		h.Close()
		<-done
	}
	close(stop)
	n := <-flooded
	t.Logf("%d unwatched datagrams sent during 20 opens", n)
	if total != 0 {
		t.Fatalf("%d unwatched packets captured", total)
	}
}

// TestKernelRealScanners: packets from hping3 (IPv4) and nmap (IPv6) as a scanner would
// send them.
func TestKernelRealScanners(t *testing.T) {
	tn := newTestNet(t)
	_, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: testFilter})
	run := func(args ...string) {
		t.Helper()
		if _, err := exec.LookPath(args[0]); err != nil {
			t.Skipf("%s not installed", args[0])
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", tn.scanName}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	count := func(ss []seen, dport uint16, flags uint8) (n int) {
		for _, s := range ss {
			if s.h.DstPort == dport && s.h.TCPFlags == flags {
				n++
			}
		}
		return n
	}
	run("hping3", "-q", "-c", "3", "-i", "u10000", "-S", "-p", "1000", "198.18.0.1")
	run("hping3", "-q", "-c", "3", "-i", "u10000", "-A", "-p", "1000", "198.18.0.1")
	run("hping3", "-q", "-c", "3", "-i", "u10000", "-F", "-p", "1001", "198.18.0.1")
	run("hping3", "-q", "-c", "3", "-i", "u10000", "-2", "-p", "3000", "198.18.0.1")
	tn.marker(t, 1000)
	got := collect(t, ch)
	if n := count(got, 1000, 0x02); n != 3 || len(got) != 6 {
		t.Errorf("hping3: %d SYNs of %d packets, want 3 SYNs and 3 UDP: %+v", n, len(got), got)
	}
	run("nmap", "-6", "-n", "-Pn", "-sS", "-p", "1000,1001", "--max-retries", "0", "2001:db8::1")
	tn.marker(t, 1000)
	got = collect(t, ch)
	if n := count(got, 1000, 0x02); n != 1 || len(got) != 1 || !got[0].h.IPv6 {
		t.Errorf("nmap -6 -sS: %+v, want one IPv6 SYN to 1000", got)
	}
}

// TestOpenErrors: bad options fail before any socket is made, a missing interface at
// bind.
func TestOpenErrors(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t)
	big := Ranges(evenPorts())
	for name, o := range map[string]Options{
		"block size":   {BlockSize: 1000},
		"blocks":       {NumBlocks: -1},
		"timeout":      {Timeout: -time.Second},
		"ifindex":      {Ifindex: -1},
		"filter":       {Filter: Filter{UDPPorts: []PortRange{{5, 4}}}},
		"too large":    {Filter: Filter{TCPPorts: big}},
		"no interface": {Ifindex: 9999},
	} {
		o.Netns = tn.capNs
		if h, err := Open(o); err == nil {
			h.Close()
			t.Errorf("%s: Open succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestKernelReadNoAllocs: reading costs no allocation per packet, across block hand-overs
// and waits. The packets come from another process (hping3), so that nothing else in
// this process allocates while the counter runs.
func TestKernelReadNoAllocs(t *testing.T) {
	tn := newTestNet(t)
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Skip("hping3 not installed")
	}
	h, err := Open(Options{Netns: tn.capNs, Ifindex: tn.capIf, Filter: testFilter})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var before, after runtime.MemStats
	count := 0
	done := make(chan error, 1)
	go func() {
		done <- h.Read(func([]byte, Info) {
			switch count++; count {
			case 10:
				runtime.ReadMemStats(&before)
			case n:
				runtime.ReadMemStats(&after)
				h.Close()
			}
		})
	}()
	cmd := exec.Command("ip", "netns", "exec", tn.scanName, "hping3", "-q", "-c", strconv.Itoa(n),
		"-i", "u2000", "-S", "-p", "1000", "198.18.0.1")
	if err := cmd.Run(); err != nil {
		t.Fatalf("hping3: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		h.Close()
		t.Fatalf("only %d of %d packets read", count, n)
	}
	// Mallocs counts the whole process: the runtime and other goroutines allocate now
	// and then. One allocation per packet would show as hundreds.
	if m := after.Mallocs - before.Mallocs; m >= (n-10)/10 {
		t.Errorf("%d allocations while reading %d packets", m, n-10)
	}
}

// TestKernelLargeFilter: the kernel accepts a program of MaxRanges ranges (about 3300
// instructions, with long jumps in the tree) and it works there as in the VM.
func TestKernelLargeFilter(t *testing.T) {
	tn := newTestNet(t)
	var r []PortRange
	for i := range MaxRanges {
		p := uint16(3 * i) // 0, 3, 6, ...
		r = append(r, PortRange{p, p})
	}
	f := Filter{TCPPorts: r[:MaxRanges/2], UDPPorts: r[MaxRanges/2:], UDPReplies: true}
	prog, err := f.Program()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d ranges: %d instructions", MaxRanges, len(prog))
	_, ch := tn.open(t, Options{Ifindex: tn.capIf, Filter: f})
	last := uint16(3 * (MaxRanges - 1))
	tn.inject4(t, ipv4(6, tcpHdr(1, 3, fSYN), 0))
	tn.inject4(t, ipv4(6, tcpHdr(2, 4, fSYN), 0))
	tn.inject4(t, ipv4(17, udpHdr(3, last, 0), 0))
	tn.inject4(t, ipv4(17, udpHdr(4, last-1, 0), 0))
	tn.inject4(t, ipv4(6, tcpHdr(5, last, fSYN), 0)) // a UDP port
	tn.marker(t, 0)
	if got := srcPorts(collect(t, ch)); !cmp.Equal(got, []uint16{1, 3}) {
		t.Errorf("captured ids %v, want [1 3]", got)
	}
}

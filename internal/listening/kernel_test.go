//go:build linux

package listening

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

// newTestNetns creates a uniquely named network namespace with loopback up, deleted at
// cleanup, so no other process's sockets can disturb exact expectations. It skips when
// not root or namespaces are unavailable.
func newTestNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	_, ns := testnet.NewNS(t, "psli")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

// in runs fn inside ns (sockets created there stay there).
func in(t *testing.T, ns netns.NsHandle, fn func() error) {
	t.Helper()
	if err := inNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// v6only returns a ListenConfig that sets IPV6_V6ONLY explicitly before bind, so the
// test does not depend on Go's or the sysctl's default.
func v6only(on bool) net.ListenConfig {
	v := 0
	if on {
		v = 1
	}
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// listenMapped listens with a dual-stack IPv6 socket bound to an IPv4-mapped address,
// which Go's net package would turn into an IPv4 socket.
func listenMapped(addr netip.AddrPort) (io.Closer, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "mapped")
	sa := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Listen(fd, 8); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// world is the set of sockets the kernel tests open, on fixed ports (the namespace
// is private, so nothing else can hold them).
type world struct {
	closers   []io.Closer // the sockets that take packets
	leftovers []io.Closer // sockets that must not count: TCP connections
	clientTCP netip.AddrPort
}

func (w *world) keep(c io.Closer, err error) error {
	if err == nil {
		w.closers = append(w.closers, c)
	}
	return err
}

func (w *world) closeListeners() {
	for _, c := range w.closers {
		c.Close()
	}
	w.closers = nil
}

func (w *world) closeAll() {
	w.closeListeners()
	for _, c := range w.leftovers {
		c.Close()
	}
	w.leftovers = nil
}

// openWorld opens, inside ns: the listeners of worldChecks, an ESTABLISHED connection on
// 1005 and a TIME_WAIT socket on 1006 whose listeners are gone, and a connected UDP
// socket on 1011 (which counts: its port receives its peer's replies).
func openWorld(t *testing.T, ns netns.NsHandle) *world {
	t.Helper()
	w := &world{}
	t.Cleanup(w.closeAll)
	ctx := context.Background()
	tcp4, dual, only6 := net.ListenConfig{}, v6only(false), v6only(true)
	in(t, ns, func() error {
		for _, err := range []error{
			w.keep(tcp4.Listen(ctx, "tcp4", "127.0.0.1:1001")),
			w.keep(dual.Listen(ctx, "tcp6", "[::]:1002")),
			w.keep(only6.Listen(ctx, "tcp6", "[::]:1003")),
			w.keep(tcp4.ListenPacket(ctx, "udp4", "0.0.0.0:1004")),
			w.keep(tcp4.Listen(ctx, "tcp6", "[::1]:1007")),
			w.keep(only6.ListenPacket(ctx, "udp6", "[::]:1008")),
			w.keep(tcp4.ListenPacket(ctx, "udp4", "127.0.0.1:1009")),
			w.keep(dual.ListenPacket(ctx, "udp6", "[::]:1010")),
			w.keep(listenMapped(netip.MustParseAddrPort("[::ffff:127.0.0.2]:1012"))),
		} {
			if err != nil {
				return err
			}
		}
		return w.openLeftovers()
	})
	waitTCPState(t, ns, 1005, "01") // ESTABLISHED
	waitTCPState(t, ns, 1006, "06") // TIME_WAIT
	return w
}

// openLeftovers makes the sockets that hold ports without listening.
func (w *world) openLeftovers() error {
	est, err := connectThenCloseListener("127.0.0.1:1005")
	if err != nil {
		return err
	}
	w.leftovers = append(w.leftovers, est[0], est[1])
	w.clientTCP = netip.MustParseAddrPort(est[0].(net.Conn).LocalAddr().String())
	tw, err := connectThenCloseListener("127.0.0.1:1006")
	if err != nil {
		return err
	}
	tw[1].Close() // the server closes first, so its end (port 1006) enters TIME_WAIT
	tw[0].Close()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:1011")),
		net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:1004")))
	if err != nil {
		return err
	}
	w.closers = append(w.closers, c)
	return nil
}

// connectThenCloseListener returns the client and server ends of a connection whose
// listener is already closed.
func connectThenCloseListener(addr string) ([2]io.Closer, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return [2]io.Closer{}, err
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", addr)
	if err != nil {
		return [2]io.Closer{}, err
	}
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		return [2]io.Closer{}, err
	}
	return [2]io.Closer{client, server}, nil
}

// waitTCPState waits until a TCP socket with local port port is in state (hex, as in
// /proc/net/tcp), proving that the kernel holds the socket the test means to ignore.
func waitTCPState(t *testing.T, ns netns.NsHandle, port uint16, state string) {
	t.Helper()
	want := fmt.Sprintf(":%04X ", port)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var data []byte
		in(t, ns, func() (err error) {
			data, err = os.ReadFile("/proc/thread-self/net/tcp")
			return err
		})
		for line := range strings.Lines(string(data)) {
			f := strings.Fields(line)
			if len(f) > 3 && strings.Contains(f[1]+" ", want) && f[3] == state {
				return
			}
		}
	}
	t.Fatalf("no TCP socket on port %d in state %s", port, state)
}

// check is one InUse expectation. v6only marks the answers that depend on the
// IPV6_V6ONLY flag, which /proc/net does not show: there the answer is true.
type check struct {
	proto  probe.Proto
	dst    string
	want   bool
	v6only bool
}

var worldChecks = []check{
	// 1001: TCP 127.0.0.1 only.
	{probe.TCP, "127.0.0.1:1001", true, false},
	{probe.TCP, "[::ffff:127.0.0.1]:1001", true, false},
	{probe.TCP, "127.0.0.2:1001", false, false},
	{probe.TCP, "10.1.2.3:1001", false, false},
	{probe.TCP, "[::1]:1001", false, false},
	{probe.UDP, "127.0.0.1:1001", false, false},
	// 1002: TCP [::] dual-stack: every address of both families.
	{probe.TCP, "127.0.0.1:1002", true, false},
	{probe.TCP, "10.1.2.3:1002", true, false},
	{probe.TCP, "[::1]:1002", true, false},
	{probe.TCP, "[2001:db8::1]:1002", true, false},
	{probe.TCP, "[fe80::1%lo]:1002", true, false},
	{probe.UDP, "[::1]:1002", false, false},
	// 1003: TCP [::] with IPV6_V6ONLY: IPv6 only.
	{probe.TCP, "[::1]:1003", true, false},
	{probe.TCP, "[2001:db8::1]:1003", true, false},
	{probe.TCP, "127.0.0.1:1003", false, true},
	{probe.TCP, "[::ffff:127.0.0.1]:1003", false, true},
	// 1004: UDP 0.0.0.0: every IPv4 address, no IPv6.
	{probe.UDP, "127.0.0.1:1004", true, false},
	{probe.UDP, "10.0.0.1:1004", true, false},
	{probe.UDP, "[::1]:1004", false, false},
	{probe.TCP, "127.0.0.1:1004", false, false},
	// 1005 ESTABLISHED and 1006 TIME_WAIT, listeners closed: not in use.
	{probe.TCP, "127.0.0.1:1005", false, false},
	{probe.TCP, "127.0.0.1:1006", false, false},
	// 1007: TCP [::1] only.
	{probe.TCP, "[::1]:1007", true, false},
	{probe.TCP, "[::2]:1007", false, false},
	{probe.TCP, "127.0.0.1:1007", false, false},
	// 1008: UDP [::] with IPV6_V6ONLY.
	{probe.UDP, "[::1]:1008", true, false},
	{probe.UDP, "127.0.0.1:1008", false, true},
	// 1009: UDP 127.0.0.1 only.
	{probe.UDP, "127.0.0.1:1009", true, false},
	{probe.UDP, "127.0.0.2:1009", false, false},
	{probe.UDP, "[::1]:1009", false, false},
	// 1010: UDP [::] dual-stack.
	{probe.UDP, "[::1]:1010", true, false},
	{probe.UDP, "127.0.0.1:1010", true, false},
	// 1011: connected UDP socket: its peer's replies arrive there, so it is in use.
	{probe.UDP, "127.0.0.1:1011", true, false},
	// 1012: dual-stack IPv6 socket bound to ::ffff:127.0.0.2 takes IPv4 to 127.0.0.2.
	{probe.TCP, "127.0.0.2:1012", true, false},
	{probe.TCP, "[::ffff:127.0.0.2]:1012", true, false},
	{probe.TCP, "127.0.0.1:1012", false, false},
	{probe.TCP, "[::1]:1012", false, false},
	// Nonsense input.
	{probe.TCP, "0.0.0.0:0", false, false},
	{probe.Proto(9), "127.0.0.1:1001", false, false},
}

var (
	worldTCP = []uint16{1001, 1002, 1003, 1007, 1012}
	worldUDP = []uint16{1004, 1008, 1009, 1010, 1011}
)

// inUser is what the checks need of a Tracker or a bare snapshot.
type inUser interface {
	InUse(probe.Proto, netip.AddrPort) bool
}

// verify runs worldChecks. With proc set the v6only-dependent answers flip to true; with
// none set every answer must be false (all sockets closed).
func verify(t *testing.T, u inUser, proc, none bool) {
	t.Helper()
	for _, c := range worldChecks {
		want := (c.want || (proc && c.v6only)) && !none
		if got := u.InUse(c.proto, netip.MustParseAddrPort(c.dst)); got != want {
			t.Errorf("InUse(%v, %s) = %v, want %v", c.proto, c.dst, got, want)
		}
	}
}

func verifyPorts(t *testing.T, tr *Tracker, tcp, udp []uint16) {
	t.Helper()
	if diff := cmp.Diff(tcp, tr.Ports(probe.TCP)); diff != "" {
		t.Errorf("Ports(TCP) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(udp, tr.Ports(probe.UDP)); diff != "" {
		t.Errorf("Ports(UDP) (-want +got):\n%s", diff)
	}
}

// TestKernel is the main test: real sockets in a private namespace, read through
// sock_diag, then through the /proc/net fallback.
func TestKernel(t *testing.T) {
	ns := newTestNetns(t)
	for _, proc := range []bool{false, true} {
		t.Run(fmt.Sprintf("proc=%v", proc), func(t *testing.T) {
			w := openWorld(t, ns)
			tr := New(nil, WithNetns(ns))
			tr.src.procOnly = proc
			var changes atomic.Int32
			tr.OnChange(func() { changes.Add(1) })

			if err := tr.Refresh(); err != nil {
				t.Fatal(err)
			}
			verify(t, tr, proc, false)
			verifyPorts(t, tr, worldTCP, worldUDP)
			if tr.usedProc != proc {
				t.Errorf("usedProc = %v, want %v", tr.usedProc, proc)
			}
			ephemeral := w.clientTCP
			if tr.InUse(probe.TCP, ephemeral) {
				t.Errorf("client end %s of an ESTABLISHED connection counted as in use", ephemeral)
			}
			if *update && !proc {
				captureProc(t, ns)
			}
			if err := tr.Refresh(); err != nil {
				t.Fatal(err)
			}
			if n := changes.Load(); n != 1 {
				t.Errorf("OnChange called %d times after two identical snapshots, want 1", n)
			}

			w.closeListeners()
			waitTCPState(t, ns, 1006, "06") // the TIME_WAIT socket is still there
			if err := tr.Refresh(); err != nil {
				t.Fatal(err)
			}
			verify(t, tr, proc, true)
			verifyPorts(t, tr, nil, nil)
			if n := changes.Load(); n != 2 {
				t.Errorf("OnChange called %d times, want 2", n)
			}
			w.closeAll()
		})
	}
}

// captureProc refreshes testdata/proc_net_* from the namespace (go test -update).
func captureProc(t *testing.T, ns netns.NsHandle) {
	for _, k := range kinds {
		var data []byte
		in(t, ns, func() (err error) {
			data, err = os.ReadFile(filepath.Join("/proc/thread-self/net", k.proc))
			return err
		})
		if err := os.WriteFile(filepath.Join("testdata", "proc_net_"+k.proc), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKernelSourcesAgree reads the same sockets through sock_diag and /proc/net: apart
// from the v6only flag, which only sock_diag knows, they must list the same sockets.
func TestKernelSourcesAgree(t *testing.T) {
	ns := newTestNetns(t)
	openWorld(t, ns)
	src := &source{ns: ns}
	defer src.close()
	diag, _, err := src.collect(0)
	if err != nil {
		t.Fatal(err)
	}
	proc, _, err := (&source{ns: ns, procOnly: true}).collect(0)
	if err != nil {
		t.Fatal(err)
	}
	strip := func(ls []listener) (out []string) {
		for _, l := range normalise(ls) {
			l.dual = false
			out = append(out, l.String())
		}
		return out
	}
	if diff := cmp.Diff(strip(diag), strip(proc)); diff != "" {
		t.Errorf("sock_diag vs /proc/net (-diag +proc):\n%s", diff)
	}
	if len(diag) != len(worldTCP)+len(worldUDP) {
		t.Errorf("sock_diag found %d listeners, want %d: %v", len(diag), len(worldTCP)+len(worldUDP), diag)
	}
}

// TestOwnNamespace runs without WithNetns (and without root): the tracker reads the
// namespace of the test process.
func TestOwnNamespace(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	uc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer uc.Close()
	tcpAt := netip.MustParseAddrPort(ln.Addr().String())
	udpAt := netip.MustParseAddrPort(uc.LocalAddr().String())

	tr := New(nil)
	if err := tr.Refresh(); err != nil {
		t.Fatal(err)
	}
	if !tr.InUse(probe.TCP, tcpAt) || !tr.InUse(probe.UDP, udpAt) {
		t.Fatalf("own listeners %s/tcp, %s/udp not in use; TCP ports %v", tcpAt, udpAt, tr.Ports(probe.TCP))
	}
	if !slices.Contains(tr.Ports(probe.TCP), tcpAt.Port()) {
		t.Errorf("Ports(TCP) lacks %d", tcpAt.Port())
	}
	ln.Close()
	uc.Close()
	if err := tr.Refresh(); err != nil {
		t.Fatal(err)
	}
	if tr.InUse(probe.TCP, tcpAt) || tr.InUse(probe.UDP, udpAt) {
		t.Errorf("closed listeners still in use")
	}
}

// TestStartFollowsChanges checks the refresh goroutine: a listener opened after Start
// shows up without calling Refresh, and OnChange announces it.
func TestStartFollowsChanges(t *testing.T) {
	ns := newTestNetns(t)
	tr := New(nil, WithNetns(ns))
	changed := make(chan struct{}, 1)
	tr.OnChange(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err := tr.Start(context.Background(), 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	if err := tr.Start(context.Background(), time.Second); err == nil {
		t.Error("second Start succeeded")
	}
	dst := netip.MustParseAddrPort("127.0.0.1:2001")
	if tr.InUse(probe.TCP, dst) {
		t.Fatal("in use before listening")
	}
	var ln net.Listener
	in(t, ns, func() (err error) {
		ln, err = net.Listen("tcp4", dst.String())
		return err
	})
	defer ln.Close()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnChange after a new listener")
	}
	if !tr.InUse(probe.TCP, dst) {
		t.Error("new listener not in use after OnChange")
	}
	tr.Stop()
	tr.Stop() // idempotent
}

// TestStartStopNoLeak runs Start/Stop cycles and a context cancellation; TestMain's
// goleak check fails the package if a goroutine survives.
func TestStartStopNoLeak(t *testing.T) {
	tr := New(nil)
	tr.Stop() // before Start: no-op
	for range 3 {
		if err := tr.Start(context.Background(), time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		tr.Stop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := tr.Start(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cancel()
	tr.Stop()
	goleak.VerifyNone(t)
}

// TestInUseNow: a socket opened after the last refresh is seen by InUseNow once the
// view is older than maxAge (and not before), and only the probed protocol is read
// again: a UDP socket opened meanwhile waits for the next full refresh.
func TestInUseNow(t *testing.T) {
	ns := newTestNetns(t)
	tr := New(nil, WithNetns(ns))
	defer tr.Stop()
	if err := tr.Refresh(); err != nil {
		t.Fatal(err)
	}
	tcpDst := netip.MustParseAddrPort("127.0.0.1:2002")
	udpDst := netip.MustParseAddrPort("127.0.0.1:2003")
	var ln net.Listener
	var pc net.PacketConn
	in(t, ns, func() (err error) {
		if ln, err = net.Listen("tcp4", tcpDst.String()); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", udpDst.String())
		return err
	})
	defer ln.Close()
	defer pc.Close()
	if tr.InUseNow(probe.TCP, tcpDst, time.Now(), time.Hour) {
		t.Error("view younger than maxAge was refreshed")
	}
	if !tr.InUseNow(probe.TCP, tcpDst, time.Now().Add(time.Second), 10*time.Millisecond) {
		t.Error("new TCP listener not seen by InUseNow")
	}
	if tr.InUse(probe.UDP, udpDst) {
		t.Error("a TCP recheck read the UDP sockets too")
	}
	if !tr.InUseNow(probe.UDP, udpDst, time.Now().Add(time.Second), 10*time.Millisecond) {
		t.Error("new UDP socket not seen by InUseNow")
	}
	if !tr.InUse(probe.TCP, tcpDst) {
		t.Error("the UDP recheck lost the TCP listener")
	}
}

// Package testnet builds small, throw-away network worlds for integration tests: two
// named network namespaces (a defended host and a scanner) joined by a veth pair, with
// IPv4 addresses from 198.18.0.0/15 and IPv6 addresses from 2001:db8::/32. Traffic never
// leaves the pair. Everything a test creates (namespaces, interfaces, processes) is
// removed in t.Cleanup, also when the test fails.
//
// The package also runs processes inside a namespace (Exec, Run, Start and the Daemon
// type) and Debian's PortSentry 1.2 as a reference oracle (RunClassic).
//
// Tests using it need root. Without root, or when `ip netns` does not work, NewPair skips
// the test; a missing tool makes Require skip the test, unless PORTSENTRY_TEST_STRICT=1
// (or CI=true) is set in the environment, where it fails instead so that a CI machine
// cannot pass by skipping everything.
package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// DefaultRunTimeout bounds Pair.Run.
const DefaultRunTimeout = 60 * time.Second

// pairCounter numbers the pairs made by this process; with the pid it makes names unique.
var pairCounter atomic.Uint32

// Pair is a defended namespace and a scanner namespace joined by one veth pair.
type Pair struct {
	Defended, Scanner string // network namespace names (ip netns)
	DefIf, ScanIf     string // veth interface names inside Defended resp. Scanner

	DefV4, ScanV4 netip.Addr   // addresses on the veth pair
	DefV6, ScanV6 netip.Addr   // IPv6, added with nodad: usable at once
	V4Net, V6Net  netip.Prefix // the /24 and /64 shared by the pair

	// Index is the subnet number: the pair uses 198.18.Index.0/24 and 2001:db8:Index::/64.
	Index int

	tb testing.TB
}

// Option changes how NewPair builds a pair.
type Option func(*pairOpts)

type pairOpts struct {
	index int
}

// WithIndex fixes the subnet number (0-255): the pair gets 198.18.n.1 (defended),
// 198.18.n.2 (scanner), 2001:db8:n::1 and 2001:db8:n::2. Pairs are isolated from each
// other, so two pairs may use the same index; differential tests use that to give two
// daemons identical worlds. By default the index comes from a per-process counter.
func WithIndex(n int) Option { return func(o *pairOpts) { o.index = n } }

// NewPair creates the two namespaces, the veth pair between them, brings lo and the veth
// up in both and assigns the addresses. It skips the test when not root or when network
// namespaces are unavailable. Cleanup kills any process left in the namespaces and
// deletes them.
func NewPair(t testing.TB, opts ...Option) *Pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testnet: needs root (network namespaces)")
	}
	Require(t, "ip")
	n := pairCounter.Add(1)
	o := pairOpts{index: int(n % 256)}
	for _, f := range opts {
		f(&o)
	}
	if o.index < 0 || o.index > 255 {
		t.Fatalf("testnet: subnet index %d out of range 0-255", o.index)
	}
	pid := os.Getpid()
	p := &Pair{
		Defended: fmt.Sprintf("ps%dd%d", pid, n),
		Scanner:  fmt.Sprintf("ps%ds%d", pid, n),
		DefIf:    fmt.Sprintf("ps%dd%d", pid%10000, n),
		ScanIf:   fmt.Sprintf("ps%ds%d", pid%10000, n),
		Index:    o.index,
		tb:       t,
	}
	if len(p.DefIf) > 15 {
		t.Fatalf("testnet: interface name %q too long", p.DefIf)
	}
	p.DefV4 = netip.AddrFrom4([4]byte{198, 18, byte(o.index), 1})
	p.ScanV4 = netip.AddrFrom4([4]byte{198, 18, byte(o.index), 2})
	p.V4Net = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(o.index), 0}), 24)
	p.DefV6 = v6(o.index, 0, 1)
	p.ScanV6 = v6(o.index, 0, 2)
	p.V6Net = netip.PrefixFrom(v6(o.index, 0, 0), 64)

	if out, err := runIP("netns", "add", p.Defended); err != nil {
		t.Skipf("testnet: ip netns unsupported here: %v: %s", err, out)
	}
	t.Cleanup(func() { p.destroy(t) })
	if out, err := runIP("netns", "add", p.Scanner); err != nil {
		t.Fatalf("testnet: ip netns add %s: %v: %s", p.Scanner, err, out)
	}
	steps := [][]string{
		{"link", "add", p.DefIf, "netns", p.Defended, "type", "veth", "peer", "name", p.ScanIf, "netns", p.Scanner},
		{"-n", p.Defended, "link", "set", "lo", "up"},
		{"-n", p.Scanner, "link", "set", "lo", "up"},
		{"-n", p.Defended, "addr", "add", p.DefV4.String() + "/24", "dev", p.DefIf},
		{"-n", p.Scanner, "addr", "add", p.ScanV4.String() + "/24", "dev", p.ScanIf},
		{"-n", p.Defended, "addr", "add", p.DefV6.String() + "/64", "dev", p.DefIf, "nodad"},
		{"-n", p.Scanner, "addr", "add", p.ScanV6.String() + "/64", "dev", p.ScanIf, "nodad"},
		{"-n", p.Defended, "link", "set", p.DefIf, "up"},
		{"-n", p.Scanner, "link", "set", p.ScanIf, "up"},
	}
	for _, s := range steps {
		if out, err := runIP(s...); err != nil {
			t.Fatalf("testnet: ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	p.waitLinkUp(t)
	return p
}

// v6 gives 2001:db8:idx:sub::host.
func v6(idx, sub int, host uint16) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4], b[5] = byte(idx>>8), byte(idx)
	b[6], b[7] = byte(sub>>8), byte(sub)
	b[14], b[15] = byte(host>>8), byte(host)
	return netip.AddrFrom16(b)
}

// ExtraScanner adds address number host (3-254) of the pair's subnets to the scanner
// side, so that a test can play several attackers: 198.18.Index.host and
// 2001:db8:Index::host. It returns both addresses.
func (p *Pair) ExtraScanner(t testing.TB, host int) (netip.Addr, netip.Addr) {
	t.Helper()
	if host < 3 || host > 254 {
		t.Fatalf("testnet: ExtraScanner host %d out of range 3-254", host)
	}
	a4 := netip.AddrFrom4([4]byte{198, 18, byte(p.Index), byte(host)})
	a6 := v6(p.Index, 0, uint16(host))
	p.AddAddr(t, p.Scanner, netip.PrefixFrom(a4, 24))
	p.AddAddr(t, p.Scanner, netip.PrefixFrom(a6, 64))
	return a4, a6
}

// AddAddr adds an address with its prefix length to the veth of namespace ns (IPv6 with
// nodad). Use addresses from 198.18.0.0/15 or 2001:db8::/32 only.
func (p *Pair) AddAddr(t testing.TB, ns string, pfx netip.Prefix) {
	t.Helper()
	ifc := p.ifFor(t, ns)
	args := []string{"-n", ns, "addr", "add", pfx.String(), "dev", ifc}
	if pfx.Addr().Is6() {
		args = append(args, "nodad")
	}
	if out, err := runIP(args...); err != nil {
		t.Fatalf("testnet: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (p *Pair) ifFor(t testing.TB, ns string) string {
	switch ns {
	case p.Defended:
		return p.DefIf
	case p.Scanner:
		return p.ScanIf
	}
	t.Fatalf("testnet: %q is not a namespace of this pair", ns)
	return ""
}

// waitLinkUp waits until both veth ends report carrier, so the first packet is not lost.
func (p *Pair) waitLinkUp(t testing.TB) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, _ := runIP("-n", p.Defended, "-br", "link", "show", "dev", p.DefIf)
		b, _ := runIP("-n", p.Scanner, "-br", "link", "show", "dev", p.ScanIf)
		if strings.Contains(string(a), " UP ") && strings.Contains(string(b), " UP ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: veth did not come up:\n%s\n%s", a, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Pair) destroy(t testing.TB) {
	for _, ns := range []string{p.Defended, p.Scanner} {
		pids, err := NSPids(ns)
		if err != nil {
			continue
		}
		for _, pid := range pids {
			// Only processes this test started can be in these namespaces; anything
			// still there escaped its own cleanup.
			t.Logf("testnet: killing leftover process %d (%s) in %s", pid, procComm(pid), ns)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_, _ = runIP("-n", p.Defended, "link", "del", p.DefIf)
	for _, ns := range []string{p.Defended, p.Scanner} {
		if out, err := runIP("netns", "del", ns); err != nil {
			t.Errorf("testnet: ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

func runIP(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// Require skips the test when one of the tools is not on PATH (or, for an absolute name,
// does not exist). With PORTSENTRY_TEST_STRICT=1 or CI=true it fails instead.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if filepath.IsAbs(tool) {
			if _, err := os.Stat(tool); err != nil {
				missing = append(missing, tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testnet: missing tools %v (scripts/install-deps.sh installs them)", missing)
	if Strict() {
		t.Fatal(msg + "; failing because PORTSENTRY_TEST_STRICT/CI is set")
	}
	t.Skip(msg)
}

// Strict reports whether missing prerequisites must fail tests instead of skipping them.
func Strict() bool {
	return os.Getenv("PORTSENTRY_TEST_STRICT") == "1" || os.Getenv("CI") == "true"
}

// Exec returns a command that runs name inside namespace ns (via `ip netns exec`, which
// also gives the command a private mount namespace).
func (p *Pair) Exec(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs name inside ns to completion (at most DefaultRunTimeout) and returns its
// combined output; it fails the test, showing the output, when the command fails.
func (p *Pair) Run(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	out, err := p.Try(ns, DefaultRunTimeout, name, args...)
	if err != nil {
		t.Fatalf("testnet: in %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs name inside ns to completion with a timeout and returns its combined output
// and error, for commands that are expected to fail.
func (p *Pair) Try(ns string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return string(out), err
}

// Do runs fn on an OS thread switched into namespace ns. Sockets created by fn belong to
// ns and keep working after Do returns, on any goroutine.
func Do(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("testnet: open netns %s: %w", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: enter netns %s: %w", ns, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of
		// serving other goroutines from the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("testnet: leave netns %s: %w", ns, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listen opens a stream listener (network "tcp", "tcp4", "tcp6") inside ns; it is closed
// in cleanup.
func (p *Pair) Listen(t testing.TB, ns, network, address string) net.Listener {
	t.Helper()
	var l net.Listener
	err := Do(ns, func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		t.Fatalf("testnet: listen %s %s in %s: %v", network, address, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenPacket opens a packet listener ("udp", "udp4", "udp6") inside ns; it is closed
// in cleanup.
func (p *Pair) ListenPacket(t testing.TB, ns, network, address string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := Do(ns, func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		t.Fatalf("testnet: listen %s %s in %s: %v", network, address, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Serve accepts connections on l until it is closed, writes reply to each and closes
// it. It is the "open port on the defended host" that a blocked scanner must no longer
// reach.
func Serve(l net.Listener, reply string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte(reply))
			_ = c.Close()
		}
	}()
}

// Dial connects from inside ns. With a non-invalid from, the connection's source address
// is fixed (use ExtraScanner addresses to play several attackers).
func Dial(ns, network string, from netip.Addr, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if from.IsValid() {
		if strings.HasPrefix(network, "udp") {
			d.LocalAddr = &net.UDPAddr{IP: from.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
		}
	}
	var c net.Conn
	err := Do(ns, func() (err error) {
		c, err = d.Dial(network, to.String())
		return err
	})
	return c, err
}

// Connect makes a full TCP connection from ns to `to`, reads whatever the server sends
// until it closes the connection (or a short bound passes) and returns that data. This is
// one "connect scan" hit against a connect-mode sensor.
func Connect(ns string, from netip.Addr, to netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := Dial(ns, "tcp", from, to, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	var buf bytes.Buffer
	_, err = buf.ReadFrom(c)
	if err != nil && !isTimeout(err) && !errors.Is(err, syscall.ECONNRESET) {
		return buf.String(), err
	}
	return buf.String(), nil
}

// SendUDP sends one datagram with payload from ns to `to`.
func SendUDP(ns string, from netip.Addr, to netip.AddrPort, payload []byte) error {
	c, err := Dial(ns, "udp", from, to, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(payload)
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// NSPids lists the processes whose network namespace is the named one (like
// `ip netns pids NAME`).
func NSPids(ns string) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino && procState(pid) != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func procComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// procState returns the state letter from /proc/PID/stat, or 0 if the process is gone.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	s := procState(pid)
	return s != 0 && s != 'Z'
}

var nsSeq atomic.Uint32

// NewNS creates a lone network namespace named prefix<pid>n<k>, for tests that need a
// private kernel state rather than a Pair, and deletes it in cleanup. It skips the
// test when not root or when namespaces are unavailable.
func NewNS(t testing.TB, prefix string) (string, netns.NsHandle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	Require(t, "ip")
	name := fmt.Sprintf("%s%dn%d", prefix, os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name, h
}

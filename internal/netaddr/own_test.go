//go:build linux

package netaddr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/testlog"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

var addr = netip.MustParseAddr

// waitLimit bounds every poll: generous, since a loaded CI machine may be slow, but a
// lost event still fails the test instead of hanging it.
const waitLimit = 5 * time.Second

func TestOwnAddrsAlwaysOwn(t *testing.T) {
	var zero OwnAddrs
	for _, o := range []*OwnAddrs{NewOwnAddrs(nil), &zero} {
		for _, a := range []string{"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"} {
			if !o.Contains(addr(a)) {
				t.Errorf("before Start: %s not own", a)
			}
		}
		for _, a := range []string{"10.0.0.1", "8.8.8.8", "::2", "128.0.0.1"} {
			if o.Contains(addr(a)) {
				t.Errorf("before Start: %s is own", a)
			}
		}
		if len(o.Addrs()) != 0 {
			t.Errorf("before Start: Addrs = %v", o.Addrs())
		}
	}
	NewOwnAddrs(nil).Stop() // Stop without Start is a no-op
}

// A namespace handle that is not a namespace makes the first subscription fail: Start
// must say so, keep the always-own addresses, and keep retrying (stealth detection
// relies on the own addresses: a failure at boot must not switch following them off
// for good); Stop ends the retries.
func TestOwnAddrsStartFails(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var logs testlog.Buffer
	o := NewOwnAddrs(slog.New(slog.NewTextHandler(&logs, nil)), WithNetns(netns.NsHandle(f.Fd())))
	if err := o.Start(context.Background()); err == nil {
		o.Stop()
		t.Fatal("Start succeeded with a bogus namespace")
	}
	if !o.Contains(addr("127.0.0.1")) || !o.Contains(addr("::")) {
		t.Error("always-own addresses lost after a failed Start")
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), "re-subscription failed") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retries after a failed Start:\n%s", logs.String())
		}
	}
	o.Stop()
	goleak.VerifyNone(t)
}

func TestOwnAddrsContainsDoesNotAllocate(t *testing.T) {
	o := NewOwnAddrs(nil)
	as := []netip.Addr{addr("127.0.0.1"), addr("10.1.1.1"), addr("::ffff:10.1.1.1"), addr("fe80::1%eth0")}
	if n := testing.AllocsPerRun(100, func() {
		for _, a := range as {
			o.Contains(a)
		}
	}); n != 0 {
		t.Errorf("OwnAddrs.Contains allocates: %v allocs per run", n)
	}
}

func TestOwnAddrsFollowsKernel(t *testing.T) {
	ns, h := newTestNetns(t)
	link := addLink(t, h, "psna0")
	addAddr(t, h, link, "10.77.0.1/24")

	logs := &testlog.Buffer{}
	o := NewOwnAddrs(slog.New(slog.NewTextHandler(logs, nil)), WithNetns(ns))
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()
	// The initial listing is synchronous: no waiting allowed here.
	if !o.Contains(addr("10.77.0.1")) || !slices.Contains(o.Addrs(), addr("10.77.0.1")) {
		t.Fatalf("address present before Start not seen when Start returned; Addrs = %v", o.Addrs())
	}
	if o.Contains(addr("10.77.0.2")) {
		t.Fatal("an unassigned address of the subnet counts as own")
	}

	addAddr(t, h, link, "10.77.0.2/24")
	addAddr(t, h, link, "fd00:77::2/64")
	waitOwn(t, o, true, "10.77.0.2", "::ffff:10.77.0.2", "fd00:77::2", "fd00:77::2%psna0")
	if as := o.Addrs(); !slices.IsSortedFunc(as, netip.Addr.Compare) {
		t.Errorf("Addrs not sorted: %v", as)
	}

	delAddr(t, h, link, "10.77.0.2/24")
	delAddr(t, h, link, "fd00:77::2/64")
	waitOwn(t, o, false, "10.77.0.2", "fd00:77::2")
	if !o.Contains(addr("10.77.0.1")) {
		t.Error("10.77.0.1 lost while removing other addresses")
	}
	for _, msg := range []string{"own address added", "own address removed"} {
		for _, a := range []string{"10.77.0.2", "fd00:77::2"} {
			if n := logs.Count(fmt.Sprintf("msg=%q addr=%s", msg, a)); n != 1 {
				t.Errorf("%q for %s logged %d times, want once; log:\n%s", msg, a, n, logs)
			}
		}
	}

	// Deleting an interface takes its addresses with it.
	if err := h.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	waitOwn(t, o, false, "10.77.0.1")

	o.Stop()
	goleak.VerifyNone(t)
}

// The same address on two interfaces stays own until the last one drops it.
func TestOwnAddrsSameAddressOnTwoLinks(t *testing.T) {
	ns, h := newTestNetns(t)
	l0, l1 := addLink(t, h, "psna0"), addLink(t, h, "psna1")
	addAddr(t, h, l0, "10.77.1.1/24")
	addAddr(t, h, l1, "10.77.1.1/24")
	o := NewOwnAddrs(nil, WithNetns(ns))
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()

	delAddr(t, h, l0, "10.77.1.1/24")
	// Events arrive in order on one socket: once a later marker is seen, the
	// deletion has been applied.
	addAddr(t, h, l1, "10.77.1.200/24")
	waitOwn(t, o, true, "10.77.1.200")
	if !o.Contains(addr("10.77.1.1")) {
		t.Fatal("address still on psna1 dropped when psna0 lost it")
	}
	delAddr(t, h, l1, "10.77.1.1/24")
	waitOwn(t, o, false, "10.77.1.1")
}

// A subscription that dies (as on ENOBUFS) must be replaced and the state re-listed,
// never left silently stale.
func TestOwnAddrsResubscribes(t *testing.T) {
	ns, h := newTestNetns(t)
	link := addLink(t, h, "psna0")
	addAddr(t, h, link, "10.77.2.1/24")
	logs := &testlog.Buffer{}
	o := NewOwnAddrs(slog.New(slog.NewTextHandler(logs, nil)), WithNetns(ns))
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer o.Stop()

	for i := range 3 {
		old := o.current.Load()
		old.close() // kills the socket; events it held are lost on purpose
		// Changes made around the failure must show up, either through the
		// re-listing or through the new subscription.
		delAddr(t, h, link, fmt.Sprintf("10.77.2.%d/24", i+1))
		addAddr(t, h, link, fmt.Sprintf("10.77.2.%d/24", i+2))
		waitOwn(t, o, true, fmt.Sprintf("10.77.2.%d", i+2))
		waitOwn(t, o, false, fmt.Sprintf("10.77.2.%d", i+1))
		if o.current.Load() == old {
			t.Fatal("subscription not replaced")
		}
	}
	if n := logs.Count("re-subscribing"); n != 3 {
		t.Errorf("re-subscription logged %d times, want 3; log:\n%s", n, logs)
	}
}

// close must end netlink's goroutine even when it is blocked handing us an update
// nobody reads: fill the buffer with more events than it holds, then close.
func TestSubscriptionCloseUnblocksNetlink(t *testing.T) {
	ns, h := newTestNetns(t)
	link := addLink(t, h, "psna0")
	o := NewOwnAddrs(nil, WithNetns(ns))
	sub, err := o.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	for i := range cap(sub.updates) + 10 {
		addAddr(t, h, link, fmt.Sprintf("10.78.%d.%d/32", i/250, 1+i%250))
	}
	deadline := time.Now().Add(waitLimit)
	for len(sub.updates) < cap(sub.updates) { // the sender is now blocked, or about to be
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d updates arrived", len(sub.updates), cap(sub.updates))
		}
		time.Sleep(10 * time.Millisecond)
	}
	sub.close()
	goleak.VerifyNone(t)
}

func TestOwnAddrsLifecycle(t *testing.T) {
	ns, _ := newTestNetns(t)
	o := NewOwnAddrs(nil, WithNetns(ns))
	ctx, cancel := context.WithCancel(context.Background())
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	cancel() // the watcher ends on its own...
	o.Stop() // ...and Stop still waits for it
	goleak.VerifyNone(t)

	if err := o.Start(context.Background()); err != nil { // restart after Stop
		t.Fatal(err)
	}
	o.Stop()
	o.Stop()
	goleak.VerifyNone(t)
}

// waitOwn polls until each address's Contains equals want, waking on Changes.
func waitOwn(t *testing.T, o *OwnAddrs, want bool, addrs ...string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for _, s := range addrs {
		for o.Contains(addr(s)) != want {
			select {
			case <-o.Changes():
			case <-time.After(10 * time.Millisecond):
			case <-deadline:
				t.Fatalf("Contains(%s) still %v after %v; Addrs = %v", s, !want, waitLimit, o.Addrs())
			}
		}
	}
}

// newTestNetns creates a uniquely named network namespace, deleted at cleanup, and a
// netlink handle into it. It skips when not root or namespaces are unavailable.
func newTestNetns(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	_, ns := testnet.NewNS(t, "psna")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return ns, h
}

// addLink creates an interface that is up. It is one end of a veth pair (its peer is
// name+"p"): dummy interfaces are not available on every kernel, veth is.
func addLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth %s: %v", name, err)
	}
	var link netlink.Link
	for _, n := range []string{name + "p", name} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		link = l
	}
	return link
}

func nlAddr(t *testing.T, s string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection delay
	}
	return a
}

func addAddr(t *testing.T, h *netlink.Handle, l netlink.Link, s string) {
	t.Helper()
	if err := h.AddrAdd(l, nlAddr(t, s)); err != nil {
		t.Fatalf("adding %s: %v", s, err)
	}
}

func delAddr(t *testing.T, h *netlink.Handle, l netlink.Link, s string) {
	t.Helper()
	if err := h.AddrDel(l, nlAddr(t, s)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("deleting %s: %v", s, err)
	}
}

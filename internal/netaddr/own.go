//go:build linux

package netaddr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// alwaysOwn are addresses that are ours on every host whatever the kernel reports:
// loopback and the unspecified addresses. Spoofed packets "from" them must never get
// them blocked.
var alwaysOwn = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("0.0.0.0/32"),
	netip.MustParsePrefix("::/128"),
}

var alwaysOwnSet = NewSet(alwaysOwn)

// Retry timing for a lost subscription. Variables so tests can shorten them.
var (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
	listAttempts   = 5 // dumps interrupted by concurrent changes are retried this often
)

// OwnAddrs follows the host's own addresses live from the kernel (rtnetlink), so that
// PortSentry never acts against itself even when addresses change after start (DHCP,
// SLAAC, VPNs) — the job Debian's ifconfig-parsing start script no longer does.
//
// Contains and Addrs read an immutable snapshot through an atomic pointer: lock-free
// and allocation-free on the packet path. Loopback (127.0.0.0/8, ::1) and the
// unspecified addresses (0.0.0.0, ::) are always contained, before Start and when
// netlink fails.
//
// Each address that appears or disappears is logged once at Info ("own address added"
// / "own address removed", attribute addr), and Changes is signalled.
//
// Create it with NewOwnAddrs; a zero OwnAddrs only answers Contains for the always-own
// addresses and must not be started.
type OwnAddrs struct {
	log     *slog.Logger
	ns      netns.NsHandle // netns.None() (-1): the namespace of the thread calling Start
	snap    atomic.Pointer[ownSnapshot]
	changes chan struct{}

	mu   sync.Mutex // guards stop and done: Start/Stop bookkeeping only
	stop context.CancelFunc
	done chan struct{}

	current atomic.Pointer[subscription] // the live subscription, for tests that kill it

	// Owned by whoever runs the watch (Start, then the goroutine): never shared.
	present map[linkAddr]struct{}
	count   map[netip.Addr]int // links carrying each address
}

// linkAddr is one address on one interface. The same address may sit on several
// interfaces; it stays ours until the last one loses it.
type linkAddr struct {
	link int
	addr netip.Addr
	bits int // the on-link prefix length the kernel gave the address
}

type ownSnapshot struct {
	set   *Set
	addrs []netip.Addr   // sorted, kernel-reported only
	nets  []netip.Prefix // the on-link networks of those addresses, masked, sorted
}

// Option configures an OwnAddrs.
type Option func(*OwnAddrs)

// WithNetns makes OwnAddrs list and watch the addresses of network namespace ns instead
// of the namespace of the thread that calls Start. The caller keeps ownership of ns and
// must keep it open until Stop has returned (re-subscribing after an error reuses it).
func WithNetns(ns netns.NsHandle) Option {
	return func(o *OwnAddrs) { o.ns = ns }
}

// NewOwnAddrs returns a tracker that knows only the always-own addresses until Start.
// A nil log discards messages.
func NewOwnAddrs(log *slog.Logger, opts ...Option) *OwnAddrs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &OwnAddrs{
		log:     log,
		ns:      netns.None(),
		changes: make(chan struct{}, 1),
		present: map[linkAddr]struct{}{},
		count:   map[netip.Addr]int{},
	}
	for _, opt := range opts {
		opt(o)
	}
	o.snap.Store(&ownSnapshot{set: alwaysOwnSet})
	return o
}

// Contains reports whether a is one of the host's addresses, loopback or unspecified.
// IPv4-mapped and zoned forms match their plain address. It never allocates or blocks.
func (o *OwnAddrs) Contains(a netip.Addr) bool {
	if s := o.snap.Load(); s != nil {
		return s.set.Contains(a)
	}
	return alwaysOwnSet.Contains(a) // zero OwnAddrs
}

// Set returns the addresses Contains answers for, as an immutable set. It is the same
// pointer until they change.
func (o *OwnAddrs) Set() *Set {
	if s := o.snap.Load(); s != nil {
		return s.set
	}
	return alwaysOwnSet
}

// Addrs returns the addresses the kernel currently reports, sorted (IPv4 first). The
// always-own prefixes are not listed unless the kernel reports them (it normally
// reports 127.0.0.1 and ::1 on lo).
func (o *OwnAddrs) Addrs() []netip.Addr {
	if s := o.snap.Load(); s != nil {
		return slices.Clone(s.addrs)
	}
	return nil
}

// Networks returns the on-link networks of the kernel-reported addresses (10.0.0.5/24
// gives 10.0.0.0/24), sorted: their network and broadcast addresses are no real source.
func (o *OwnAddrs) Networks() []netip.Prefix {
	if s := o.snap.Load(); s != nil {
		return slices.Clone(s.nets)
	}
	return nil
}

// Changes is signalled after every change of the address snapshot. It holds at most one
// pending signal, so a slow reader sees one signal for a burst of changes and should
// then call Addrs. The channel is never closed.
func (o *OwnAddrs) Changes() <-chan struct{} { return o.changes }

// Start lists the current addresses synchronously, so Contains is accurate when Start
// returns, then follows changes in a goroutine until ctx is done or Stop is called. If
// the first subscription or listing fails, Start returns the error and the goroutine
// retries with backoff (meanwhile Contains covers the always-own addresses). Later
// failures (e.g. the kernel dropping events under load) are logged and repaired the
// same way, by re-subscribing and re-listing, until stopped.
func (o *OwnAddrs) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done != nil {
		return errors.New("own addresses: already started")
	}
	sub, err := o.resync()
	ctx, o.stop = context.WithCancel(ctx)
	o.done = make(chan struct{})
	go o.watch(ctx, sub, o.done)
	return err
}

// Stop ends the watch and waits for its goroutine. It is safe to call more than once
// and without Start; Start may be called again afterwards (also needed after Start's
// ctx has ended, before starting again).
func (o *OwnAddrs) Stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done == nil {
		return
	}
	o.stop()
	<-o.done
	o.done, o.stop = nil, nil
}

// watch applies address events until ctx ends, replacing a dead subscription (or
// making the first one, when sub is nil).
func (o *OwnAddrs) watch(ctx context.Context, sub *subscription, done chan<- struct{}) {
	defer close(done)
	if sub == nil {
		if sub = o.resubscribe(ctx); sub == nil {
			return
		}
	}
	for {
		select {
		case <-ctx.Done():
			sub.close()
			return
		case u, ok := <-sub.updates:
			if ok {
				o.apply(u)
				continue
			}
			sub.close()
			o.log.Warn("own address subscription ended, re-subscribing")
			if sub = o.resubscribe(ctx); sub == nil {
				return
			}
		}
	}
}

// resubscribe retries resync with exponential backoff until it works or ctx ends (nil).
func (o *OwnAddrs) resubscribe(ctx context.Context) *subscription {
	delay := resubscribeMin
	for {
		sub, err := o.resync()
		if err == nil {
			return sub
		}
		o.log.Warn("own address re-subscription failed", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, resubscribeMax)
	}
}

// resync subscribes first and lists second, so that no change can fall between the
// two: events queued meanwhile are applied after the list, and since each event sets
// or clears one (link, address) pair, replaying one the list already reflects is
// harmless. The list replaces the tracked state, which repairs any events lost before.
func (o *OwnAddrs) resync() (*subscription, error) {
	sub, err := o.subscribe()
	if err != nil {
		return nil, fmt.Errorf("own addresses: subscribing to rtnetlink: %w", err)
	}
	addrs, err := o.list()
	if err != nil {
		sub.close()
		return nil, fmt.Errorf("own addresses: listing: %w", err)
	}
	o.replace(addrs)
	return sub, nil
}

// list dumps every address of the namespace, retrying dumps that the kernel marks as
// interrupted by concurrent changes (their content may be inconsistent).
func (o *OwnAddrs) list() ([]netlink.Addr, error) {
	h, err := netlink.NewHandleAt(o.ns, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	for attempt := 1; ; attempt++ {
		addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
		if err == nil || !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == listAttempts {
			return addrs, err
		}
	}
}

// replace makes the tracked state equal to a full listing.
func (o *OwnAddrs) replace(addrs []netlink.Addr) {
	want := make(map[linkAddr]struct{}, len(addrs))
	for _, a := range addrs {
		if k, ok := keyOf(a.LinkIndex, a.IPNet); ok {
			want[k] = struct{}{}
		}
	}
	changed := false
	for k := range o.present {
		if _, ok := want[k]; !ok {
			changed = o.del(k) || changed
		}
	}
	for k := range want {
		changed = o.add(k) || changed
	}
	if changed {
		o.publish()
	}
}

// apply records one kernel event.
func (o *OwnAddrs) apply(u netlink.AddrUpdate) {
	k, ok := keyOf(u.LinkIndex, &u.LinkAddress)
	if !ok {
		return
	}
	var changed bool
	if u.NewAddr {
		changed = o.add(k)
	} else {
		changed = o.del(k)
	}
	if changed {
		o.publish()
	}
}

// add records k and reports whether the set of addresses changed. The kernel repeats
// RTM_NEWADDR for lifetime updates, so an already known pair changes nothing.
func (o *OwnAddrs) add(k linkAddr) bool {
	if _, ok := o.present[k]; ok {
		return false
	}
	o.present[k] = struct{}{}
	o.count[k.addr]++
	if o.count[k.addr] > 1 {
		return false
	}
	o.log.Info("own address added", "addr", k.addr)
	return true
}

// del forgets k and reports whether the set of addresses changed.
func (o *OwnAddrs) del(k linkAddr) bool {
	if _, ok := o.present[k]; !ok {
		return false
	}
	delete(o.present, k)
	if o.count[k.addr]--; o.count[k.addr] > 0 {
		return false
	}
	delete(o.count, k.addr)
	o.log.Info("own address removed", "addr", k.addr)
	return true
}

// publish swaps in a new immutable snapshot and signals Changes without blocking.
func (o *OwnAddrs) publish() {
	addrs := make([]netip.Addr, 0, len(o.count))
	prefixes := slices.Clone(alwaysOwn)
	for a := range o.count {
		addrs = append(addrs, a)
		prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	var nets []netip.Prefix
	for k := range o.present {
		if p, err := k.addr.Prefix(k.bits); err == nil {
			nets = append(nets, p)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	slices.SortFunc(nets, netip.Prefix.Compare)
	nets = slices.Compact(nets)
	o.snap.Store(&ownSnapshot{set: NewSet(prefixes), addrs: addrs, nets: nets})
	select {
	case o.changes <- struct{}{}:
	default:
	}
}

// keyOf canonicalises a kernel address (4- or 16-byte, possibly IPv4-mapped).
func keyOf(link int, n *net.IPNet) (linkAddr, bool) {
	if n == nil {
		return linkAddr{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return linkAddr{}, false
	}
	a = a.Unmap()
	ones, size := n.Mask.Size()
	if size == 0 {
		ones = a.BitLen() // no mask given: the address alone
	} else if size == 128 && a.Is4() {
		ones -= 96
	}
	return linkAddr{link: link, addr: a, bits: max(ones, 0)}, true
}

// subscription is one rtnetlink address-group socket and the netlink goroutine
// feeding updates.
type subscription struct {
	updates chan netlink.AddrUpdate
	done    chan struct{}
	once    sync.Once
}

func (o *OwnAddrs) subscribe() (*subscription, error) {
	s := &subscription{
		// Buffered so the initial listing can run while events queue up.
		updates: make(chan netlink.AddrUpdate, 256),
		done:    make(chan struct{}),
	}
	ns := o.ns
	err := netlink.AddrSubscribeWithOptions(s.updates, s.done, netlink.AddrSubscribeOptions{
		Namespace:     &ns,
		ErrorCallback: s.onError(o.log),
	})
	if err != nil {
		s.once.Do(func() { close(s.done) }) // ends netlink's closer goroutine if it started
		return nil, err
	}
	o.current.Store(s)
	return s, nil
}

// onError logs netlink's asynchronous errors, except the one caused by our own close.
func (s *subscription) onError(log *slog.Logger) func(error) {
	return func(err error) {
		select {
		case <-s.done:
		default:
			log.Warn("own address subscription error", "err", err)
		}
	}
}

// close shuts the socket and drains updates until netlink's goroutine has closed the
// channel: that goroutine may be blocked sending to us and would otherwise leak.
func (s *subscription) close() {
	s.once.Do(func() { close(s.done) })
	for range s.updates {
	}
}

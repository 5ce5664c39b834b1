// Package route blocks hosts with blackhole routes, natively over rtnetlink (no ip(8),
// no route(8), no shell).
//
// Each banned prefix becomes one route in the main table (or Options.Table):
//
//	blackhole 198.51.100.7 proto 181
//	blackhole 2001:db8:bad::/64 proto 181
//
// The routes are tagged with a routing protocol number of their own, Protocol (181,
// 0xb5), so that `ip route show proto 181` and `ip -6 route show proto 181` list
// exactly the routes this backend made, and so that the backend never touches any
// other route: it lists only routes carrying the tag, deletes only blackhole routes
// carrying the tag (the kernel matches the protocol on delete), and never replaces a
// route somebody else made for the same prefix: a ban whose prefix such a route holds
// is recorded but not enforced by a route of ours, and Unenforced says so and why. 181 (0xb5) is free both in the
// kernel's RTPROT_* list (include/uapi/linux/rtnetlink.h: 0-4, 8-18, 42 babel,
// 99 openr, 186 bgp, 187 isis, 188 ospf, 189 rip, 192 eigrp) and in iproute2's
// /etc/iproute2/rt_protos (which names most of these). An administrator may name
// it for ip(8) with a line "181 portsentry" in /etc/iproute2/rt_protos.d/portsentry.conf.
//
// Options.Instance keeps the routes of two daemons on one host (Debian runs one per
// protocol) apart, so that neither's Revoke, Expire or Reconcile ever deletes the
// other's. A named instance tags its routes with InstanceProtocol (180) and a metric
// of its own, derived from its name (InstanceMetric):
//
//	blackhole 198.51.100.7 proto 180 metric 1253872004      (instance "udp")
//
// The kernel keeps routes for one prefix apart by metric and, on delete, matches a
// non-zero metric and the protocol exactly, so each instance deletes only its own. The
// default instance (no name) keeps protocol 181 and no metric (0; IPv6 shows 1024), as
// before instances existed; since a delete without a metric matches any, no other
// instance may use its protocol, and named instances therefore share another one.
// `ip route show proto 180` lists the named instances' routes, each with its metric.
// A distinct protocol per instance would run out of free numbers, and a routing table
// per instance would need an ip rule to take effect. Two instances banning one prefix
// both hold a route for it; while one of them is there the address is blackholed. A
// route a named instance adds beside someone else's route for the same prefix does not
// replace it (only the lowest metric is used): the ban waits until that route goes.
//
// Reconcile makes the routes match the journal: a route of ours deleted by hand comes
// back, one the journal does not hold goes. It costs one dump per family when nothing
// differs, however many bans someone else's route holds.
//
// A blackhole route drops what the host would send to the banned address, so a TCP
// handshake or a UDP reply never reaches it; with reverse-path filtering on
// (rp_filter=1) the kernel also drops what the banned address sends. Routes do not
// expire: the daemon calls Expire when its journal says a ban ran out, and re-asserts
// the journal's bans with Apply at start.
package route

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/respond"
)

const (
	// DefaultProtocol is the routing protocol number (rtm_protocol) that tags the
	// default instance's routes.
	DefaultProtocol = 181
	// InstanceProtocol tags the routes of named instances, told apart by metric.
	InstanceProtocol = 180
)

// Options configures a Backend.
type Options struct {
	Netns netns.NsHandle // 0 or netns.None(): the current network namespace
	// Protocol tags our routes; default DefaultProtocol (181), InstanceProtocol (180)
	// for a named instance. Must be 19-255.
	Protocol int
	Table    int // routing table; default the main table (254)
	// Instance names the daemon whose routes these are (see the package comment;
	// respond.CheckInstance); empty: the default instance.
	Instance string
}

// Backend blocks prefixes with tagged blackhole routes. Its methods are safe for
// concurrent use.
type Backend struct {
	log    *slog.Logger
	opts   Options
	mu     sync.Mutex
	h      *netlink.Handle
	proto  netlink.RouteProtocol
	metric int // 0 for the default instance
	// unenforced holds the banned prefixes that have no route of ours because a
	// route that is not ours holds them, with what that route does.
	unenforced map[netip.Prefix]string
}

// New opens an rtnetlink socket in the configured namespace. It changes nothing.
func New(opts Options, log *slog.Logger) (*Backend, error) {
	if err := respond.CheckInstance(opts.Instance); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	metric, err := protocol(&opts)
	if err != nil {
		return nil, err
	}
	if opts.Table == 0 {
		opts.Table = unix.RT_TABLE_MAIN
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns := netns.None()
	if opts.Netns > 0 {
		ns = opts.Netns
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, unusable(err)
	}
	return &Backend{log: log, opts: opts, h: h, proto: netlink.RouteProtocol(opts.Protocol), metric: metric,
		unenforced: map[netip.Prefix]string{}}, nil
}

// protocol fills in the instance's protocol and returns its metric.
func protocol(opts *Options) (int, error) {
	named := opts.Instance != ""
	if opts.Protocol == 0 {
		opts.Protocol = DefaultProtocol
		if named {
			opts.Protocol = InstanceProtocol
		}
	}
	// 0-18 are the kernel's and routing daemons' well-known values (unspec, redirect,
	// kernel, boot, static, ...): never take them, and never anything past a byte.
	if opts.Protocol < 19 || opts.Protocol > 255 {
		return 0, fmt.Errorf("route: protocol %d out of range 19-255", opts.Protocol)
	}
	// A default instance's deletes match any metric: it must not share a protocol
	// with named instances.
	if named && opts.Protocol == DefaultProtocol || !named && opts.Protocol == InstanceProtocol {
		return 0, fmt.Errorf("route: protocol %d is reserved for %s", opts.Protocol,
			map[bool]string{true: "the default instance", false: "named instances"}[named])
	}
	if !named {
		return 0, nil
	}
	return InstanceMetric(opts.Instance), nil
}

// InstanceMetric is the metric of a named instance's routes: the low 31 bits of the
// 32-bit FNV-1a hash of its name (an int on every platform), 1 should that be 0 (0 is
// the default instance's).
func InstanceMetric(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	if m := h.Sum32() & 0x7fffffff; m != 0 {
		return int(m)
	}
	return 1
}

func unusable(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("route backend unusable: permission denied (needs root or CAP_NET_ADMIN): %w", err)
	}
	return fmt.Errorf("route backend unusable: %w", err)
}

// Name is "route".
func (b *Backend) Name() string { return "route" }

// Protocol is the routing protocol number that tags our routes.
func (b *Backend) Protocol() int { return b.opts.Protocol }

// Metric is the metric of our routes: 0 (unset) for the default instance.
func (b *Backend) Metric() int { return b.metric }

// Setup checks that the routing table can be read. It creates and removes nothing:
// routes left by an earlier run stay until the daemon expires or revokes them.
func (b *Backend) Setup() error {
	ps, err := b.List()
	if err != nil {
		return unusable(err)
	}
	b.log.Info("blocking backend: blackhole routes", "instance", b.opts.Instance, "proto", b.opts.Protocol,
		"metric", b.metric, "table", b.opts.Table, "present", len(ps))
	return nil
}

// Close releases the netlink socket; the routes stay.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		b.h.Close()
		b.h = nil
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (b *Backend) route(p netip.Prefix) *netlink.Route {
	fam := unix.AF_INET
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	return &netlink.Route{
		Dst:      ipNet(p),
		Type:     unix.RTN_BLACKHOLE,
		Protocol: b.proto,
		Table:    b.opts.Table,
		Family:   fam,
		Priority: b.metric,
	}
}

// ours reports whether r is one of our routes.
func (b *Backend) ours(r *netlink.Route) bool {
	return r.Protocol == b.proto && r.Type == unix.RTN_BLACKHOLE && (b.metric == 0 || r.Priority == b.metric)
}

// Apply adds a blackhole route for each ban (the timeout is ignored: the daemon
// calls Expire). A route we made already is left as it is (idempotent). A route for
// the same prefix that is not ours (another protocol, or ours with another type) is
// never replaced, since replacing it could hijack a real route: that ban is not
// enforced by us, which is no error; Unenforced says why.
func (b *Backend) Apply(bans []respond.Ban) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return errors.New("route apply: backend closed")
	}
	el := respond.ErrorList{Backend: "route", Op: "apply"}
	b.add(bans, &el)
	return el.Err()
}

// add adds a route for each ban and returns how many it added.
func (b *Backend) add(bans []respond.Ban, el *respond.ErrorList) int {
	n := 0
	for _, ban := range bans {
		p, err := netaddr.BanPrefix(ban.Prefix)
		if err != nil {
			el.Add(err)
			continue
		}
		err = b.h.RouteAdd(b.route(p))
		if err == nil {
			delete(b.unenforced, p)
			n++
			continue
		}
		if !errors.Is(err, unix.EEXIST) {
			el.Add(fmt.Errorf("%v: %w", p, err))
			continue
		}
		ours, other, err := b.lookup(p)
		switch {
		case err != nil:
			el.Add(fmt.Errorf("%v: %w", p, err))
		case ours:
			delete(b.unenforced, p)
		default:
			b.unenforced[p] = notOurs(other)
		}
	}
	return n
}

// Unenforced says why the ban on p has no route of ours: a route that is not ours held
// its prefix when the ban was applied or last reconciled (the text says what that
// route does). "" when a route of ours holds it, or p is not banned.
func (b *Backend) Unenforced(p netip.Prefix) string {
	p, err := netaddr.BanPrefix(p)
	if err != nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.unenforced[p]
}

// UnenforcedCount is how many bans have no route of ours (see Unenforced).
func (b *Backend) UnenforcedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.unenforced)
}

// notOurs describes a route that is not ours holding a banned prefix, and whether
// traffic to the prefix is dropped anyway.
func notOurs(r *netlink.Route) string {
	if r == nil { // gone between the add and the look-up
		return "a route that is not ours held the prefix"
	}
	what := fmt.Sprintf("%s route that is not ours (proto %v, metric %d)", routeType(r.Type), r.Protocol, r.Priority)
	switch r.Type {
	case unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
		return "a " + what + " holds the prefix and is left alone: it drops the traffic instead, and stays when the ban ends"
	}
	return "a " + what + " holds the prefix and is left alone: the host is not blocked"
}

// routeType names a route type as ip(8) does.
func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_ANYCAST:
		return "anycast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_THROW:
		return "throw"
	case unix.RTN_NAT:
		return "nat"
	}
	return fmt.Sprintf("type %d", t)
}

// lookup finds the routes for exactly p in our table: whether one of them is our
// blackhole, and another one (the one with our metric if there is one).
func (b *Backend) lookup(p netip.Prefix) (ours bool, other *netlink.Route, err error) {
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	filter := &netlink.Route{Dst: ipNet(p), Table: b.opts.Table}
	rs, err := listRetry(func() ([]netlink.Route, error) {
		return b.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return false, nil, err
	}
	metric := b.metric
	if fam == netlink.FAMILY_V6 && metric == 0 {
		metric = 1024
	}
	for i := range rs {
		if b.ours(&rs[i]) {
			return true, nil, nil
		}
		// The one our add collided with, if it is there, else any.
		if other == nil || rs[i].Priority == metric && other.Priority != metric {
			other = &rs[i]
		}
	}
	return false, other, nil
}

// listRetry retries a dump the kernel marks interrupted (ErrDumpInterrupted: the
// routes changed while it was being read), which holds an incomplete list.
func listRetry(f func() ([]netlink.Route, error)) ([]netlink.Route, error) {
	var rs []netlink.Route
	var err error
	for range 5 {
		rs, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return rs, err
		}
	}
	return nil, fmt.Errorf("route dump kept being interrupted: %w", err)
}

// Revoke deletes the routes for prefixes; absent ones are not an error. Only a
// blackhole route with our protocol is ever deleted.
func (b *Backend) Revoke(prefixes []netip.Prefix) error { return b.del("revoke", prefixes) }

// Expire deletes the routes of bans that ran out (routes do not expire by themselves).
func (b *Backend) Expire(prefixes []netip.Prefix) error { return b.del("expire", prefixes) }

func (b *Backend) del(what string, prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return fmt.Errorf("route %s: backend closed", what)
	}
	el := respond.ErrorList{Backend: "route", Op: what}
	b.remove(prefixes, &el)
	return el.Err()
}

// remove deletes our routes for prefixes and returns how many it deleted.
func (b *Backend) remove(prefixes []netip.Prefix, el *respond.ErrorList) int {
	n := 0
	for _, pp := range prefixes {
		p, err := netaddr.BanPrefix(pp)
		if err != nil {
			el.Add(err)
			continue
		}
		// The kernel deletes only a route matching every field given: destination,
		// table, type, protocol and a non-zero metric, so a foreign route for p, or
		// another instance's, is not a match (ESRCH).
		delete(b.unenforced, p) // the ban is gone
		err = b.h.RouteDel(b.route(p))
		switch {
		case err == nil:
			n++
		case !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT):
			el.Add(fmt.Errorf("%v: %w", p, err))
		}
	}
	return n
}

// Reconcile makes our routes exactly want (the journal's active bans): routes
// missing (deleted by hand) are added, routes of ours want lacks are deleted. A ban
// whose prefix someone else's route holds (classic KILL_ROUTE's, say) stays without
// a route of ours, which is no repair: Unenforced says so. It costs one route dump
// per family.
func (b *Backend) Reconcile(want []respond.Ban) (respond.Repair, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return respond.Repair{}, errors.New("route reconcile: backend closed")
	}
	held, taken, err := b.scan()
	if err != nil {
		return respond.Repair{}, err
	}
	el := respond.ErrorList{Backend: "route", Op: "reconcile"}
	canon := make([]respond.Ban, 0, len(want))
	for _, ban := range want {
		p, err := netaddr.BanPrefix(ban.Prefix)
		if err != nil {
			el.Add(err)
			continue
		}
		canon = append(canon, respond.Ban{Prefix: p, Timeout: ban.Timeout})
	}
	missing, extra := respond.Diff(canon, held)
	missing = slices.DeleteFunc(missing, func(ban respond.Ban) bool { return taken[ban.Prefix] != nil })
	rep := respond.Repair{Restored: b.add(missing, &el), Removed: b.remove(extra, &el)}
	// What is not enforced now: the bans want holds whose prefix a route not ours takes.
	var ours map[netip.Prefix]bool
	if len(taken) > 0 {
		ours = make(map[netip.Prefix]bool, len(held))
		for _, p := range held {
			ours[p] = true
		}
	}
	unenforced := map[netip.Prefix]string{}
	for _, ban := range canon {
		if r := taken[ban.Prefix]; r != nil && !ours[ban.Prefix] {
			unenforced[ban.Prefix] = notOurs(r)
		} else if why, ok := b.unenforced[ban.Prefix]; ok { // met by add just now
			unenforced[ban.Prefix] = why
		}
	}
	b.unenforced = unenforced
	if rep.Changed() {
		b.log.Info("route: routes repaired", "proto", b.opts.Protocol, "metric", b.metric, "restored", rep.Restored, "removed", rep.Removed)
	}
	return rep, el.Err()
}

// List returns the prefixes of our blackhole routes (IPv4 and IPv6) in the table.
func (b *Backend) List() ([]netip.Prefix, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil, errors.New("route list: backend closed")
	}
	held, _, err := b.scan()
	return held, err
}

// scan dumps the table once per family (the library filters on our side anyway)
// and returns the prefixes of our routes, and the other routes that our add would
// collide with: same destination and metric (IPv6 stores metric 0 as 1024), which
// the kernel refuses with EEXIST.
func (b *Backend) scan() (held []netip.Prefix, taken map[netip.Prefix]*netlink.Route, err error) {
	taken = map[netip.Prefix]*netlink.Route{}
	filter := &netlink.Route{Table: b.opts.Table}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := listRetry(func() ([]netlink.Route, error) {
			return b.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue // no IPv6 in this kernel
			}
			return nil, nil, fmt.Errorf("route list: %w", err)
		}
		metric := b.metric
		if fam == netlink.FAMILY_V6 && metric == 0 {
			metric = 1024
		}
		for i := range rs {
			r := &rs[i]
			p, ok := dst(fam, r)
			switch {
			case !ok:
			case b.ours(r):
				held = append(held, p)
			case r.Priority == metric && r.Tos == 0:
				taken[p] = r
			}
		}
	}
	return held, taken, nil
}

// dst is a route's destination as a prefix; false for a default route (no Dst).
func dst(fam int, r *netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	if fam == netlink.FAMILY_V4 {
		a = a.Unmap()
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

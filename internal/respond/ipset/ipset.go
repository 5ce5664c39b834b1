// Package ipset blocks hosts with two ipsets and one iptables rule per family:
//
//	ipset create portsentry4 hash:net family inet timeout 0
//	ipset create portsentry6 hash:net family inet6 timeout 0
//	iptables  -I INPUT -m set --match-set portsentry4 src -j DROP
//	ip6tables -I INPUT -m set --match-set portsentry6 src -j DROP
//
// The sets are managed natively over netlink (github.com/vishvananda/netlink; the
// ipset(8) tool is not needed), the two rules by running iptables(8) and ip6tables(8)
// directly (exec, no shell), checking with -C before inserting so the rule is there
// exactly once however often Setup runs. Whichever variant iptables is (nf_tables or
// legacy) does not matter: the rule goes where the administrator's iptables puts it.
//
// The sets are created with "timeout 0": elements may then carry a timeout of their
// own, which the kernel enforces (an element with timeout 0 is permanent). Apply adds
// with the timeout in seconds, rounded up, replacing an existing element (which
// renews its timeout). The kernel clamps element timeouts to IPSET_MAX_TIMEOUT
// (2147483 s, about 24.8 days); a longer ban is added as permanent and removed when
// the daemon calls Expire.
//
// Close leaves the sets and rules in place: bans outlive the daemon, and the next
// start re-asserts them. Teardown removes both.
//
// Reconcile puts back what Setup made and the journal's bans, should someone have
// flushed iptables, destroyed a set, deleted elements or cut their timeouts short, and
// deletes elements the journal does not hold. It runs every few seconds, so it forks iptables only when a
// set's reference count (which the kernel keeps for every iptables rule naming the
// set, with either iptables variant) differs from what it was when the rule was last
// checked; otherwise it costs one netlink dump per set.
//
// Options.Instance keeps two daemons on one host (Debian runs one per protocol)
// apart: instance "udp" uses the sets portsentry-udp4 and portsentry-udp6, each with
// its rule, so neither's Revoke, Reconcile or Teardown touches the other's. A name too
// long for ipset's 31 bytes is cut to its first 10 bytes and "~" and its FNV-1a hash
// in hex (portsentry-tcp+udp+st~e21451ac4); "~" is not allowed in instance names, so
// a cut name never equals a whole one. The default instance (no name) keeps
// portsentry4 and portsentry6.
package ipset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/respond"
)

const (
	DefaultSet4  = "portsentry4"
	DefaultSet6  = "portsentry6"
	DefaultChain = "INPUT"
	// MaxTimeout is the longest element timeout the kernel keeps (IPSET_MAX_TIMEOUT).
	MaxTimeout = 2147483 * time.Second

	setType = "hash:net"
)

// Options configures a Backend.
type Options struct {
	// Netns is the network namespace the sets and rules live in; 0 or netns.None():
	// the current one. iptables runs on a thread switched into it.
	Netns      netns.NsHandle
	Set4, Set6 string // set names; default SetNames(Instance) (at most 31 bytes)
	// Instance names the daemon whose sets these are (see the package comment;
	// respond.CheckInstance); empty: the default instance.
	Instance string
	Chain    string // filter chain for the rules; default INPUT
	// IPTables and IP6Tables are the commands; default "iptables" and "ip6tables"
	// found on PATH.
	IPTables, IP6Tables string
	// CmdTimeout bounds each iptables run; default 30 s.
	CmdTimeout time.Duration
}

// Entry is an element of one of the sets.
type Entry struct {
	Prefix  netip.Prefix
	Timeout time.Duration // time left; 0 = permanent
}

// Backend blocks prefixes through two ipsets. Its methods are safe for concurrent use.
type Backend struct {
	log  *slog.Logger
	opts Options
	mu   sync.Mutex
	h    *netlink.Handle
	// refs is each family's set reference count when its rule was last checked; -1
	// before that.
	refs [2]int
}

// New opens a netfilter netlink socket in the configured namespace. It changes
// nothing; Setup checks the tools and creates the sets and rules.
func New(opts Options, log *slog.Logger) (*Backend, error) {
	if err := respond.CheckInstance(opts.Instance); err != nil {
		return nil, fmt.Errorf("ipset: %w", err)
	}
	set4, set6 := SetNames(opts.Instance)
	if opts.Set4 == "" {
		opts.Set4 = set4
	}
	if opts.Set6 == "" {
		opts.Set6 = set6
	}
	for _, n := range []string{opts.Set4, opts.Set6} {
		if len(n) > 31 || strings.ContainsAny(n, " \t\n") {
			return nil, fmt.Errorf("ipset: bad set name %q (at most 31 bytes, no blanks)", n)
		}
	}
	if opts.Set4 == opts.Set6 {
		return nil, fmt.Errorf("ipset: the IPv4 and IPv6 sets must differ (both %q)", opts.Set4)
	}
	if opts.Chain == "" {
		opts.Chain = DefaultChain
	}
	if opts.IPTables == "" {
		opts.IPTables = "iptables"
	}
	if opts.IP6Tables == "" {
		opts.IP6Tables = "ip6tables"
	}
	if opts.CmdTimeout <= 0 {
		opts.CmdTimeout = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns := netns.None()
	if opts.Netns > 0 {
		ns = opts.Netns
	}
	// The handle must hold a NETLINK_NETFILTER socket: without one the library
	// silently opens a socket in the current namespace instead.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ipset unusable: cannot open a netfilter netlink socket: %w", err)
	}
	return &Backend{log: log, opts: opts, h: h, refs: [2]int{-1, -1}}, nil
}

// SetNames are an instance's IPv4 and IPv6 sets (see the package comment).
func SetNames(instance string) (string, string) {
	if instance == "" {
		return DefaultSet4, DefaultSet6
	}
	const prefix, limit = "portsentry-", 31 - 1 // one byte for the family
	name := prefix + instance
	if len(name) > limit {
		h := fnv.New32a()
		h.Write([]byte(instance))
		name = fmt.Sprintf("%s%s~%08x", prefix, instance[:limit-len(prefix)-9], h.Sum32())
	}
	return name + "4", name + "6"
}

// Name is "ipset".
func (b *Backend) Name() string { return "ipset" }

// Close releases the netlink socket; sets and rules stay.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		b.h.Close()
		b.h = nil
	}
	return nil
}

// nlcall runs a library call, turning a panic into an error: the library's ipset
// code type-asserts every error to syscall.Errno, which not every error is.
func nlcall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("netlink ipset: %v", r)
		}
	}()
	return f()
}

// isErrno reports whether err is errno e, as the library reports it (a plain
// syscall.Errno, or an nl.IPSetError for the ipset-private codes).
func isErrno(err error, e uintptr) bool {
	var ie nl.IPSetError
	if errors.As(err, &ie) {
		return uintptr(ie) == e
	}
	var se syscall.Errno
	return errors.As(err, &se) && uintptr(se) == e
}

type family struct {
	i    int // index in refs
	v6   bool
	set  string
	cmd  string // iptables or ip6tables
	name string // "IPv4" or "IPv6"
}

func (b *Backend) families() []family {
	return []family{
		{0, false, b.opts.Set4, b.opts.IPTables, "IPv4"},
		{1, true, b.opts.Set6, b.opts.IP6Tables, "IPv6"},
	}
}

// Setup checks that ipset (kernel) and iptables/ip6tables are usable, creates the
// two sets unless they exist (an existing set of another type or without timeout
// support is an error) and inserts the two rules unless they are there.
func (b *Backend) Setup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return errors.New("ipset setup: backend closed")
	}
	var missing []string
	for _, f := range b.families() {
		if _, err := exec.LookPath(f.cmd); err != nil {
			missing = append(missing, fmt.Sprintf("%s (not found on PATH; install the iptables package)", f.cmd))
		}
	}
	if err := nlcall(func() error { _, _, err := b.h.IpsetProtocol(); return err }); err != nil {
		missing = append(missing, fmt.Sprintf("kernel ipset support (module ip_set: %v)", err))
	}
	if len(missing) > 0 {
		return fmt.Errorf("ipset backend unusable: missing %s", strings.Join(missing, "; "))
	}
	for _, f := range b.families() {
		if err := b.createSet(f); err != nil {
			return err
		}
	}
	for _, f := range b.families() {
		if err := b.ensureRule(f); err != nil {
			return err
		}
		if _, err := b.noteRefs(f); err != nil {
			return fmt.Errorf("ipset setup: %w", err)
		}
	}
	b.log.Info("blocking backend: ipset", "sets", b.opts.Set4+","+b.opts.Set6, "chain", b.opts.Chain)
	return nil
}

func (b *Backend) createSet(f family) error {
	fam := uint8(unix.AF_INET)
	if f.v6 {
		fam = unix.AF_INET6
	}
	zero := uint32(0)
	// Replace (no NLM_F_EXCL) makes creating an identical existing set a no-op; a
	// set of the same name with another type, family or timeout gives EEXIST.
	err := nlcall(func() error {
		return b.h.IpsetCreate(f.set, setType, netlink.IpsetCreateOptions{Replace: true, Family: fam, Timeout: &zero})
	})
	switch {
	case err == nil:
		return nil
	case isErrno(err, uintptr(unix.EEXIST)):
		return fmt.Errorf("ipset setup: a set %q exists that is not %s family %s with timeout support; remove it (ipset destroy %s) or configure another name",
			f.set, setType, map[bool]string{false: "inet", true: "inet6"}[f.v6], f.set)
	case isErrno(err, uintptr(unix.EPERM)):
		return fmt.Errorf("ipset setup: create %s: permission denied (needs root or CAP_NET_ADMIN): %w", f.set, err)
	}
	return fmt.Errorf("ipset setup: create %s: %w", f.set, err)
}

func (b *Backend) ruleArgs(f family, op string) []string {
	return []string{"-w", "5", op, b.opts.Chain, "-m", "set", "--match-set", f.set, "src", "-j", "DROP"}
}

// hasRule runs `iptables -C`: exit 0 is present, 1 absent, anything else an error.
func (b *Backend) hasRule(f family) (bool, error) {
	out, code, err := b.run(f.cmd, b.ruleArgs(f, "-C")...)
	switch {
	case err == nil:
		return true, nil
	case code == 1:
		return false, nil
	}
	return false, fmt.Errorf("%s %s: %w: %s", f.cmd, strings.Join(b.ruleArgs(f, "-C"), " "), err, out)
}

func (b *Backend) ensureRule(f family) error {
	ok, err := b.hasRule(f)
	if err != nil {
		return fmt.Errorf("ipset setup (%s): %w", f.name, err)
	}
	if ok {
		return nil
	}
	if out, _, err := b.run(f.cmd, b.ruleArgs(f, "-I")...); err != nil {
		return fmt.Errorf("ipset setup (%s): %s %s: %w: %s", f.name, f.cmd, strings.Join(b.ruleArgs(f, "-I"), " "), err, out)
	}
	return nil
}

// listSet lists one set: its header (with the reference count) and elements.
func (b *Backend) listSet(f family) (*netlink.IPSetResult, error) {
	var res *netlink.IPSetResult
	err := nlcall(func() (err error) { res, err = b.h.IpsetList(f.set); return err })
	if err != nil {
		return nil, fmt.Errorf("ipset list %s: %w", f.set, err)
	}
	return res, nil
}

// noteRefs lists the set after its rule was checked and keeps its reference count.
func (b *Backend) noteRefs(f family) (*netlink.IPSetResult, error) {
	res, err := b.listSet(f)
	if err != nil {
		b.refs[f.i] = -1
		return nil, err
	}
	b.refs[f.i] = int(res.References)
	return res, nil
}

// restore re-creates a missing set and re-inserts a missing rule, and returns the
// set's listing. The rule is checked (a fork of iptables) only when the set's
// reference count changed since it was last checked: deleting or flushing the rule
// drops it, and a destroyed set comes back with none.
func (b *Backend) restore(f family) (*netlink.IPSetResult, error) {
	res, err := b.listSet(f)
	if isErrno(err, uintptr(unix.ENOENT)) {
		b.log.Warn("ipset: set missing, created again", "set", f.set)
		if err := b.createSet(f); err != nil {
			return nil, err
		}
		res, err = b.listSet(f)
	}
	if err != nil {
		return nil, err
	}
	if int(res.References) == b.refs[f.i] {
		return res, nil
	}
	had, err := b.hasRule(f)
	if err != nil {
		return nil, fmt.Errorf("ipset reconcile (%s): %w", f.name, err)
	}
	if !had {
		b.log.Warn("ipset: rule missing, inserted again", "cmd", f.cmd, "set", f.set, "chain", b.opts.Chain)
		if err := b.ensureRule(f); err != nil {
			return nil, err
		}
	}
	return b.noteRefs(f)
}

// run runs a command in the backend's namespace and returns its combined output
// and exit code.
func (b *Backend) run(name string, args ...string) (string, int, error) {
	var out []byte
	var err error
	nsErr := inNetns(b.opts.Netns, func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.CmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.WaitDelay = 2 * time.Second
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		// The child is forked by this thread and so starts in its namespace.
		err = cmd.Run()
		out = buf.Bytes()
	})
	if nsErr != nil {
		return "", -1, nsErr
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return strings.TrimSpace(string(out)), code, err
}

// inNetns runs fn on a fresh OS thread switched into ns (when ns is set), so that
// processes it starts are born there. The calling goroutine's thread is untouched.
func inNetns(ns netns.NsHandle, fn func()) error {
	if ns <= 0 {
		fn()
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("ipset: current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("ipset: enter netns: %w", err)
			return
		}
		fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine rather than
			// serving others from the wrong namespace.
			errc <- nil
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// entry canonicalises a prefix (IPv4-mapped becomes IPv4, host bits cleared) and
// builds its element and picks its set. hash:net takes prefix lengths
// 1-32 (IPv4) and 1-128 (IPv6).
func (b *Backend) entry(p netip.Prefix) (string, *netlink.IPSetEntry, netip.Prefix, error) {
	q, err := netaddr.BanPrefix(p)
	if err != nil {
		return "", nil, p, err
	}
	set := b.opts.Set6
	if q.Addr().Is4() {
		set = b.opts.Set4
	}
	// Replace (no NLM_F_EXCL) sets IPSET_FLAG_EXIST: an add re-adds (renewing the
	// timeout), a delete of an absent element succeeds.
	return set, &netlink.IPSetEntry{IP: net.IP(q.Addr().AsSlice()), CIDR: uint8(q.Bits()), Replace: true}, q, nil
}

// seconds is an element timeout: d rounded up to seconds; 0 (permanent) for 0 and
// for anything past MaxTimeout, which the kernel would clamp.
func seconds(d time.Duration) uint32 {
	if d <= 0 || d > MaxTimeout {
		return 0
	}
	return uint32((d + time.Second - 1) / time.Second)
}

// Apply adds or renews each ban with its timeout (0: permanent).
func (b *Backend) Apply(bans []respond.Ban) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return errors.New("ipset apply: backend closed")
	}
	el := respond.ErrorList{Backend: "ipset", Op: "apply"}
	b.add(bans, &el)
	return el.Err()
}

// add adds or renews bans and returns how many it added.
func (b *Backend) add(bans []respond.Ban, el *respond.ErrorList) int {
	n := 0
	for _, ban := range bans {
		set, e, q, err := b.entry(ban.Prefix)
		if err != nil {
			el.Add(err)
			continue
		}
		if ban.Timeout > MaxTimeout {
			b.log.Debug("ipset: ban longer than the kernel keeps; added as permanent until Expire", "prefix", q, "timeout", ban.Timeout)
		}
		t := seconds(ban.Timeout)
		e.Timeout = &t
		if err := nlcall(func() error { return b.h.IpsetAdd(set, e) }); err != nil {
			el.Add(fmt.Errorf("add %v to %s: %w", q, set, err))
			continue
		}
		n++
	}
	return n
}

// Revoke deletes bans early; absent ones (or an absent set) are not an error.
func (b *Backend) Revoke(prefixes []netip.Prefix) error { return b.del("revoke", prefixes) }

// Expire deletes bans that ran out. The kernel expires timed elements by itself;
// this removes the permanent ones a too-long timeout became, and anything the
// journal says is over.
func (b *Backend) Expire(prefixes []netip.Prefix) error { return b.del("expire", prefixes) }

func (b *Backend) del(what string, prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return fmt.Errorf("ipset %s: backend closed", what)
	}
	el := respond.ErrorList{Backend: "ipset", Op: what}
	b.remove(prefixes, &el)
	return el.Err()
}

// remove deletes elements and returns how many deletions succeeded (an absent
// element succeeds too).
func (b *Backend) remove(prefixes []netip.Prefix, el *respond.ErrorList) int {
	n := 0
	for _, p := range prefixes {
		set, e, q, err := b.entry(p)
		if err != nil {
			el.Add(err)
			continue
		}
		err = nlcall(func() error { return b.h.IpsetDel(set, e) })
		if err != nil && !isErrno(err, nl.IPSET_ERR_EXIST) && !isErrno(err, uintptr(unix.ENOENT)) {
			el.Add(fmt.Errorf("delete %v from %s: %w", q, set, err))
			continue
		}
		n++
	}
	return n
}

// Reconcile makes the system hold exactly want (the journal's active bans with their
// remaining time): the sets and rules are restored if gone, missing elements added
// with their timeouts, elements that would end sooner than their ban renewed (both
// count as restored), elements want lacks deleted. An element that outlives its ban
// is left for Expire.
func (b *Backend) Reconcile(want []respond.Ban) (respond.Repair, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return respond.Repair{}, errors.New("ipset reconcile: backend closed")
	}
	left := map[netip.Prefix]time.Duration{} // each element's time left
	for _, f := range b.families() {
		res, err := b.restore(f)
		if err != nil {
			return respond.Repair{}, err
		}
		for _, e := range entries(f, res) {
			left[e.Prefix] = e.Timeout
		}
	}
	el := respond.ErrorList{Backend: "ipset", Op: "reconcile"}
	canon := make([]respond.Ban, 0, len(want))
	var short []respond.Ban
	for _, ban := range want {
		_, _, q, err := b.entry(ban.Prefix)
		if err != nil {
			el.Add(err)
			continue
		}
		ban.Prefix = q
		canon = append(canon, ban)
		if t, ok := left[q]; ok && endsSooner(t, ban.Timeout) {
			short = append(short, ban)
		}
	}
	missing, extra := respond.Diff(canon, slices.Collect(maps.Keys(left)))
	rep := respond.Repair{Restored: b.add(append(missing, short...), &el), Removed: b.remove(extra, &el)}
	if rep.Changed() {
		b.log.Info("ipset: sets repaired", "sets", b.opts.Set4+","+b.opts.Set6, "restored", rep.Restored, "removed", rep.Removed)
	}
	return rep, el.Err()
}

// endsSooner reports whether an element with time left (0: permanent) ends more than
// respond.Grace before a ban with that much left (0: permanent) would: set by hand, or
// a renewal that did not reach the kernel.
func endsSooner(left, ban time.Duration) bool {
	if left == 0 {
		return false
	}
	return seconds(ban) == 0 || left < ban-respond.Grace
}

// List returns the elements of both sets with the time they have left.
func (b *Backend) List() ([]Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil, errors.New("ipset list: backend closed")
	}
	var out []Entry
	for _, f := range b.families() {
		res, err := b.listSet(f)
		if err != nil {
			return nil, err
		}
		out = append(out, entries(f, res)...)
	}
	return out, nil
}

// entries are the elements of one set's listing.
func entries(f family, res *netlink.IPSetResult) []Entry {
	var out []Entry
	for _, e := range res.Entries {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		if !f.v6 {
			a = a.Unmap()
		}
		bits := int(e.CIDR)
		if bits == 0 {
			bits = a.BitLen()
		}
		en := Entry{Prefix: netip.PrefixFrom(a, bits)}
		if e.Timeout != nil {
			en.Timeout = time.Duration(*e.Timeout) * time.Second
		}
		out = append(out, en)
	}
	return out
}

// Teardown removes the rules (every copy) and destroys the sets.
func (b *Backend) Teardown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return errors.New("ipset teardown: backend closed")
	}
	var errs []error
	for _, f := range b.families() {
		if _, err := exec.LookPath(f.cmd); err != nil {
			errs = append(errs, err)
			continue
		}
		for range 100 {
			ok, err := b.hasRule(f)
			if err != nil {
				errs = append(errs, err)
			}
			if !ok || err != nil {
				break
			}
			if out, _, err := b.run(f.cmd, b.ruleArgs(f, "-D")...); err != nil {
				errs = append(errs, fmt.Errorf("%s -D: %w: %s", f.cmd, err, out))
				break
			}
		}
	}
	for _, f := range b.families() {
		var err error
		// A set is busy while a rule references it; releasing the reference may
		// lag the rule's deletion a little.
		for i := range 50 {
			err = nlcall(func() error { return b.h.IpsetDestroy(f.set) })
			if err == nil || isErrno(err, uintptr(unix.ENOENT)) {
				err = nil
				break
			}
			if !isErrno(err, nl.IPSET_ERR_BUSY) || i == 49 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("destroy %s: %w", f.set, err))
		}
	}
	b.refs = [2]int{-1, -1}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipset teardown: %w", err)
	}
	return nil
}

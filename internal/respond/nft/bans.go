package nft

import (
	"errors"
	"fmt"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Kernel behaviour this file is built on (measured on 6.18; the tests pin it down):
//   - NEWSETELEM without NLM_F_EXCL for an element already there is not an error. On
//     6.10+ it updates the element: the timeout when it differs, the expiry when the
//     message carries NFTA_SET_ELEM_EXPIRATION (which we always send). Older kernels
//     leave the element as it is; Setup probes which kind this is (canUpdate).
//   - An interval set refuses an element that overlaps another one (a /128 inside a
//     stored /64, a /48 around it) with EEXIST, NLM_F_EXCL or not, and the whole
//     transaction fails. Apply never sends overlapping prefixes: see plan.
//   - DELSETELEM of an absent element, or of one that has expired but is not reaped
//     yet, fails with ENOENT and aborts the transaction. DESTROYSETELEM would not, but
//     it corrupts interval sets (rawtx.go), so remove skips absent ones by bisection.

// resolve normalises bans; the same prefix twice keeps the later timeout (bans apply
// in order).
func resolve(bans []Ban) ([]Ban, error) {
	byPrefix := make(map[netip.Prefix]int, len(bans))
	out := make([]Ban, 0, len(bans))
	for _, ban := range bans {
		p, err := netaddr.BanPrefix(ban.Prefix)
		if err != nil {
			return nil, err
		}
		if ban.Timeout < 0 {
			return nil, fmt.Errorf("ban %v: negative timeout %v", p, ban.Timeout)
		}
		if ban.Timeout > maxTimeout {
			return nil, fmt.Errorf("ban %v: timeout %v too long (use 0 for permanent)", p, ban.Timeout)
		}
		if ban.Timeout > 0 && ban.Timeout < time.Millisecond {
			ban.Timeout = time.Millisecond // the kernel counts in milliseconds
		}
		if i, ok := byPrefix[p]; ok {
			out[i].Timeout = ban.Timeout
			continue
		}
		byPrefix[p] = len(out)
		out = append(out, Ban{Prefix: p, Timeout: ban.Timeout})
	}
	return out, nil
}

// Apply bans every prefix for its duration, committing at most BatchSize bans per
// transaction. A prefix already banned is set anew: its timeout restarts with the new
// duration (permanent or not). Bans of different lengths are independent, whether or
// not they overlap: each is its own element in the set for its length, and ends when
// its own timeout does. Setup runs first if it has not yet, and again if the table or
// one of its sets has vanished (`nft flush ruleset`, as the nftables service does on
// reload). When a transaction fails, the bans committed by the earlier ones stay.
func (b *Backend) Apply(bans []Ban) error {
	bans, err := resolve(bans)
	if err != nil {
		return fmt.Errorf("nftables apply: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if need := setsFor(bans); b.canUpdate == probeUnknown || len(b.missingSets(need)) > 0 {
		if _, err := b.setup(need); err != nil {
			return err
		}
	}
	// The kernel's view, when needed: read once and reused by later chunks, which
	// are disjoint from earlier ones; a stale view only costs a retry.
	var stored map[string][]decoded
	if b.canUpdate == probeNo {
		if stored, err = b.readStored(); err != nil {
			return err
		}
	}
	for chunk := range slices.Chunk(bans, b.opts.BatchSize) {
		if err := b.applyChunk(chunk, stored); err != nil {
			return err
		}
	}
	if b.opts.Verify {
		return b.verify(bans)
	}
	return nil
}

// applyChunk commits one chunk. On kernels that update elements in place the fast
// path is a plain add; stored (the kernel's view) is nil then. The view is read again
// after a transaction failed on an overlap (EEXIST: a range in one of our sets that
// we did not put there) or on something missing (ENOENT: the table or a set was
// removed, or an element to delete expired in between).
func (b *Backend) applyChunk(chunk []Ban, stored map[string][]decoded) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = b.commit(b.plan(chunk, stored))
		if err == nil {
			return nil
		}
		if attempt == 3 {
			break
		}
		switch {
		case errors.Is(err, unix.ENOENT):
			// Perhaps the table or a set is gone: Setup is idempotent and cheap when not.
			changed, serr := b.setup(setsFor(chunk))
			if serr != nil {
				return serr
			}
			if changed {
				b.log.Warn("nftables: the table or its sets were missing and have been recreated", "table", "inet "+b.opts.Table)
			}
		case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		default:
			return fmt.Errorf("nftables apply (table inet %s): %w", b.opts.Table, err)
		}
		if stored, err = b.readStored(); err != nil {
			return err
		}
	}
	return fmt.Errorf("nftables apply (table inet %s): %w", b.opts.Table, err)
}

// kernelSets lists our sets as the kernel holds them now, sorted.
func (b *Backend) kernelSets() ([]string, error) {
	ss, err := b.conn.GetSets(b.table)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // no table
	}
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets of table inet %s: %w", b.opts.Table, err)
	}
	var out []string
	for _, s := range ss {
		if _, _, ours := parseSetName(s.Name); ours {
			out = append(out, s.Name)
		}
	}
	slices.SortFunc(out, cmpSets)
	return out, nil
}

// readStored reads our sets, each sorted by address, leaving out expired ranges.
func (b *Backend) readStored() (map[string][]decoded, error) {
	names, err := b.kernelSets()
	if err != nil {
		return nil, err
	}
	out := map[string][]decoded{}
	for _, name := range names {
		rs, err := b.rawList(name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile: nothing stored; the transaction will recreate it
			}
			return nil, fmt.Errorf("nftables: list set %s: %w", name, err)
		}
		for _, r := range rs {
			if r.timeout == 0 || r.expires > 0 {
				out[name] = append(out[name], r)
			}
		}
	}
	return out, nil
}

// overlapping returns the stored ranges (sorted, disjoint) that overlap p.
func overlapping(rs []decoded, p netip.Prefix) []decoded {
	first, last := p.Addr(), lastAddr(p)
	// The first range starting after last; the ones before it may overlap.
	i, _ := slices.BinarySearchFunc(rs, last, func(r decoded, a netip.Addr) int {
		if r.start.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	var out []decoded
	for j := i - 1; j >= 0; j-- {
		if rs[j].end.IsValid() && rs[j].end.Compare(first) <= 0 {
			break // ends before p: so do all earlier ones
		}
		out = append(out, rs[j])
	}
	return out
}

// is reports whether the range r is exactly the prefix p.
func (r decoded) is(p netip.Prefix) bool {
	ps := prefixes(r.start, r.end)
	return len(ps) == 1 && ps[0] == p
}

// plan builds the transaction for a chunk. Without stored (nil) it is a plain add.
// With the kernel's view it first deletes, in the same transaction, every stored
// range the ban overlaps in its set: one that is not exactly the ban (only a range we
// did not add can overlap a ban of the same length), and, on kernels that cannot
// update elements, the ban itself, so that it comes back with the new timeout.
func (b *Backend) plan(chunk []Ban, stored map[string][]decoded) *tx {
	t := &tx{table: b.opts.Table}
	add := map[string][]elem{}
	del := map[string][]elem{}
	deleted := map[string]map[netip.Addr]bool{} // by set and start: each range once
	for _, ban := range chunk {
		name := setName(ban.Prefix)
		add[name] = append(add[name], elemsOf(ban.Prefix, ban.Timeout)...)
		for _, r := range overlapping(stored[name], ban.Prefix) {
			if r.is(ban.Prefix) && b.canUpdate == probeYes {
				continue // re-add: the kernel updates it in place
			}
			if deleted[name] == nil {
				deleted[name] = map[netip.Addr]bool{}
			}
			if !deleted[name][r.start] {
				deleted[name][r.start] = true
				del[name] = append(del[name], rangeElems(r)...)
			}
		}
	}
	names := setsFor(chunk)
	for _, name := range names {
		t.del(name, del[name])
	}
	for _, name := range names {
		t.add(name, add[name])
	}
	return t
}

// verify checks that every prefix of bans is a range the kernel holds.
func (b *Backend) verify(bans []Ban) error {
	var missing []netip.Prefix
	for _, name := range setsFor(bans) {
		rs, err := b.rawList(name)
		if err != nil {
			return fmt.Errorf("nftables verify: list set %s: %w", name, err)
		}
		for _, ban := range bans {
			if setName(ban.Prefix) != name {
				continue
			}
			i, found := slices.BinarySearchFunc(rs, ban.Prefix.Addr(), func(r decoded, a netip.Addr) int {
				return r.start.Compare(a)
			})
			if !found || !rs[i].is(ban.Prefix) {
				missing = append(missing, ban.Prefix)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("nftables verify: %d of %d bans not in the kernel after a successful commit (first: %v)",
			len(missing), len(bans), missing[0])
	}
	return nil
}

// Revoke lifts the bans on the given prefixes, exactly (a host inside a banned network
// stays blocked by the network's ban, and a network's ban leaves the hosts' inside it). Prefixes that are not banned,
// or whose ban has just expired, are not an error.
func (b *Backend) Revoke(prefixes []netip.Prefix) error {
	seen := map[netip.Prefix]bool{}
	var ps []netip.Prefix
	for _, p := range prefixes {
		q, err := netaddr.BanPrefix(p)
		if err != nil {
			return fmt.Errorf("nftables revoke: %w", err)
		}
		if !seen[q] {
			seen[q] = true
			ps = append(ps, q)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for chunk := range slices.Chunk(ps, b.opts.BatchSize) {
		if err := b.remove(chunk); err != nil {
			return fmt.Errorf("nftables revoke (table inet %s): %w", b.opts.Table, err)
		}
	}
	return nil
}

// stored is one range of one of our sets, to delete.
type stored struct {
	set string
	r   decoded
}

// storedOf is the range prefix p is stored as.
func storedOf(p netip.Prefix) stored {
	r := decoded{start: p.Addr()}
	if next := lastAddr(p).Next(); next.IsValid() {
		r.end = next
	}
	return stored{set: setName(p), r: r}
}

// remove deletes the prefixes' elements; see removeRanges.
func (b *Backend) remove(ps []netip.Prefix) error {
	rs := make([]stored, len(ps))
	for i, p := range ps {
		rs[i] = storedOf(p)
	}
	return b.removeRanges(rs)
}

// removeRanges deletes the ranges in one transaction. DELSETELEM fails the whole
// transaction when one element is absent or expired (ENOENT), so then the list is
// split in halves, recursively, until the absent ones stand alone and are skipped:
// k absent ranges cost about 2k·log2(n/k) extra transactions, and a transaction never
// removes half an interval.
func (b *Backend) removeRanges(rs []stored) error {
	if len(rs) == 0 {
		return nil
	}
	t := &tx{table: b.opts.Table}
	byset := map[string][]elem{}
	var names []string
	for _, s := range rs {
		if byset[s.set] == nil {
			names = append(names, s.set)
		}
		byset[s.set] = append(byset[s.set], rangeElems(s.r)...)
	}
	for _, name := range names {
		t.del(name, byset[name])
	}
	err := b.commit(t)
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if len(rs) == 1 {
		return nil // not there (or expired): what removing asked for
	}
	if err := b.removeRanges(rs[:len(rs)/2]); err != nil {
		return err
	}
	return b.removeRanges(rs[len(rs)/2:])
}

// probeUpdate finds out whether re-adding an element restarts its timeout (kernel
// 6.10+). It adds 255.255.255.255 (never a real source address) to ban4 with a 1 h
// timeout, re-adds it with a 2 h expiry, reads it back and deletes it.
func (b *Backend) probeUpdate() error {
	probe := netip.MustParsePrefix("255.255.255.255/32")
	t := &tx{table: b.opts.Table}
	t.add(set4, elemsOf(probe, time.Hour))
	if err := b.commit(t); err != nil {
		return fmt.Errorf("nftables: probe: %w", err)
	}
	t = &tx{table: b.opts.Table}
	t.add(set4, []elem{{key: probe.Addr().AsSlice(), timeout: 2 * time.Hour}})
	err := b.commit(t)
	var expires time.Duration
	if err == nil {
		var els []nftables.SetElement
		els, err = b.conn.FindSetElements(b.set(set4), []nftables.SetElement{{Key: probe.Addr().AsSlice()}})
		for _, e := range els {
			if !e.IntervalEnd {
				expires = e.Expires
			}
		}
	}
	t = &tx{table: b.opts.Table}
	t.del(set4, elemsOf(probe, 0))
	if derr := b.commit(t); derr != nil && !errors.Is(derr, unix.ENOENT) && err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("nftables: probe: %w", err)
	}
	if expires > time.Hour+time.Minute {
		b.canUpdate = probeYes
	} else {
		b.canUpdate = probeNo
		b.log.Warn("nftables: this kernel cannot update set elements (before 6.10): a re-added ban is deleted and added again, which needs a read of the sets")
	}
	return nil
}

func (b *Backend) rawList(name string) ([]decoded, error) {
	els, err := b.conn.GetSetElements(b.set(name))
	if err != nil {
		return nil, err
	}
	return ranges(els)
}

// List returns the bans the kernel holds, sorted by address (a network before the
// hosts inside it), each with its timeout and the time it has left (Expires; both 0
// for a permanent ban). Expired elements the kernel has not reaped yet are left out.
func (b *Backend) List() ([]Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	stored, err := b.readStored()
	if err != nil {
		return nil, fmt.Errorf("nftables list: %w", err)
	}
	var out []Element
	for _, rs := range stored {
		for _, r := range rs {
			for _, p := range prefixes(r.start, r.end) {
				out = append(out, Element{Prefix: p, Timeout: r.timeout, Expires: r.expires})
			}
		}
	}
	slices.SortFunc(out, func(x, y Element) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return x.Prefix.Bits() - y.Prefix.Bits()
	})
	return out, nil
}

// Count returns how many ranges (bans) the IPv4 and the IPv6 sets hold.
func (b *Backend) Count() (v4, v6 int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	stored, err := b.readStored()
	if err != nil {
		return 0, 0, fmt.Errorf("nftables count: %w", err)
	}
	for name, rs := range stored {
		if is6, _, _ := parseSetName(name); is6 {
			v6 += len(rs)
		} else {
			v4 += len(rs)
		}
	}
	return v4, v6, nil
}

// Flush empties all our sets, in one transaction.
func (b *Backend) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	names, err := b.kernelSets()
	if err != nil {
		return err
	}
	for _, name := range names {
		b.conn.FlushSet(b.set(name))
	}
	return b.flush("flush")
}

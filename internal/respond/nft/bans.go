package nft

import (
	"errors"
	"fmt"
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

// longer is the longer of two ban durations, where 0 is permanent.
func longer(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

func cmpBan(x, y Ban) int {
	if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
		return c
	}
	return x.Prefix.Bits() - y.Prefix.Bits()
}

// merge makes bans non-overlapping: a prefix inside (or equal to) another one is
// folded into the wider one, which gets the longer of the durations.
func merge(bans []Ban) []Ban {
	sorted := slices.Clone(bans)
	slices.SortFunc(sorted, cmpBan)
	// Sorted by address, then widest first: every prefix nested in a kept one follows
	// it directly, until the first prefix outside it.
	out := sorted[:0]
	for _, ban := range sorted {
		if n := len(out); n > 0 && out[n-1].Prefix.Overlaps(ban.Prefix) {
			out[n-1].Timeout = longer(out[n-1].Timeout, ban.Timeout)
			continue
		}
		out = append(out, ban)
	}
	return out
}

// resolve normalises bans and makes them non-overlapping: the same prefix twice keeps
// the later timeout (bans apply in order); a prefix inside another one in the list is
// folded into the wider prefix, which gets the longer of the two durations.
func resolve(bans []Ban) ([]Ban, error) {
	byPrefix := make(map[netip.Prefix]int, len(bans))
	out := make([]Ban, 0, len(bans))
	for _, ban := range bans {
		p, err := normalize(ban.Prefix)
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
	merged := merge(out)
	if len(merged) == len(out) {
		return out, nil // keep the caller's order when nothing was folded
	}
	return merged, nil
}

// Apply bans every prefix for its duration, committing at most BatchSize bans per
// transaction. A prefix already banned is set anew: its timeout restarts with the new
// duration (permanent or not). Overlapping bans are folded together, within the list
// and against what the kernel holds: the wider prefix stays, with the longer duration.
// Setup runs first if it has not yet, and again if the table or its sets have
// vanished (`nft flush ruleset`, as the nftables service does on reload).
// When a transaction fails, the bans committed by the earlier ones stay.
func (b *Backend) Apply(bans []Ban) error {
	bans, err := resolve(bans)
	if err != nil {
		return fmt.Errorf("nftables apply: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.canUpdate == probeUnknown {
		if _, err := b.setup(); err != nil {
			return err
		}
	}
	// The kernel's view, when needed: read once and reused by later chunks, which
	// are disjoint from earlier ones; a stale view only costs a retry.
	var stored map[string][]storedRange
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
// after a transaction failed on an overlap (EEXIST) or on something missing (ENOENT:
// the table was removed, or an element to delete expired in between).
func (b *Backend) applyChunk(chunk []Ban, stored map[string][]storedRange) error {
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
			// Perhaps the table is gone: Setup is idempotent and cheap when it is not.
			changed, serr := b.setup()
			if serr != nil {
				return serr
			}
			if changed {
				b.log.Warn("nftables: the table or its sets were missing and have been recreated; earlier bans are gone from the kernel until replayed",
					"table", "inet "+b.opts.Table)
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

// storedRange is one range the kernel holds: its elements (to delete it) and the
// prefixes it consists of, each with the time the range has left (0 = permanent).
type storedRange struct {
	r      decoded
	pieces []Ban
}

// readStored reads both sets, sorted by address, leaving out expired ranges.
func (b *Backend) readStored() (map[string][]storedRange, error) {
	out := map[string][]storedRange{}
	for _, name := range []string{set4, set6} {
		rs, err := b.rawList(name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // no set: nothing stored; the transaction will recreate it
			}
			return nil, fmt.Errorf("nftables: list set %s: %w", name, err)
		}
		for _, r := range rs {
			remaining := r.expires
			if r.timeout == 0 {
				remaining = 0
			} else if remaining <= 0 {
				continue
			}
			sr := storedRange{r: r}
			for _, p := range prefixes(r.start, r.end) {
				sr.pieces = append(sr.pieces, Ban{Prefix: p, Timeout: remaining})
			}
			out[name] = append(out[name], sr)
		}
	}
	return out, nil
}

// overlapping returns the stored ranges (sorted, disjoint) that overlap p.
func overlapping(rs []storedRange, p netip.Prefix) []storedRange {
	first, last := p.Addr(), lastAddr(p)
	// The first range starting after last; the ones before it may overlap.
	i, _ := slices.BinarySearchFunc(rs, last, func(s storedRange, a netip.Addr) int {
		if s.r.start.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	var out []storedRange
	for j := i - 1; j >= 0; j-- {
		r := rs[j].r
		if r.end.IsValid() && r.end.Compare(first) <= 0 {
			break // ends before p: so do all earlier ones
		}
		out = append(out, rs[j])
	}
	return out
}

// plan builds the transaction for a chunk. Without stored (nil) it is a plain add.
// With the kernel's view it also folds each ban with the stored ranges it overlaps:
// a stored range inside the ban is deleted and its remaining time counts; a stored
// prefix around the ban takes the ban's place. A stored range that is not a single
// prefix (not ours) and overlaps a ban is replaced by its prefixes. And on kernels
// that cannot update elements, a stored ban being re-added is deleted first, in the
// same transaction, so that it comes back with the new timeout.
func (b *Backend) plan(chunk []Ban, stored map[string][]storedRange) *tx {
	t := &tx{table: b.opts.Table}
	if stored == nil {
		byset := map[string][]elem{}
		for _, ban := range chunk {
			name := setFor(ban.Prefix)
			byset[name] = append(byset[name], elemsOf(ban.Prefix, ban.Timeout)...)
		}
		for _, name := range []string{set4, set6} {
			t.add(name, byset[name])
		}
		return t
	}
	var add []Ban
	del := map[string][]decoded{}
	deleted := map[netip.Addr]bool{} // by start address: each range at most once
	for _, ban := range chunk {
		name := setFor(ban.Prefix)
		for _, sr := range overlapping(stored[name], ban.Prefix) {
			exact := len(sr.pieces) == 1
			if exact && sr.pieces[0].Prefix == ban.Prefix && b.canUpdate == probeYes {
				continue // re-add: the kernel updates it in place
			}
			if !deleted[sr.r.start] {
				deleted[sr.r.start] = true
				del[name] = append(del[name], sr.r)
				for _, piece := range sr.pieces {
					if !piece.Prefix.Overlaps(ban.Prefix) {
						add = append(add, piece) // the rest of a foreign range
					}
				}
			}
			for _, piece := range sr.pieces {
				if !piece.Prefix.Overlaps(ban.Prefix) {
					continue
				}
				if piece.Prefix.Bits() < ban.Prefix.Bits() {
					b.log.Info("nftables: ban folded into a wider stored ban", "ban", ban.Prefix, "into", piece.Prefix)
					ban.Prefix = piece.Prefix
				} else if piece.Prefix != ban.Prefix {
					b.log.Info("nftables: stored ban folded into a wider new ban", "stored", piece.Prefix, "into", ban.Prefix)
				}
				if piece.Prefix != ban.Prefix || !exact {
					ban.Timeout = longer(ban.Timeout, piece.Timeout)
				}
			}
		}
		add = append(add, ban)
	}
	for _, name := range []string{set4, set6} {
		var els []elem
		for _, r := range del[name] {
			els = append(els, rangeElems(r)...)
		}
		t.del(name, els)
	}
	byset := map[string][]elem{}
	for _, ban := range merge(add) {
		name := setFor(ban.Prefix)
		byset[name] = append(byset[name], elemsOf(ban.Prefix, ban.Timeout)...)
	}
	for _, name := range []string{set4, set6} {
		t.add(name, byset[name])
	}
	return t
}

// verify checks that every prefix of bans lies in a range the kernel holds.
func (b *Backend) verify(bans []Ban) error {
	var missing []netip.Prefix
	for _, name := range []string{set4, set6} {
		rs, err := b.rawList(name)
		if err != nil {
			return fmt.Errorf("nftables verify: list set %s: %w", name, err)
		}
		for _, ban := range bans {
			if setFor(ban.Prefix) != name {
				continue
			}
			first, last := ban.Prefix.Addr(), lastAddr(ban.Prefix)
			i, _ := slices.BinarySearchFunc(rs, first, func(r decoded, a netip.Addr) int {
				return r.start.Compare(a)
			})
			// The range holding first starts at or before it.
			if i == len(rs) || rs[i].start != first {
				i--
			}
			if i < 0 || (rs[i].end.IsValid() && rs[i].end.Compare(last) <= 0) {
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

// Revoke lifts the bans on the given prefixes, exactly as stored (a host inside a
// banned network stays blocked by the network's ban). Prefixes that are not banned,
// or whose ban has just expired, are not an error.
func (b *Backend) Revoke(prefixes []netip.Prefix) error {
	seen := map[netip.Prefix]bool{}
	var ps []netip.Prefix
	for _, p := range prefixes {
		q, err := normalize(p)
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

// remove deletes the prefixes' elements in one transaction. DELSETELEM fails the
// whole transaction when one element is absent or expired (ENOENT), so then the
// list is split in halves, recursively, until the absent ones stand alone and are
// skipped: k absent prefixes cost about 2k·log2(n/k) extra transactions, and a
// transaction never removes half an interval.
func (b *Backend) remove(ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	t := &tx{table: b.opts.Table}
	byset := map[string][]elem{}
	for _, p := range ps {
		byset[setFor(p)] = append(byset[setFor(p)], elemsOf(p, 0)...)
	}
	for _, name := range []string{set4, set6} {
		t.del(name, byset[name])
	}
	err := b.commit(t)
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if len(ps) == 1 {
		return nil // not there (or expired): what revoking asked for
	}
	if err := b.remove(ps[:len(ps)/2]); err != nil {
		return err
	}
	return b.remove(ps[len(ps)/2:])
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

// List returns the bans the kernel holds, sorted by address, each with its timeout
// and the time it has left (Expires; both 0 for a permanent ban). Expired elements
// the kernel has not reaped yet are left out.
func (b *Backend) List() ([]Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Element
	for _, name := range []string{set4, set6} {
		rs, err := b.rawList(name)
		if err != nil {
			return nil, fmt.Errorf("nftables list set %s: %w", name, err)
		}
		for _, r := range rs {
			if r.timeout > 0 && r.expires <= 0 {
				continue
			}
			for _, p := range prefixes(r.start, r.end) {
				out = append(out, Element{Prefix: p, Timeout: r.timeout, Expires: r.expires})
			}
		}
	}
	return out, nil
}

// Count returns how many ranges (bans) each set holds.
func (b *Backend) Count() (v4, v6 int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r4, err := b.rawList(set4)
	if err != nil {
		return 0, 0, fmt.Errorf("nftables count: %w", err)
	}
	r6, err := b.rawList(set6)
	if err != nil {
		return 0, 0, fmt.Errorf("nftables count: %w", err)
	}
	return len(r4), len(r6), nil
}

// Flush empties both sets, in one transaction.
func (b *Backend) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conn.FlushSet(b.set(set4))
	b.conn.FlushSet(b.set(set6))
	return b.flush("flush")
}

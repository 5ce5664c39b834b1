package nft

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/portsentry-go/portsentry/internal/respond"
)

// Reconcile makes the kernel hold exactly want, the bans the journal holds with the
// time each has left: it puts back the table, chains, rules and sets if they are gone
// or changed (`nft flush ruleset`, `nft delete table`), restores every ban that is
// missing or whose element no longer ends when the ban does, and deletes from our sets
// every range that is not one of want's bans. It touches nothing outside the table.
func (b *Backend) Reconcile(want []Ban) (respond.Repair, error) {
	want, err := resolve(want)
	if err != nil {
		return respond.Repair{}, fmt.Errorf("nftables reconcile: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	changed, err := b.setup(setsFor(want))
	if err != nil {
		return respond.Repair{}, err
	}
	if changed {
		b.log.Warn("nftables: the table, its chains, rules or sets were missing or altered and have been put back", "table", "inet "+b.opts.Table)
	}
	kernel, err := b.readStored()
	if err != nil {
		return respond.Repair{}, err
	}
	held, drop, removed := b.compare(want, kernel)
	missing, _ := respond.Diff(want, held)
	if err := b.removeRanges(drop); err != nil {
		return respond.Repair{}, fmt.Errorf("nftables reconcile (table inet %s): %w", b.opts.Table, err)
	}
	for chunk := range slices.Chunk(missing, b.opts.BatchSize) {
		if err := b.applyChunk(chunk, nil); err != nil {
			return respond.Repair{Removed: removed}, err
		}
	}
	return respond.Repair{Restored: len(missing), Removed: removed}, nil
}

// compare sorts the kernel's ranges: held are want's bans the kernel holds as they
// should be; drop are the ranges to delete: those that are no ban of want (removed
// counts them), and those of want's bans that end at another time than the ban, which
// are then added again.
func (b *Backend) compare(want []Ban, kernel map[string][]decoded) (held []netip.Prefix, drop []stored, removed int) {
	wanted := make(map[netip.Prefix]Ban, len(want))
	for _, w := range want {
		wanted[w.Prefix] = w
	}
	for name, rs := range kernel {
		_, bits, _ := parseSetName(name)
		for _, r := range rs {
			ps := prefixes(r.start, r.end)
			if len(ps) == 1 && ps[0].Bits() == bits {
				if w, ok := wanted[ps[0]]; ok {
					if endsWith(r, w) {
						held = append(held, ps[0])
					} else {
						drop = append(drop, stored{set: name, r: r})
					}
					continue
				}
			}
			drop = append(drop, stored{set: name, r: r})
			removed++
		}
	}
	return held, drop, removed
}

// endsWith reports whether the kernel's range r ends when ban w does: both permanent,
// or both timed and within respond.Grace of each other.
func endsWith(r decoded, w Ban) bool {
	if r.timeout == 0 || w.Timeout == 0 {
		return r.timeout == 0 && w.Timeout == 0
	}
	d := r.expires - w.Timeout
	return -respond.Grace <= d && d <= respond.Grace
}

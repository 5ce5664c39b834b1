package respond

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Ban is a ban as a native blocking backend sees it (the contract they fulfil is
// bans.Backend, declared where it is used).
type Ban struct {
	Prefix  netip.Prefix
	Timeout time.Duration // 0: permanent
}

// ErrorList collects the per-prefix errors of one backend operation, keeping the first
// few, so a batch with many failures gives one readable error.
type ErrorList struct {
	Backend, Op string
	errs        []error
	n           int
}

// Add records one failure.
func (e *ErrorList) Add(err error) {
	e.n++
	if len(e.errs) < 5 {
		e.errs = append(e.errs, err)
	}
}

// Err is nil without failures, else "BACKEND OP: N failed: first errors".
func (e *ErrorList) Err() error {
	if e.n == 0 {
		return nil
	}
	err := errors.Join(e.errs...)
	if e.n > len(e.errs) {
		err = errors.Join(err, fmt.Errorf("and %d more", e.n-len(e.errs)))
	}
	return fmt.Errorf("%s %s: %d failed: %w", e.Backend, e.Op, e.n, err)
}

// Grace is how close to its end a ban may be and still not be restored when the system
// no longer holds it: the kernel expires bans by its own clock, a moment before the
// journal records the expiry, and that is not a repair.
const Grace = 2 * time.Second

// Repair is what one reconciliation changed in the system.
type Repair struct {
	Restored int // bans the journal holds that were missing, put back
	Removed  int // entries of ours the journal does not hold, taken out
}

// Changed reports whether anything was repaired.
func (r Repair) Changed() bool { return r.Restored+r.Removed > 0 }

// Diff compares the bans the journal holds (want) with the prefixes a backend's own
// entries hold (held): missing are the bans to put back (leaving out those within
// Grace of their end), extra the entries to take out.
func Diff(want []Ban, held []netip.Prefix) (missing []Ban, extra []netip.Prefix) {
	has := make(map[netip.Prefix]bool, len(held))
	for _, p := range held {
		has[p.Masked()] = true
	}
	wanted := make(map[netip.Prefix]bool, len(want))
	for _, b := range want {
		p := b.Prefix.Masked()
		wanted[p] = true
		if !has[p] && (b.Timeout == 0 || b.Timeout > Grace) {
			missing = append(missing, b)
		}
	}
	for _, p := range held {
		if !wanted[p.Masked()] {
			extra = append(extra, p)
		}
	}
	return missing, extra
}

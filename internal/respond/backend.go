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

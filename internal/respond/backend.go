package respond

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Ban is a ban as a native blocking backend sees it.
type Ban struct {
	Prefix  netip.Prefix
	Timeout time.Duration // 0: permanent
}

// Backend is a native blocking backend (nftables, routes, ipset, hosts.deny). The ban
// journal decides what is banned; a backend only mirrors it into the system.
type Backend interface {
	// Name is what the logs and `portsentry status` call it.
	Name() string
	// Setup prepares the system (tables, sets, rules) idempotently.
	Setup() error
	// Apply adds or renews bans; the backend expires them itself where it can.
	Apply([]Ban) error
	// Revoke lifts bans early; prefixes not present are not an error.
	Revoke([]netip.Prefix) error
	// Expire removes bans that ran out, for backends the kernel cannot expire.
	Expire([]netip.Prefix) error
	Close() error
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

package respond

import (
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

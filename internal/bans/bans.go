// Package bans keeps the ban journal: the one record of which hosts are banned, why and
// until when. Every ban, unban and expiry is appended to a file as one JSON line, so the
// active set can be rebuilt at start by replaying it, and the kernel's state can be
// re-asserted from it after a restart or a crash.
//
// Durability: a batch of records is one write(2) on an O_APPEND file, followed by fsync
// (Add, Lift; AddNoSync leaves the fsync to a later Sync). After a crash of the process
// the file holds every batch that was written, plus at most one torn last line, which
// replay detects (no newline, or not valid JSON), reports, and cuts off before anything
// new is appended; after a power loss, every batch that was synced. A write the disk
// refuses or cuts short (full, over quota, I/O error) is cut back at once, so it leaves
// no torn line; its bans are not final: the manager holds them, out of the backend,
// and commits them again, journal first, when the disk takes writes again.
package bans

import (
	"net/netip"
	"slices"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
)

// Reason says why a host was banned.
type Reason struct {
	Mode probe.Mode `json:"mode,omitempty"`
	Port uint16     `json:"port,omitempty"`
	Scan string     `json:"scan,omitempty"` // classic scan-type string; empty for connects
	By   string     `json:"by,omitempty"`   // "detect", "operator" or "fleet"
	// Origin is the fleet host whose ban this is; empty: this host's own. A remote ban
	// never replaces a local one, and only its origin's messages lift it.
	Origin string `json:"origin,omitempty"`
	// Spoofable is set when the evidence could have been forged (anything but a
	// completed TCP handshake): such bans always expire, so forged probes cannot fill
	// BAN_CAP for good.
	Spoofable bool `json:"spoofable,omitempty"`
	// Addr is the source that earned a detection's ban (the ban may cover its network):
	// when the ban must shrink, it is narrowed around this address.
	Addr netip.Addr `json:"addr,omitzero"`
	// Classic is what the classic KILL_ actions did under this ban, one entry per
	// address they ran for, so that lifting the ban undoes it, after a restart too.
	Classic []respond.Done `json:"classic,omitempty"`
}

// mergeDone returns older's entries for addresses newer has none for, then newer's.
func mergeDone(older, newer []respond.Done) []respond.Done {
	out := slices.DeleteFunc(slices.Clone(older), func(o respond.Done) bool {
		return slices.ContainsFunc(newer, func(n respond.Done) bool { return n.Addr == o.Addr })
	})
	return append(out, newer...)
}

// Ban is one active ban.
type Ban struct {
	Prefix netip.Prefix
	Start  time.Time
	Until  time.Time // zero: permanent
	Reason Reason
	// Offences is how many times this prefix has been banned, this ban included; the
	// caller uses it to escalate durations for repeat offenders.
	Offences int
}

// Remote reports whether the ban came from another fleet host.
func (b Ban) Remote() bool { return b.Reason.Origin != "" }

// Permanent reports whether the ban never expires.
func (b Ban) Permanent() bool { return b.Until.IsZero() }

// Remaining is the time left at now (0 for permanent bans and expired ones).
func (b Ban) Remaining(now time.Time) time.Duration {
	if b.Permanent() || !now.Before(b.Until) {
		return 0
	}
	return b.Until.Sub(now)
}

// Expired reports whether a timed ban has run out at now.
func (b Ban) Expired(now time.Time) bool { return !b.Permanent() && !now.Before(b.Until) }

// Op is what a journal record does.
type Op string

const (
	OpBan    Op = "ban"
	OpUnban  Op = "unban"  // lifted early (operator, or a policy)
	OpExpire Op = "expire" // ran out
)

// record is one journal line.
type record struct {
	Op       Op     `json:"op"`
	Prefix   string `json:"prefix"`
	At       int64  `json:"at"`              // unix milliseconds
	Until    int64  `json:"until,omitempty"` // unix milliseconds, 0 = permanent (bans only)
	Offences int    `json:"n,omitempty"`     // bans only
	Reason
}

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// EscalatedDuration doubles base for each earlier offence, capped at max (when max > 0).
// base 0 means permanent and stays permanent.
func EscalatedDuration(base, max time.Duration, offences int) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < offences; i++ {
		if max > 0 && d >= max/2 {
			return max
		}
		d *= 2
	}
	if max > 0 && d > max {
		return max
	}
	return d
}

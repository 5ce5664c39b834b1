package bans

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/safety"
)

// Why a remote ban was not enforced.
const (
	RefusedLocal     = "local_ban" // this host bans the prefix itself: its own ban stays
	RefusedProtected = "protected" // the safety gate refuses it
	RefusedExpired   = "expired"   // over before it arrived
	RefusedCap       = "ban_cap"   // BAN_CAP of remote bans reached, or the journal failed
)

// Remote enforces bans made by other fleet hosts (Reason.Origin set), on the manager's
// goroutine, under this host's rules: the safety gate judges each as it judges a
// detection's; a prefix this host bans itself keeps its local ban; none lasts longer
// than BAN_TIME_MAX (from its start, which is never later than now: a replayed ban
// keeps the same end at every replay); they count against BAN_CAP apart from local bans. A ban
// identical to the one in force (a duplicate message) changes nothing. It returns how
// many bans it put in force (new or changed) and why each refused one was refused.
func (m *Manager) Remote(list []Ban, now time.Time) (applied int, refused map[netip.Prefix]string) {
	refused = map[netip.Prefix]string{}
	m.do(func() {
		m.drain() // local bans queued before these win
		var view *safety.View
		if m.opts.View != nil {
			view = m.opts.View()
		}
		pol := m.opts.Policy()
		var batch []Ban
		for _, b := range list {
			b.Prefix = b.Prefix.Masked()
			if b.Start.After(now) || b.Start.IsZero() {
				b.Start = now
			}
			if pol.BanTimeMax > 0 && (b.Permanent() || b.Until.Sub(b.Start) > pol.BanTimeMax) {
				b.Until = b.Start.Add(pol.BanTimeMax)
			}
			old, active := m.journal.Get(b.Prefix)
			switch {
			case b.Expired(now):
				refused[b.Prefix] = RefusedExpired
			case active && !old.Remote():
				refused[b.Prefix] = RefusedLocal
			case view != nil && view.Check(b.Prefix) != nil:
				refused[b.Prefix] = RefusedProtected
			case active && old.Reason.Origin == b.Reason.Origin && old.Start.Equal(b.Start) && old.Until.Equal(b.Until):
				// already in force
			default:
				batch = append(batch, b)
			}
		}
		if len(batch) == 0 {
			return
		}
		m.pending.Add(int64(len(batch)))
		m.commit(batch)
		for _, b := range batch {
			if got, ok := m.journal.Get(b.Prefix); ok && got.Reason.Origin == b.Reason.Origin && got.Until.Equal(b.Until) {
				applied++
			} else {
				m.held.forget(b.Prefix) // the fleet offers it again at its next message or replay
				refused[b.Prefix] = RefusedCap
			}
		}
	})
	return applied, refused
}

// LiftRemote lifts, now, the active bans of prefixes that origin made ("*": any fleet
// host); a prefix banned by this host or by another origin keeps its ban.
func (m *Manager) LiftRemote(prefixes []netip.Prefix, origin string) (ended []Ban, err error) {
	m.do(func() {
		var match []netip.Prefix
		for _, p := range prefixes {
			if b, ok := m.journal.Get(p); ok && fromOrigin(b, origin) {
				match = append(match, b.Prefix)
			}
		}
		why := "by fleet host " + origin
		if origin == "*" {
			why = "(no fleet host bans it any more)"
		}
		if len(match) > 0 {
			ended, err = m.lift(match, why)
		}
	})
	return ended, err
}

// UnblockOrigin lifts, for an operator, every active ban that fleet host origin made
// ("*": every remote ban).
func (m *Manager) UnblockOrigin(origin string) (ended []Ban, err error) {
	m.do(func() {
		var match []netip.Prefix
		for _, b := range m.journal.Active() {
			if fromOrigin(b, origin) {
				match = append(match, b.Prefix)
			}
		}
		ended, err = m.lift(match, fmt.Sprintf("by an operator (bans of fleet host %s)", origin))
	})
	return ended, err
}

func fromOrigin(b Ban, origin string) bool {
	return b.Remote() && (origin == "*" || b.Reason.Origin == origin)
}

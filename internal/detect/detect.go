// Package detect decides what a probe means: ignored, counted toward the scan trigger,
// already blocked, or time to respond. It is pure: no I/O, no clock, no goroutines, and
// not safe for concurrent use (the caller serialises access), so it can be tested and
// benchmarked in isolation.
package detect

import (
	"github.com/portsentry-go/portsentry/internal/fifo"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Action is the outcome of one probe.
type Action uint8

const (
	// Ignored: the source is in the ignore set. Nothing is logged or counted.
	Ignored Action = iota
	// Counted: the hit was counted but the host has not reached SCAN_TRIGGER yet.
	Counted
	// AlreadyBlocked: the trigger fired but this mode has already acted on the host.
	AlreadyBlocked
	// Respond: the trigger fired and the host is new to this mode: act on it.
	Respond
	// Suppressed: the host would be acted on, but the caller's policy (the spoofing
	// defences' rate limit and cap) refused; nothing was recorded.
	Suppressed
	// Dismissed: the host would be acted on, but the caller's policy found that the
	// probe was no hit after all (its port has just been taken by a local service);
	// nothing was recorded.
	Dismissed
)

var actionNames = [...]string{"ignored", "counted", "already-blocked", "respond", "suppressed", "dismissed"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Verdict is the detector's answer for one probe.
type Verdict struct {
	Probe  probe.Probe
	Action Action
	// Hits is how many hits the host has made so far (1 when the trigger is off).
	Hits int
}

// modeSlots is the number of acted-on sets: one per mode and one for anything else.
const modeSlots = probe.ModeCount + 1

// DefaultTableSize bounds the per-host hit counters. An entry costs about 120 bytes
// (measured, map overhead included), so a full table holds under 8 MiB however many
// distinct sources probe us.
const DefaultTableSize = 65536

// DefaultBlockedMemory bounds, per mode, how many acted-on hosts are remembered for the
// "already blocked" answer. A flood of spoofed sources would otherwise grow the set
// without limit; past the bound the host acted on longest ago is forgotten, and acted
// on again should it come back (a second history line, a repeated KILL_ command).
const DefaultBlockedMemory = 65536

// Detector holds the trigger counters and the per-mode record of acted-on hosts.
type Detector struct {
	trigger int
	hits    *fifo.Map[netip.Addr, int] // per-host hit counts
	// blocked is per mode (indexed by Mode.Index; the last slot takes any unknown
	// mode), as classic keeps one blocked file per mode: a host blocked by -tcp is still
	// new to -udp, whose BLOCK_UDP setting may differ.
	blocked [modeSlots]*actedSet
	memory  int
}

// New returns a detector that fires on the trigger-th hit of a host (0 and 1 both mean
// the first hit) and remembers at most tableSize hosts' counts.
func New(trigger, tableSize int) *Detector {
	if tableSize <= 0 {
		tableSize = DefaultTableSize
	}
	return &Detector{
		trigger: trigger,
		hits:    fifo.New[netip.Addr, int](tableSize),
		memory:  DefaultBlockedMemory,
	}
}

// SetTrigger changes SCAN_TRIGGER (on reload); counts gathered so far are kept.
func (d *Detector) SetTrigger(n int) { d.trigger = n }

// Observe classifies one probe and, when it is time to respond, marks the host as
// acted on. ignored reports whether the source is in the ignore set; it is passed in so
// the detector stays free of address-tracking state.
func (d *Detector) Observe(p probe.Probe, ignored bool) Verdict {
	if ignored {
		return Verdict{Probe: p, Action: Ignored}
	}
	a, hits := d.Judge(&p)
	if a == Respond {
		d.Mark(p.Mode, p.Src.Addr())
	}
	return Verdict{Probe: p, Action: a, Hits: hits}
}

// Judge is Observe for a source that is not ignored, for the daemon's hot path, where
// most probes under a flood end refused by its own checks (the spoofing defences): no
// Verdict is built, and nothing is marked. Respond means the host is new to the mode;
// a caller that goes ahead Marks it at once, before responding, so that hits arriving
// meanwhile are "already blocked" rather than start a second response. A caller that
// refuses marks nothing, so a flood of spoofed sources costs no table churn. (The
// checks are the caller's to run rather than a function passed in: a probe passed by
// pointer to a function value escapes to the heap, one allocation per probe.)
func (d *Detector) Judge(p *probe.Probe) (a Action, hits int) {
	src := p.Src.Addr()
	hits = 1
	if d.trigger > 1 {
		// Counting is skipped when every hit fires: a flood then costs no table space.
		hits = inc(d.hits, src)
		if hits < d.trigger {
			return Counted, hits
		}
	}
	if d.acted(p.Mode).has(src) {
		return AlreadyBlocked, hits
	}
	return Respond, hits
}

// Forget removes a host from a mode's acted-on set, after its response failed, so that
// its next hit tries again.
func (d *Detector) Forget(mode probe.Mode, a netip.Addr) {
	if set := d.blocked[mode.Index()]; set != nil {
		set.remove(a)
	}
}

// Mark records that the mode has acted on the host: after Judge said Respond, and for
// bans carried over a restart.
func (d *Detector) Mark(mode probe.Mode, a netip.Addr) {
	d.acted(mode).add(a)
}

// acted returns the mode's set of acted-on hosts, creating it on first use.
func (d *Detector) acted(mode probe.Mode) *actedSet {
	i := mode.Index()
	if d.blocked[i] == nil {
		d.blocked[i] = newActedSet(d.memory)
	}
	return d.blocked[i]
}

// ForgetPrefix forgets, in every mode, the hosts inside p (a ban was lifted, so the
// host's next probe is acted on again).
func (d *Detector) ForgetPrefix(p netip.Prefix) {
	for _, set := range d.blocked {
		if set == nil {
			continue
		}
		set.removeIn(p)
	}
}

// Blocked reports whether the mode has acted on the host.
func (d *Detector) Blocked(mode probe.Mode, a netip.Addr) bool {
	set := d.blocked[mode.Index()]
	if set == nil {
		return false
	}
	return set.has(a)
}

// Tracked is the number of hosts whose hits are being counted.
func (d *Detector) Tracked() int { return d.hits.Len() }

// Remembered is the number of acted-on hosts a mode remembers.
func (d *Detector) Remembered(mode probe.Mode) int {
	if set := d.blocked[mode.Index()]; set != nil {
		return set.len()
	}
	return 0
}

// inc adds one to a's count and returns the new count.
func inc(m *fifo.Map[netip.Addr, int], a netip.Addr) int {
	n, _ := m.Get(a)
	m.Set(a, n+1)
	return n + 1
}

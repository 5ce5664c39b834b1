// Package detect is the decision core: for each probe it decides, once, what happens
// to it: nothing (a protected or impossible source), a count toward SCAN_TRIGGER, a
// note that the host is already blocked (or a silent count of that, once the note was
// made), a response, or a refusal because the response budget is spent. It is pure:
// no I/O, no goroutines, the clock is the probe's time, and it is not safe for
// concurrent use (the caller serialises access), so it can be tested and benchmarked
// in isolation.
//
// Limits bound responses and log volume, never sight. The response budget (BAN_RATE)
// is kept per rank of evidence: a completed handshake (unspoofable), a source seen
// several times or on several ports, a single probe. A flood of one-off forged sources
// spends only the last, so a real scanner in the middle of it is still answered.
package detect

import (
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// Action is the outcome of one probe.
type Action uint8

const (
	// Ignored: the source is protected (own, gateway, resolver, ignore file). Silent.
	Ignored Action = iota
	// Impossible: the source cannot be a real host (multicast, broadcast, reserved).
	// Counted, never logged per packet, never acted on.
	Impossible
	// Counted: the hit was counted but the host has not reached SCAN_TRIGGER yet.
	Counted
	// AlreadyBlocked: the mode has already acted on the host, and it is time for a
	// line saying so (at most RepeatLines in each RepeatEvery).
	AlreadyBlocked
	// Repeated: the mode has already acted on the host and said so recently: the hit
	// is only counted, for the next AlreadyBlocked line.
	Repeated
	// Respond: the host is new to this mode and the budget of its rank allows it.
	Respond
	// Suppressed: the host would be acted on but its rank's budget is spent.
	Suppressed
)

var actionNames = [...]string{"ignored", "impossible", "counted", "already-blocked", "repeated", "respond", "suppressed"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Rank is the strength of the evidence against a source.
type Rank uint8

const (
	// Single: a spoofable probe from a source not seen beyond its trigger.
	Single Rank = iota
	// Repeat: a source seen more often than its trigger needs, or on several ports:
	// forging it costs the attacker several packets per fake source.
	Repeat
	// Handshake: a completed TCP handshake, which cannot be forged.
	Handshake
	rankCount
)

var rankNames = [...]string{"single", "repeat", "handshake"}

func (r Rank) String() string {
	if int(r) < len(rankNames) {
		return rankNames[r]
	}
	return "unknown"
}

// Plan is how a Respond verdict is carried out.
type Plan uint8

const (
	// PlanLogOnly: BLOCK_x="0": log, say the configuration asks for no response, and
	// record the host (classic records it in the history all the same).
	PlanLogOnly Plan = iota
	// PlanNotSpoofable: UNSPOOFABLE_ONLY and the probe could be forged: log, say so,
	// and act on nothing (the host stays new, for a later real connection).
	PlanNotSpoofable
	// PlanBanThenCommands: BLOCK_x="1" with a native backend: ban and record at once,
	// then run the classic KILL_ commands, whose failure never undoes the ban.
	PlanBanThenCommands
	// PlanCommandsThenBan: BLOCK_x="1" without a native backend: run the classic
	// KILL_ commands; only when they succeed is the host recorded and its ban
	// journaled (the record of what the commands did).
	PlanCommandsThenBan
	// PlanRunCmd: BLOCK_x="2": run KILL_RUN_CMD; the host is recorded when it succeeds.
	PlanRunCmd
)

// Response is the configuration a Respond verdict's plan follows.
type Response struct {
	BlockTCP, BlockUDP int  // BLOCK_TCP, BLOCK_UDP: 0 log only, 1 block, 2 KILL_RUN_CMD only
	Native             bool // a native backend (BLOCK_BACKEND other than classic)
	UnspoofableOnly    bool
}

// plan picks how a probe's Respond verdict is carried out.
func (r Response) plan(p *probe.Probe) Plan {
	level := r.BlockTCP
	if p.Proto == probe.UDP {
		level = r.BlockUDP
	}
	switch {
	case r.UnspoofableOnly && p.Spoofable:
		return PlanNotSpoofable
	case level == 0:
		return PlanLogOnly
	case level == 1 && r.Native:
		return PlanBanThenCommands
	case level == 1:
		return PlanCommandsThenBan
	}
	return PlanRunCmd
}

// Decision is the detector's answer for one probe. It is small on purpose: it is
// returned for every packet of a flood, and only the few that go on to a worker
// become a Verdict, with the probe.
type Decision struct {
	Action Action
	// Plan is how a Respond decision is carried out.
	Plan Plan
	Rank Rank
	// Fresh is set when the source was new to the hit counters (for flood summaries:
	// the number of distinct sources).
	Fresh bool
	// Hits is how many hits the host has made so far (1 when it is not counted).
	Hits int32
	// Repeats is, for AlreadyBlocked, how many hits were only counted (Repeated) since
	// the previous such line.
	Repeats uint32
}

// Verdict is a decision with its probe, as the workers carry it out.
type Verdict struct {
	Probe probe.Probe
	Decision
}

// A host's "already blocked" lines are logged, per mode, RepeatLines at most in each
// RepeatEvery; the hits beyond are counted and the next line says how many. A short
// scan keeps classic's line per hit; a long one or a flood costs a few lines.
const (
	RepeatEvery = 10 * time.Second
	RepeatLines = 5
)

// modeSlots is the number of acted-on sets: one per mode and one for anything else.
const modeSlots = probe.ModeCount + 1

// DefaultTableSize bounds the per-host hit counters: 65,536 sources that came back and
// 8,192 seen once, 2.03 MiB however many distinct sources probe us.
const DefaultTableSize = 65536

// DefaultBlockedMemory bounds, per mode, how many acted-on hosts are remembered for the
// "already blocked" answer. A flood of spoofed sources would otherwise grow the set
// without limit; past the bound the host acted on longest ago is forgotten, and acted
// on again should it come back (a second history line, a repeated KILL_ command).
const DefaultBlockedMemory = 65536

// Detector holds the trigger counters, the per-mode record of acted-on hosts and the
// response budgets.
type Detector struct {
	trigger int
	hits    *hostTable
	// blocked is per mode (indexed by Mode.Index; the last slot takes any unknown
	// mode), as classic keeps one blocked file per mode: a host blocked by -tcp is still
	// new to -udp, whose BLOCK_UDP setting may differ.
	blocked [modeSlots]*actedSet
	memory  int
	budget  [rankCount]*limiter // nil: no limit
	resp    Response
}

// New returns a detector that fires on the trigger-th hit of a host (0 and 1 both mean
// the first hit), remembers at most tableSize hosts' counts, and allows perMinute new
// responses a minute per rank of evidence (0: no limit).
func New(trigger, tableSize, perMinute int) *Detector {
	if tableSize <= 0 {
		tableSize = DefaultTableSize
	}
	d := &Detector{trigger: trigger, hits: newHostTable(tableSize), memory: DefaultBlockedMemory}
	d.hits.also = d.eachActed
	d.SetRate(perMinute)
	return d
}

// SetTrigger changes SCAN_TRIGGER (on reload); counts gathered so far are kept.
func (d *Detector) SetTrigger(n int) { d.trigger = n }

// SetResponse sets what a Respond verdict's plan follows (at start and on reload).
func (d *Detector) SetResponse(r Response) { d.resp = r }

// SetRate changes BAN_RATE (on reload); the budgets start full.
func (d *Detector) SetRate(perMinute int) {
	for r := range d.budget {
		d.budget[r] = newLimiter(perMinute)
	}
}

// Judge decides what a probe from a source of the given class means. Respond means
// the host is new to the mode and within budget; a caller that goes ahead Marks it at
// once, before responding, so that hits arriving meanwhile are "already blocked"
// rather than start a second response; a caller that finds a reason not to go ahead
// after all marks nothing. (The caller's own last check is its to run rather than a
// function passed in: a probe passed by pointer to a function value escapes to the
// heap, one allocation per probe.)
//
// Every hit is counted, whatever the trigger, so that a refused source's next hit ranks
// Repeat. Under a flood of one-off sources a first hit costs one write to a small
// array (see hostTable).
func (d *Detector) Judge(p *probe.Probe, class safety.Class) Decision {
	switch class {
	case safety.Protected:
		return Decision{Action: Ignored}
	case safety.Impossible:
		return Decision{Action: Impossible}
	}
	src := p.Src.Addr()
	e, hits, fresh, known := d.hits.hit(src, p.Dst.Port())
	v := Decision{Hits: int32(hits), Fresh: fresh}
	if int(hits) < d.trigger {
		v.Action = Counted
		return v
	}
	if set := d.blocked[p.Mode.Index()]; set != nil && known { // !known: never acted on
		if r := set.get(src); r != nil {
			return d.repeat(v, r, p.Time)
		}
	}
	v.Rank = d.rank(p, e, int(hits))
	if !d.budget[v.Rank].allow(p.Time) {
		v.Action = Suppressed
		return v
	}
	v.Action, v.Plan = Respond, d.resp.plan(p)
	return v
}

// rank grades the evidence: e is the source's entry if it has come back, hits its
// hits so far, this one included.
func (d *Detector) rank(p *probe.Probe, e *hostEntry, hits int) Rank {
	switch {
	case !p.Spoofable:
		return Handshake
	case hits > max(d.trigger, 1) || e != nil && e.ports > 0:
		return Repeat
	}
	return Single
}

// repeat handles a hit from a host the mode has acted on.
func (d *Detector) repeat(v Decision, r *repeats, now time.Time) Decision {
	t := now.UnixNano()
	if r.window == 0 || t-r.window >= int64(RepeatEvery) || t < r.window {
		r.window, r.lines = t, 0
	}
	if r.lines >= RepeatLines {
		r.count++
		v.Action = Repeated
		return v
	}
	r.lines++
	v.Action, v.Repeats = AlreadyBlocked, r.count
	r.count = 0
	return v
}

// Unsay undoes the bookkeeping of an AlreadyBlocked verdict the caller could not
// deliver (its queue was full): the hit counts as Repeated, and the next hit may try
// to say it again.
func (d *Detector) Unsay(mode probe.Mode, a netip.Addr, v Decision) {
	if set := d.blocked[mode.Index()]; set != nil {
		if r := set.get(a); r != nil {
			r.count += v.Repeats + 1
			r.lines--
		}
	}
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
	d.hits.markKnown(a)
}

// eachActed calls mark for every host some mode has acted on.
func (d *Detector) eachActed(mark func(netip.Addr)) {
	for _, set := range d.blocked {
		if set != nil {
			set.m.Range(func(a netip.Addr, _ *repeats) { mark(a) })
		}
	}
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
	return set != nil && set.get(a) != nil
}

// Tracked is the number of hosts whose hits are being counted.
func (d *Detector) Tracked() int { return d.hits.len }

// Remembered is the number of acted-on hosts a mode remembers.
func (d *Detector) Remembered(mode probe.Mode) int {
	if set := d.blocked[mode.Index()]; set != nil {
		return set.len()
	}
	return 0
}

package bans

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/batch"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// Backend is a native blocking backend (nftables, routes, ipset, hosts.deny). The
// journal decides what is banned; a backend only mirrors it into the system.
type Backend interface {
	// Name is what the logs and `portsentry status` call it.
	Name() string
	// Setup prepares the system (tables, sets, rules) idempotently.
	Setup() error
	// Apply adds or renews bans; the backend expires them itself where it can.
	Apply([]respond.Ban) error
	// Revoke lifts bans early; prefixes not present are not an error.
	Revoke([]netip.Prefix) error
	// Expire removes bans that ran out, for backends the kernel cannot expire.
	Expire([]netip.Prefix) error
	// Reconcile makes the system hold exactly the given bans (the journal's, with the
	// time each has left), among the backend's own entries only, and says what it
	// changed: the periodic repair of whatever was lifted or added behind its back.
	Reconcile([]respond.Ban) (respond.Repair, error)
	Close() error
}

// Unenforcer is a Backend that may hold a ban without enforcing it itself (the route
// backend, when a route that is not its own holds the prefix). Unenforced says why
// the ban on p is not enforced, "" when it is.
type Unenforcer interface {
	Unenforced(p netip.Prefix) string
	UnenforcedCount() int // how many active bans are not enforced
}

// Nop is the backend of BLOCK_BACKEND="classic": nothing native; the classic KILL_
// commands are what blocks, and the journal records what they did.
type Nop struct{}

func (Nop) Name() string                { return "classic" }
func (Nop) Setup() error                { return nil }
func (Nop) Apply([]respond.Ban) error   { return nil }
func (Nop) Revoke([]netip.Prefix) error { return nil }
func (Nop) Expire([]netip.Prefix) error { return nil }
func (Nop) Reconcile([]respond.Ban) (respond.Repair, error) {
	return respond.Repair{}, nil
}
func (Nop) Close() error { return nil }

// Policy is the part of the configuration the manager follows (reloads included).
type Policy struct {
	BanTime, BanTimeMax time.Duration // first ban's length (0: permanent), escalation cap
	BanCap              int           // active bans at most; 0: no limit
}

// Hooks tell the rest of the daemon what the manager did. Any may be nil.
type Hooks struct {
	// Lifted is given bans that ended (expired, lifted) or were refused at BAN_CAP, so
	// their hosts can be caught again.
	Lifted func([]Ban)
	// Event is told every ban, unban and expiry, with its log line.
	Event func(op Op, b Ban, text string)
	// Refused counts bans refused because BAN_CAP was reached.
	Refused func(n int)
	// BackendError counts failed backend operations.
	BackendError func()
	// Repaired is told what a reconciliation changed in the system.
	Repaired func(respond.Repair)
	// Journal is told of failed journal writes, and of the bans waiting for the disk
	// (Queued) or refused because too many wait (Dropped). Its Log defaults to
	// Options.Log.
	Journal appendfile.Report
}

// Options are a Manager's dependencies.
type Options struct {
	Journal *Journal
	Backend Backend // Nop{} for none
	Policy  func() Policy
	View    func() *safety.View // the safety gate every ban passes
	Log     *slog.Logger
	Hooks   Hooks
}

// Batch bounds how many bans one journal write and one kernel transaction carry.
const Batch = 1000

// ReconcileEvery is how often, while there are bans, the backend is compared with the
// journal and repaired: the longest a ban lifted behind the daemon's back (`nft flush
// ruleset`, as restarting nftables.service does) stays lifted.
const ReconcileEvery = 5 * time.Second

// Manager owns the ban lifecycle: new bans are journaled and put into the backend in
// batches; expiries are recorded as they come due; operators' blocks and unblocks run
// on the same goroutine; whenever the safety view changes, active bans are checked
// against it again. The journal is the truth: Restore re-asserts its active bans.
type Manager struct {
	opts    Options
	log     *slog.Logger
	journal *Journal
	backend Backend
	checked *safety.View // the view the active bans were last checked against
	in      chan Ban
	ops     chan func()   // operators' blocks and unblocks
	stopped chan struct{} // closed when the manager's goroutine has ended
	pending atomic.Int64  // queued, not yet committed
	started atomic.Bool   // Start has been called
	held    *held         // bans the journal could not take yet
	wg      sync.WaitGroup

	reconciled time.Time // when the backend was last compared with the journal
	failing    bool      // the last reconciliation failed (logged once until it works)
}

// NewManager returns a manager; nothing runs until Restore and Start.
func NewManager(opts Options) *Manager {
	if opts.Backend == nil {
		opts.Backend = Nop{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Hooks.Journal.Log == nil {
		opts.Hooks.Journal.Log = opts.Log
	}
	return &Manager{opts: opts, log: opts.Log, journal: opts.Journal, backend: opts.Backend,
		in: make(chan Ban, Batch), ops: make(chan func()), stopped: make(chan struct{}),
		held: newHeld(opts.Journal.path, opts.Hooks.Journal)}
}

// Restore sets the backend up, lifts the journal's bans the safety gate refuses now,
// and re-asserts the others with their remaining time. One bad record never stops
// the others.
func (m *Manager) Restore(now time.Time) error {
	if err := m.backend.Setup(); err != nil {
		return fmt.Errorf("BLOCK_BACKEND %s: %w", m.backend.Name(), err)
	}
	m.recheck(now)
	m.reconcile(now)
	for _, b := range m.journal.Active() {
		if why := m.Unenforced(b.Prefix); why != "" {
			m.log.Warn(fmt.Sprintf("attackalert: Ban on %s (from the ban journal) is recorded but not enforced by %s: %s", b.Prefix, m.backend.Name(), why))
		}
	}
	return nil
}

// UnenforcedCount is how many active bans the backend does not enforce.
func (m *Manager) UnenforcedCount() int {
	if u, ok := m.backend.(Unenforcer); ok {
		return u.UnenforcedCount()
	}
	return 0
}

// Unenforced says why the ban on p, recorded in the journal, is not enforced by the
// backend ("" when it is, or the backend cannot tell).
func (m *Manager) Unenforced(p netip.Prefix) string {
	if u, ok := m.backend.(Unenforcer); ok {
		return u.Unenforced(p)
	}
	return ""
}

// Native reports whether a native backend mirrors the bans (not Nop).
func (m *Manager) Native() bool { _, nop := m.backend.(Nop); return !nop }

// Backend is the backend's name.
func (m *Manager) Backend() string { return m.backend.Name() }

// Active returns the active bans; Len counts them.
func (m *Manager) Active() []Ban { return m.journal.Active() }
func (m *Manager) Len() int      { return m.journal.Len() }

// backendBans gives bans as the backend takes them, with their remaining time,
// leaving out those that have run out.
func backendBans(list []Ban, now time.Time) []respond.Ban {
	out := make([]respond.Ban, 0, len(list))
	for _, b := range list {
		nb := respond.Ban{Prefix: b.Prefix}
		if !b.Permanent() {
			if nb.Timeout = b.Remaining(now); nb.Timeout <= 0 {
				continue
			}
		}
		out = append(out, nb)
	}
	return out
}

// assert puts bans into the backend with their remaining time.
func (m *Manager) assert(list []Ban, now time.Time) error {
	if !m.Native() || len(list) == 0 {
		return nil
	}
	out := backendBans(list, now)
	for len(out) > 0 {
		n := min(len(out), Batch)
		if err := m.backend.Apply(out[:n]); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// NewBan builds a ban of p lasting d, or with d < 0 the duration its offence count
// earns. Without a native backend a ban on unspoofable evidence is permanent, as
// classic's were (an operator lifts it); one on spoofable evidence lasts
// BAN_TIME in the journal (at least an hour), so that forged probes cannot fill
// BAN_CAP for good and lock detection out.
func (m *Manager) NewBan(p netip.Prefix, reason Reason, d time.Duration, now time.Time) Ban {
	b := Ban{Prefix: p, Start: now, Reason: reason}
	pol := m.opts.Policy()
	switch {
	case !m.Native() && !reason.Spoofable:
		d = 0
	case !m.Native():
		d = max(pol.BanTime, time.Hour)
	case d < 0:
		d = EscalatedDuration(pol.BanTime, pol.BanTimeMax, m.journal.NextOffence(p))
	}
	if d > 0 {
		b.Until = now.Add(d)
	}
	return b
}

// Ban queues a ban made by a detection.
func (m *Manager) Ban(b Ban) {
	m.pending.Add(1)
	m.in <- b
}

// Block bans b now for an operator, on the manager's goroutine, and returns the
// journal's record; false when it was not recorded (BAN_CAP, or the journal failed:
// the operator is told, so the ban is not kept for a retry).
func (m *Manager) Block(b Ban) (got Ban, ok bool) {
	m.do(func() {
		m.pending.Add(1)
		m.commit([]Ban{b})
		if got, ok = m.journal.Get(b.Prefix); !ok {
			m.held.forget(b.Prefix)
		}
	})
	return got, ok
}

// Pending reports whether a ban covering a was detected but waits for the journal (a
// full disk): it is not in force yet.
func (m *Manager) Pending(a netip.Addr) bool { return m.held.covers(a) }

// Unblock lifts every active ban inside or covering p, now, on the manager's goroutine.
func (m *Manager) Unblock(p netip.Prefix) (ended []Ban, err error) {
	m.do(func() { ended, err = m.unblock(p) })
	return ended, err
}

// Note records in p's ban what the classic KILL_ actions did for it (see
// Journal.Note), on the manager's goroutine after the bans queued before it, so that
// lifting the ban undoes them; a ban held for the journal keeps it until it is written.
// False when p is not banned (refused, or already lifted): the caller undoes them itself.
func (m *Manager) Note(p netip.Prefix, d respond.Done) (ok bool, err error) {
	m.do(func() {
		m.drain() // the ban the commands ran for may still be queued
		if ok, err = m.journal.Note(p, d); !ok {
			ok = m.held.note(p, d)
		}
	})
	return ok, err
}

// do runs op on the manager's goroutine, as one with the detections' bans and the
// expiries (so BAN_CAP is counted once and the expiry ticker sees operator bans), and
// waits for it. Before Start and after the goroutine has ended it runs op itself.
func (m *Manager) do(op func()) {
	if !m.started.Load() {
		op()
		return
	}
	done := make(chan struct{})
	select {
	case m.ops <- func() { op(); close(done) }:
		<-done
	case <-m.stopped:
		op()
	}
}

// withinCap keeps the renewals of active bans and as many new bans as BAN_CAP leaves
// room for; the rest are refused, counted and handed to Lifted (so those hosts can be
// caught again once there is room). This host's bans and the fleet's are counted
// apart, each up to BAN_CAP: remote bans never take the room local detection needs.
func (m *Manager) withinCap(batch []Ban) []Ban {
	limit := m.opts.Policy().BanCap
	if limit <= 0 {
		return batch
	}
	remote := m.journal.Remote()
	room := [2]int{limit - (m.journal.Len() - remote), limit - remote} // local, remote
	var keep, refused []Ban
	for _, b := range batch {
		i := 0
		if b.Remote() {
			i = 1
		}
		old, renewal := m.journal.Get(b.Prefix)
		if renewal && old.Remote() != b.Remote() { // a local ban taking a remote one's place
			renewal = false
		}
		if renewal || room[i] > 0 {
			if !renewal {
				room[i]--
			}
			keep = append(keep, b)
		} else {
			refused = append(refused, b)
		}
	}
	if len(refused) > 0 {
		m.log.Warn(fmt.Sprintf("attackalert: %d hosts detected but not banned: BAN_CAP (%d active bans) reached", len(refused), limit))
		if h := m.opts.Hooks.Refused; h != nil {
			h(len(refused))
		}
		m.lifted(refused)
	}
	return keep
}

func (m *Manager) lifted(list []Ban) {
	if h := m.opts.Hooks.Lifted; h != nil && len(list) > 0 {
		h(list)
	}
}

func (m *Manager) event(op Op, b Ban, text string) {
	if h := m.opts.Hooks.Event; h != nil {
		h(op, b, text)
	}
}

func (m *Manager) backendError(err error) {
	m.log.Error("adminalert: ERROR: " + m.backend.Name() + ": " + err.Error())
	if h := m.opts.Hooks.BackendError; h != nil {
		h()
	}
}

// Start runs the manager's goroutine until ctx is done; what is queued then is
// committed before it ends.
func (m *Manager) Start(ctx context.Context) {
	m.started.Store(true)
	m.wg.Go(func() {
		defer close(m.stopped)
		m.run(ctx)
	})
}

// run commits queued bans in batches, runs operators' requests and, while there are
// bans, records expiries and checks bans against a changed safety view every second.
// With none the ticker stops: an idle daemon's every wakeup costs (a few context
// switches, 100-200 µs of CPU on small virtual machines).
func (m *Manager) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ticking := true
	for {
		select {
		case <-ctx.Done():
			m.drain()
			return
		case b := <-m.in:
			m.commit(batch.Take(m.in, b, Batch))
		case op := <-m.ops:
			op()
		case now := <-tick.C:
			m.recheck(now)
			m.expire(now)
			if now.Sub(m.reconciled) >= ReconcileEvery {
				m.reconcile(now)
			}
			if m.journal.Len() == 0 {
				tick.Stop()
				ticking = false
			}
		}
		if !ticking && m.journal.Len() > 0 {
			tick.Reset(time.Second)
			ticking = true
		}
	}
}

func (m *Manager) drain() {
	for {
		select {
		case b := <-m.in:
			m.commit(batch.Take(m.in, b, Batch))
		default:
			return
		}
	}
}

// commit journals a batch, puts it in the backend, then syncs the journal. Written to
// the journal first: a crash of the daemon between the two leaves a ban the next start
// re-asserts, never a kernel ban nobody knows of; the fsync comes last so that the
// disk's latency is not between the probe and the ban (a power loss takes the kernel's
// bans with it anyway). Bans held from a failed journal write go first.
func (m *Manager) commit(batch []Ban) {
	defer m.pending.Add(-int64(len(batch)))
	batch = m.withinCap(m.held.take(batch))
	if len(batch) == 0 {
		return
	}
	stored, err := m.journal.AddNoSync(batch...)
	if stored == nil {
		m.hold(batch, err)
		return
	}
	m.held.committed()
	if err != nil { // the compaction after the write
		m.log.Error("adminalert: ERROR: ban journal: " + err.Error())
	}
	applyErr := m.assert(stored, time.Now())
	if applyErr != nil {
		m.backendError(applyErr)
	}
	if err := m.journal.Sync(); err != nil {
		m.held.failed(err)
	}
	if applyErr != nil {
		return
	}
	for _, b := range stored {
		text := fmt.Sprintf("attackalert: Host %s has been banned via %s %s", b.Prefix, m.backend.Name(), describe(b))
		if why := m.Unenforced(b.Prefix); why != "" {
			text = fmt.Sprintf("attackalert: Host %s: ban recorded %s but not enforced by %s: %s", b.Prefix, describe(b), m.backend.Name(), why)
			m.log.Warn(text)
		} else if m.Native() { // with the classic backend the KILL_ lines already said it
			m.log.Info(text)
		}
		m.event(OpBan, b, text)
	}
}

// hold keeps bans the journal could not take, to be committed again at the next commit
// and every appendfile.RetryEvery; those there is no room for are refused, as at
// BAN_CAP, so that their hosts can be caught again.
func (m *Manager) hold(batch []Ban, err error) {
	if refused := m.held.keep(batch, err); len(refused) > 0 {
		m.log.Warn(fmt.Sprintf("attackalert: %d hosts detected but not banned: %d bans already wait for the ban journal", len(refused), maxHeld))
		m.lifted(refused)
	}
	m.held.arm(func() {
		select {
		case m.ops <- func() { m.commit(nil) }:
		case <-m.stopped:
		}
	})
}

func describe(b Ban) string {
	if b.Remote() {
		return fmt.Sprintf("for %v (from fleet host %s)", b.Until.Sub(b.Start).Round(time.Second), b.Reason.Origin)
	}
	if b.Permanent() {
		return fmt.Sprintf("permanently (offence %d)", b.Offences)
	}
	return fmt.Sprintf("for %v (offence %d)", b.Until.Sub(b.Start).Round(time.Second), b.Offences)
}

// recheck lifts, when the safety view has changed since the last look, every active
// ban that now covers something protected: a new own address, gateway or resolver, or
// an ignore entry added by a reload. Each is logged with what it covers. The lifted
// host can be caught again, with a ban the gate then narrows.
func (m *Manager) recheck(now time.Time) {
	if m.opts.View == nil {
		return
	}
	v := m.opts.View()
	if v == m.checked {
		return
	}
	m.checked = v
	var refused []netip.Prefix
	var narrowed []Ban
	why := map[netip.Prefix]error{}
	for _, b := range m.journal.Active() {
		if err := v.Check(b.Prefix); err != nil {
			refused = append(refused, b.Prefix)
			why[b.Prefix] = err
			if n, ok := narrow(v, b); ok {
				narrowed = append(narrowed, n)
			}
		}
	}
	if len(refused) == 0 {
		return
	}
	ended, err := m.journal.Lift(OpUnban, refused, now)
	if err != nil {
		m.held.failed(err)
		m.checked = nil // look again at the next tick
	}
	if len(ended) > 0 && m.Native() {
		if err := m.backend.Revoke(prefixesOf(ended)); err != nil {
			m.backendError(err)
		}
	}
	for _, b := range ended {
		text := fmt.Sprintf("adminalert: Ban on %s lifted: %v (the protected addresses changed)", b.Prefix, why[b.Prefix])
		m.log.Warn(text)
		m.event(OpUnban, b, text)
	}
	m.lifted(ended)
	m.renew(narrowed, now)
}

// reconcile compares the backend with the journal and has it repair what differs:
// bans missing from the system are put back, entries the journal does not hold are
// taken out. A repair is logged, with its counts; a failure is logged once until a
// reconciliation works again, and retried at the next.
func (m *Manager) reconcile(now time.Time) {
	m.reconciled = now
	rep, err := m.backend.Reconcile(backendBans(m.journal.Active(), now))
	if err != nil {
		if !m.failing {
			m.backendError(fmt.Errorf("comparing with the ban journal: %w (retrying every %v)", err, ReconcileEvery))
		}
		m.failing = true
		return
	}
	if m.failing {
		m.log.Info("adminalert: " + m.backend.Name() + ": the system matches the ban journal again")
	}
	m.failing = false
	if !rep.Changed() {
		return
	}
	m.log.Warn(fmt.Sprintf("adminalert: %s: %d bans of the journal were missing from the system and have been restored; %d entries the journal does not hold were removed",
		m.backend.Name(), rep.Restored, rep.Removed))
	if h := m.opts.Hooks.Repaired; h != nil {
		h(rep)
	}
}

// narrow returns the ban b shrunk around the source that earned it to the widest
// prefix the view lets through, for the time b had left; false when b has no source
// or even the source alone is refused now.
func narrow(v *safety.View, b Ban) (Ban, bool) {
	if !b.Reason.Addr.IsValid() || !b.Prefix.Contains(b.Reason.Addr) {
		return Ban{}, false
	}
	p, ok := v.Widen(b.Reason.Addr, b.Prefix.Bits())
	if !ok {
		return Ban{}, false
	}
	r := b.Reason
	r.Classic = nil // lifting the wide ban undid them
	return Ban{Prefix: p, Start: b.Start, Until: b.Until, Reason: r}, true
}

// renew commits bans narrowed by recheck, logging each.
func (m *Manager) renew(list []Ban, now time.Time) {
	var live []Ban
	for _, b := range list {
		if !b.Expired(now) {
			m.log.Warn(fmt.Sprintf("adminalert: Ban narrowed to %s around %s", b.Prefix, b.Reason.Addr))
			live = append(live, b)
		}
	}
	if len(live) > 0 {
		m.pending.Add(int64(len(live)))
		m.commit(live)
	}
}

func prefixesOf(list []Ban) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, b := range list {
		out[i] = b.Prefix
	}
	return out
}

// expire records the bans that have run out.
func (m *Manager) expire(now time.Time) {
	ended, err := m.journal.Lift(OpExpire, m.journal.Due(now), now)
	if err != nil {
		m.held.failed(err) // the next tick tries again
		return
	}
	if len(ended) == 0 {
		return
	}
	m.held.committed()
	if err := m.backend.Expire(prefixesOf(ended)); err != nil {
		m.backendError(err)
	}
	for _, b := range ended {
		text := fmt.Sprintf("attackalert: Ban on %s expired", b.Prefix)
		m.log.Info(text)
		m.event(OpExpire, b, text)
	}
	m.lifted(ended)
}

// unblock lifts every active ban inside or covering p, now.
func (m *Manager) unblock(p netip.Prefix) ([]Ban, error) {
	var match []netip.Prefix
	for _, b := range m.journal.Active() {
		if p.Overlaps(b.Prefix) { // one holds the other: p inside b, or b inside p
			match = append(match, b.Prefix)
		}
	}
	return m.lift(match, "by an operator")
}

// lift ends the active bans of match, now, in the journal and the backend; why ends
// their log lines.
func (m *Manager) lift(match []netip.Prefix, why string) ([]Ban, error) {
	ended, err := m.journal.Lift(OpUnban, match, time.Now())
	if err != nil {
		return nil, err
	}
	if len(match) > 0 {
		if err := m.backend.Revoke(match); err != nil {
			return ended, fmt.Errorf("%s: %w", m.backend.Name(), err)
		}
	}
	for _, b := range ended {
		text := fmt.Sprintf("attackalert: Ban on %s lifted %s", b.Prefix, why)
		m.log.Info(text)
		m.event(OpUnban, b, text)
	}
	m.lifted(ended)
	return ended, nil
}

// Close waits for the manager's goroutine (its context must be done) and closes the
// journal and the backend.
func (m *Manager) Close() error {
	m.wg.Wait()
	if m.held.len() > 0 {
		m.commit(nil) // a last try
	}
	m.held.stop()
	if n := m.held.len(); n > 0 {
		m.log.Error(fmt.Sprintf("adminalert: ERROR: ban journal: %d detected bans were never recorded (the journal could not be written) and are not in force", n))
	}
	err := m.journal.Close()
	m.backend.Close()
	return err
}

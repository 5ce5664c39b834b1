package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/journal"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/respond/hostsdeny"
	"github.com/portsentry-go/portsentry/internal/respond/ipset"
	"github.com/portsentry-go/portsentry/internal/respond/nft"
	"github.com/portsentry-go/portsentry/internal/respond/route"
	"github.com/portsentry-go/portsentry/internal/safety"
	"github.com/portsentry-go/portsentry/internal/web"
)

// nftBackend adapts the nftables backend to respond.Backend; the kernel expires its
// elements itself.
type nftBackend struct{ *nft.Backend }

func (nftBackend) Name() string                { return "nftables" }
func (nftBackend) Expire([]netip.Prefix) error { return nil }
func (n nftBackend) Apply(bs []respond.Ban) error {
	out := make([]nft.Ban, len(bs))
	for i, b := range bs {
		out[i] = nft.Ban{Prefix: b.Prefix, Timeout: b.Timeout}
	}
	return n.Backend.Apply(out)
}

// newBackend opens the native backend BLOCK_BACKEND names; nil for "classic".
func newBackend(cfg *config.Config, log *slog.Logger) (respond.Backend, error) {
	switch cfg.BlockBackend {
	case "nftables":
		k, err := nft.New(nft.Options{}, log)
		if err != nil {
			return nil, err
		}
		return nftBackend{k}, nil
	case "route":
		return route.New(route.Options{}, log)
	case "ipset":
		return ipset.New(ipset.Options{}, log)
	case "hostsdeny":
		return hostsdeny.New(hostsdeny.Options{Path: cfg.HostsDenyFile}, log)
	}
	return nil, nil
}

// banBatch bounds how many bans one journal write and one kernel transaction carry.
const banBatch = 1000

// banManager owns the ban lifecycle: new bans are journaled and put into the kernel in
// batches; expiries are recorded as they come due (the kernel expires its elements by
// itself); operators' blocks and unblocks go through it too. The journal is the truth:
// at start its active bans are re-asserted into the kernel.
type banManager struct {
	log     *slog.Logger
	journal *bans.Journal
	kernel  respond.Backend // nil: bans are recorded but only the classic commands block
	backend string
	cfg     func() *config.Config // the configuration in force (BAN_TIME etc. follow reloads)
	// view is the safety gate's current picture; checked is the one the active bans
	// were last checked against.
	view    func() *safety.View
	checked *safety.View
	in      chan bans.Ban
	ops     chan func()   // operators' blocks and unblocks, run by the manager's goroutine
	stopped chan struct{} // closed when that goroutine has ended
	onLift  func([]bans.Ban) // the daemon forgets lifted hosts, so they can be caught again
	// suppressed counts bans refused because BAN_CAP was reached (the daemon's counter).
	suppressed *atomic.Uint64
	pending    atomic.Int64 // queued, not yet committed
	metrics    *web.Metrics
	event      func(web.Event)
	wg         sync.WaitGroup
}

// openBans opens the journal and the backend named at start; BLOCK_BACKEND and
// BAN_JOURNAL take effect at the next start, the other ban keys on reload.
//
// Debian starts one process per protocol (-tcp and -udp); a second process finding the
// journal locked by the first uses its own, named after its modes.
func openBans(cfgFn func() *config.Config, view func() *safety.View, modes []probe.Mode, log *slog.Logger, now time.Time) (*banManager, error) {
	cfg := cfgFn()
	path := cfg.BanJournalPath()
	j, rep, err := bans.Open(path, now)
	if errors.Is(err, bans.ErrLocked) {
		path += "." + modeSuffix(modes)
		log.Warn(fmt.Sprintf("adminalert: %s is used by another portsentry process: using %s", cfg.BanJournalPath(), path))
		j, rep, err = bans.Open(path, now)
	}
	if err != nil {
		return nil, err
	}
	m := &banManager{log: log, journal: j, cfg: cfgFn, view: view, backend: cfg.BlockBackend,
		in: make(chan bans.Ban, banBatch), ops: make(chan func())}
	for _, line := range rep.Corrupt {
		log.Warn(fmt.Sprintf("adminalert: %s:%d: unreadable ban journal line skipped", path, line))
	}
	if rep.Torn {
		log.Warn(fmt.Sprintf("adminalert: %s: incomplete last line (a crash while writing) cut off", path))
	}
	for _, b := range rep.Expired {
		log.Info(fmt.Sprintf("attackalert: Ban on %s expired while PortSentry was down", b.Prefix))
	}
	k, err := newBackend(cfg, log)
	if err == nil && k != nil {
		err = k.Setup()
	}
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("BLOCK_BACKEND %s: %w", cfg.BlockBackend, err)
	}
	m.kernel = k
	m.recheck(now) // a record the gate refuses now is lifted, not re-asserted
	active := j.Active()
	if err := m.assert(active); err != nil {
		log.Error("adminalert: ERROR: re-asserting bans: " + err.Error())
	}
	log.Info(fmt.Sprintf("adminalert: Blocking backend: %s; %d active bans from %s", m.backend, len(active), path))
	return m, nil
}

// assert puts bans into the kernel with their remaining time.
func (m *banManager) assert(list []bans.Ban) error {
	if m.kernel == nil || len(list) == 0 {
		return nil
	}
	now := time.Now()
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
	for len(out) > 0 {
		n := min(len(out), banBatch)
		if err := m.kernel.Apply(out[:n]); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// prefixFor is what a ban on a covers: the host, or its IPv6 network.
func (m *banManager) prefixFor(a netip.Addr) netip.Prefix {
	if bits := m.cfg().BanIPv6Prefix; a.Is6() && bits < 128 {
		p, _ := a.Prefix(bits)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// newBan builds a ban of p lasting d, or with d < 0 the duration its offence count
// earns. With the classic backend a ban on unspoofable evidence is permanent, as
// classic's were (nothing undoes a KILL_ROUTE); one on spoofable evidence lasts
// BAN_TIME in the journal (at least an hour), so that forged probes cannot fill
// BAN_CAP for good and lock detection out.
func (m *banManager) newBan(p netip.Prefix, reason bans.Reason, d time.Duration, now time.Time) bans.Ban {
	b := bans.Ban{Prefix: p, Start: now, Reason: reason}
	cfg := m.cfg()
	switch {
	case m.kernel == nil && !reason.Spoofable:
		d = 0
	case m.kernel == nil:
		d = max(time.Duration(cfg.BanTime)*time.Second, time.Hour)
	case d < 0:
		d = bans.EscalatedDuration(time.Duration(cfg.BanTime)*time.Second,
			time.Duration(cfg.BanTimeMax)*time.Second, m.journal.NextOffence(p))
	}
	if d > 0 {
		b.Until = now.Add(d)
	}
	return b
}

// ban queues a ban; the caller has already applied the rate limit.
func (m *banManager) ban(b bans.Ban) {
	m.pending.Add(1)
	m.in <- b
}

// full reports whether the cap on active bans is reached, counting queued ones. It is
// the cheap early check on the detection path; commit enforces the cap exactly.
func (m *banManager) full() bool {
	limit := m.cfg().BanCap
	return limit > 0 && int64(m.journal.Len())+m.pending.Load() >= int64(limit)
}

// withinCap keeps the renewals of active bans and as many new bans as BAN_CAP leaves
// room for; the rest are refused, counted and forgotten (so those hosts can be caught
// again once there is room).
func (m *banManager) withinCap(batch []bans.Ban) []bans.Ban {
	limit := m.cfg().BanCap
	if limit <= 0 {
		return batch
	}
	room := limit - m.journal.Len()
	var keep, refused []bans.Ban
	for _, b := range batch {
		if _, renewal := m.journal.Get(b.Prefix); renewal || room > 0 {
			if !renewal {
				room--
			}
			keep = append(keep, b)
		} else {
			refused = append(refused, b)
		}
	}
	if len(refused) > 0 {
		if m.suppressed != nil {
			m.suppressed.Add(uint64(len(refused)))
		}
		if m.onLift != nil {
			m.onLift(refused)
		}
	}
	return keep
}

func (m *banManager) start(ctx context.Context) {
	m.stopped = make(chan struct{})
	m.wg.Go(func() {
		defer close(m.stopped)
		m.run(ctx)
	})
}

// run commits queued bans in batches and, while there are bans, records expiries every
// second. With none the ticker stops: an idle daemon's every wakeup costs (a few
// context switches, 100-200 µs of CPU on small virtual machines).
func (m *banManager) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ticking := true
	for {
		select {
		case <-ctx.Done():
			m.drain()
			return
		case b := <-m.in:
			m.commit(m.gather(b))
		case op := <-m.ops:
			op()
		case now := <-tick.C:
			m.recheck(now)
			m.expire(now)
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

// gather takes what else is already queued, up to a batch. It does not wait: a lone
// ban goes out at once, and under load the queue fills while the previous batch is
// committed, so batches grow by themselves.
func (m *banManager) gather(first bans.Ban) []bans.Ban {
	batch := []bans.Ban{first}
	for len(batch) < banBatch {
		select {
		case b := <-m.in:
			batch = append(batch, b)
		default:
			return batch
		}
	}
	return batch
}

func (m *banManager) drain() {
	for {
		select {
		case b := <-m.in:
			m.commit(m.gather(b))
		default:
			return
		}
	}
}

// commit journals a batch, puts it in the kernel, then syncs the journal. Written to the
// journal first: a crash of the daemon between the two leaves a ban the next start
// re-asserts, never a kernel ban nobody knows of; the fsync comes last so that the
// disk's latency is not between the probe and the ban (a power loss takes the kernel's
// bans with it anyway).
func (m *banManager) commit(batch []bans.Ban) {
	defer m.pending.Add(-int64(len(batch)))
	batch = m.withinCap(batch)
	if len(batch) == 0 {
		return
	}
	stored, err := m.journal.AddNoSync(batch...)
	if err != nil {
		m.log.Error("adminalert: ERROR: ban journal: " + err.Error())
		return
	}
	applyErr := m.assert(stored)
	if applyErr != nil {
		m.log.Error("adminalert: ERROR: " + m.backend + ": " + applyErr.Error())
		if m.metrics != nil {
			m.metrics.BackendError(m.backend)
		}
	}
	if err := m.journal.Sync(); err != nil {
		m.log.Error("adminalert: ERROR: ban journal: " + err.Error())
	}
	if applyErr != nil {
		return
	}
	for _, b := range stored {
		text := fmt.Sprintf("attackalert: Host %s has been banned via %s %s", b.Prefix, m.backend, describe(b))
		if m.kernel != nil { // with the classic backend the KILL_ lines already said it
			m.log.Info(text)
		}
		m.record(web.KindBan, b, text)
	}
}

// record counts and publishes a ban's event.
func (m *banManager) record(kind string, b bans.Ban, text string) {
	if m.metrics != nil && kind == web.KindBan {
		m.metrics.Ban(m.backend)
	}
	if m.event != nil {
		m.event(web.Event{Kind: kind, Addr: b.Prefix.String(), Port: b.Reason.Port,
			Mode: string(b.Reason.Mode), Scan: b.Reason.Scan, Text: text})
	}
}

func describe(b bans.Ban) string {
	if b.Permanent() {
		return fmt.Sprintf("permanently (offence %d)", b.Offences)
	}
	return fmt.Sprintf("for %v (offence %d)", b.Until.Sub(b.Start).Round(time.Second), b.Offences)
}

// recheck lifts, when the safety view has changed since the last look, every active
// ban that now covers something protected: a new own address, gateway or resolver, or
// an ignore entry added by a reload. Each is logged with what it covers. The lifted
// host can be caught again, with a ban the gate then narrows.
func (m *banManager) recheck(now time.Time) {
	v := m.view()
	if v == m.checked {
		return
	}
	m.checked = v
	var refused []netip.Prefix
	why := map[netip.Prefix]error{}
	for _, b := range m.journal.Active() {
		if err := v.Check(b.Prefix); err != nil {
			refused = append(refused, b.Prefix)
			why[b.Prefix] = err
		}
	}
	if len(refused) == 0 {
		return
	}
	ended, err := m.journal.Lift(bans.OpUnban, refused, now)
	if err != nil {
		m.log.Error("adminalert: ERROR: ban journal: " + err.Error())
	}
	if m.kernel != nil && len(ended) > 0 {
		if err := m.kernel.Revoke(prefixesOf(ended)); err != nil {
			m.log.Error("adminalert: ERROR: " + m.backend + ": " + err.Error())
		}
	}
	for _, b := range ended {
		text := fmt.Sprintf("adminalert: Ban on %s lifted: %v (the protected addresses changed)", b.Prefix, why[b.Prefix])
		m.log.Warn(text)
		m.record(web.KindUnban, b, text)
	}
	if len(ended) > 0 && m.onLift != nil {
		m.onLift(ended)
	}
}

func prefixesOf(list []bans.Ban) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, b := range list {
		out[i] = b.Prefix
	}
	return out
}

// expire records the bans that have run out.
func (m *banManager) expire(now time.Time) {
	ended, err := m.journal.Lift(bans.OpExpire, m.journal.Due(now), now)
	if err != nil {
		m.log.Error("adminalert: ERROR: ban journal: " + err.Error())
		return
	}
	if len(ended) == 0 {
		return
	}
	if m.kernel != nil {
		if err := m.kernel.Expire(prefixesOf(ended)); err != nil {
			m.log.Error("adminalert: ERROR: " + m.backend + ": " + err.Error())
		}
	}
	for _, b := range ended {
		text := fmt.Sprintf("attackalert: Ban on %s expired", b.Prefix)
		m.log.Info(text)
		m.record(web.KindExpire, b, text)
	}
	if m.onLift != nil {
		m.onLift(ended)
	}
}

// do runs op on the manager's goroutine, as one with the detections' bans and the
// expiries (so BAN_CAP is counted once and the expiry ticker sees operator bans), and
// waits for it. After shutdown it runs op on the caller's goroutine.
func (m *banManager) do(op func()) {
	done := make(chan struct{})
	select {
	case m.ops <- func() { op(); close(done) }:
		<-done
	case <-m.stopped:
		op()
	}
}

// unblock lifts every active ban equal to or inside p, now.
func (m *banManager) unblock(p netip.Prefix) ([]bans.Ban, error) {
	var match []netip.Prefix
	for _, b := range m.journal.Active() {
		if p.Bits() <= b.Prefix.Bits() && p.Contains(b.Prefix.Addr()) || b.Prefix == p {
			match = append(match, b.Prefix)
		}
	}
	ended, err := m.journal.Lift(bans.OpUnban, match, time.Now())
	if err != nil {
		return nil, err
	}
	if m.kernel != nil && len(match) > 0 {
		if err := m.kernel.Revoke(match); err != nil {
			return ended, fmt.Errorf("%s: %w", m.backend, err)
		}
	}
	for _, b := range ended {
		text := fmt.Sprintf("attackalert: Ban on %s lifted by an operator", b.Prefix)
		m.log.Info(text)
		m.record(web.KindUnban, b, text)
	}
	if len(ended) > 0 && m.onLift != nil {
		m.onLift(ended)
	}
	return ended, nil
}

func (m *banManager) close() error {
	m.wg.Wait()
	err := m.journal.Close()
	if m.kernel != nil {
		m.kernel.Close()
	}
	return err
}

// restoreBans carries the journal's active bans into the detector (so a banned host
// is "already blocked" after a restart, as before it) and into the blocked files,
// which are views of the journal.
func (d *Daemon) restoreBans() {
	var lines []entry
	d.mu.Lock()
	for _, b := range d.bans.journal.Active() {
		m := b.Reason.Mode
		if !slices.Contains(d.opts.Modes, m) {
			continue
		}
		a := b.Prefix.Addr()
		if b.Prefix.IsSingleIP() {
			d.det.Mark(m, a)
		}
		lines = append(lines, entry{m, journal.Line(b.Start.Local(), a.String(), a, b.Reason.Port, m.Proto())})
	}
	d.mu.Unlock()
	if len(lines) > 0 {
		if err := d.files.appendBlocked(lines); err != nil {
			d.log.Error("adminalert: ERROR: " + err.Error())
		}
	}
}

// forgetBans makes the detector forget lifted bans' hosts (so their next probe is
// acted on again) and takes them off the blocked files.
func (d *Daemon) forgetBans(ended []bans.Ban) {
	prefixes := make([]netip.Prefix, len(ended))
	d.mu.Lock()
	for i, b := range ended {
		d.det.ForgetPrefix(b.Prefix)
		prefixes[i] = b.Prefix
	}
	d.mu.Unlock()
	if err := d.files.drop(prefixes); err != nil {
		d.log.Error("adminalert: ERROR: " + err.Error())
	}
}

// modeSuffix names a process by its modes ("tcp", "stcp+sudp").
func modeSuffix(modes []probe.Mode) string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	return strings.Join(names, "+")
}

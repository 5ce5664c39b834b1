package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/history"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/respond/hostsdeny"
	"github.com/portsentry-go/portsentry/internal/respond/ipset"
	"github.com/portsentry-go/portsentry/internal/respond/nft"
	"github.com/portsentry-go/portsentry/internal/respond/route"
	"github.com/portsentry-go/portsentry/internal/web"
)

// newBackend opens the native backend BLOCK_BACKEND names; bans.Nop for "classic".
// instance is empty for the first process on a host and names the others (see
// openBans), so that no two processes share entries: one's reconciling or unblocking
// would lift the other's bans.
func newBackend(cfg *config.Config, log *slog.Logger, instance string) (bans.Backend, error) {
	switch cfg.BlockBackend {
	case "nftables":
		return nft.New(nft.Options{Table: nftTable(instance)}, log)
	case "route":
		return route.New(route.Options{Instance: instance}, log)
	case "ipset":
		return ipset.New(ipset.Options{Instance: instance}, log)
	case "hostsdeny":
		return hostsdeny.New(hostsdeny.Options{Path: cfg.HostsDenyFile, Instance: instance}, log)
	}
	return bans.Nop{}, nil
}

// nftTable is the nftables table of an instance: "portsentry", or for a second
// process "portsentry_tcp", "portsentry_udp", "portsentry_stcp_sudp", ...
func nftTable(instance string) string {
	if instance == "" {
		return nft.DefaultTable
	}
	return nft.DefaultTable + "_" + strings.ReplaceAll(instance, "+", "_")
}

// banPolicy is the ban manager's view of the configuration in force.
func (d *Daemon) banPolicy() bans.Policy {
	cfg := d.Config()
	return bans.Policy{BanTime: time.Duration(cfg.BanTime) * time.Second,
		BanTimeMax: time.Duration(cfg.BanTimeMax) * time.Second, BanCap: cfg.BanCap}
}

// openBans opens the journal and the backend named at start (BLOCK_BACKEND and
// BAN_JOURNAL take effect at the next start, the other ban keys on reload) and
// restores the journal's bans into the backend.
//
// Debian starts one process per protocol (-tcp and -udp); a second process finding the
// journal locked by the first uses its own, named after its modes.
func (d *Daemon) openBans(now time.Time) (*bans.Manager, error) {
	cfg, log := d.Config(), d.log
	path, instance := cfg.BanJournalPath(), ""
	j, rep, err := bans.Open(path, now)
	if errors.Is(err, bans.ErrLocked) {
		instance = modeSuffix(d.opts.Modes)
		path += "." + instance
		log.Warn(fmt.Sprintf("adminalert: %s is used by another portsentry process: using %s", cfg.BanJournalPath(), path))
		j, rep, err = bans.Open(path, now)
	}
	if err != nil {
		return nil, err
	}
	for _, line := range rep.Corrupt {
		log.Warn(fmt.Sprintf("adminalert: %s:%d: unreadable ban journal line skipped", path, line))
	}
	if rep.Torn {
		log.Warn(fmt.Sprintf("adminalert: %s: incomplete last line (a crash while writing) cut off", path))
	}
	if rep.ExpireErr != nil {
		log.Error(fmt.Sprintf("adminalert: ERROR: %s: cannot record the bans that expired while PortSentry was down (retrying): %v", path, rep.ExpireErr))
	}
	for _, b := range rep.Expired {
		log.Info(fmt.Sprintf("attackalert: Ban on %s expired while PortSentry was down", b.Prefix))
		d.undoJob(b)(context.Background()) // before detection starts: bounded by KILL_CMD_TIMEOUT
	}
	backend, err := newBackend(cfg, log, instance)
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("BLOCK_BACKEND %s: %w", cfg.BlockBackend, err)
	}
	m := bans.NewManager(bans.Options{Journal: j, Backend: backend, Policy: d.banPolicy, View: d.view, Log: log,
		Hooks: bans.Hooks{
			Lifted:       d.forgetBans,
			Event:        d.banEvent,
			Refused:      func(n int) { d.stats.Suppressed.Add(uint64(n)) },
			BackendError: func() { d.metrics.BackendError(backend.Name()) },
			Repaired: func(r respond.Repair) {
				d.stats.Restored.Add(uint64(r.Restored))
				d.stats.Removed.Add(uint64(r.Removed))
				d.metrics.Repair(backend.Name(), r.Restored, r.Removed)
			},
			Journal: d.fileReport("ban_journal"),
		}})
	if err := m.Restore(now); err != nil {
		m.Close()
		return nil, err
	}
	log.Info(fmt.Sprintf("adminalert: Blocking backend: %s; %d active bans from %s", m.Backend(), m.Len(), path))
	return m, nil
}

// banEvent counts and publishes a ban manager's event, to the dashboard and to the
// fleet (after the ban is applied and journaled: the manager calls it then).
func (d *Daemon) banEvent(op bans.Op, b bans.Ban, text string) {
	if d.fleet != nil {
		d.fleet.Local(op, b)
	}
	kind := map[bans.Op]string{bans.OpBan: web.KindBan, bans.OpUnban: web.KindUnban, bans.OpExpire: web.KindExpire}[op]
	if op == bans.OpBan {
		d.metrics.Ban(d.bans.Backend())
	}
	d.event(web.Event{Kind: kind, Addr: b.Prefix.String(), Port: b.Reason.Port,
		Mode: string(b.Reason.Mode), Scan: b.Reason.Scan, Text: text})
}

// restoreBans carries the journal's active bans into the detector (so a banned host
// is "already blocked" after a restart, as before it) and into the blocked files,
// which are views of the journal.
func (d *Daemon) restoreBans() {
	var lines []entry
	d.mu.Lock()
	for _, b := range d.bans.Active() {
		m := b.Reason.Mode
		if !slices.Contains(d.opts.Modes, m) {
			continue
		}
		a := b.Prefix.Addr()
		if b.Prefix.IsSingleIP() {
			d.det.Mark(m, a)
		}
		lines = append(lines, entry{m, history.Line(b.Start.Local(), a.String(), a, b.Reason.Port, m.Proto())})
	}
	d.mu.Unlock()
	if len(lines) > 0 {
		if err := d.files.appendBlocked(lines); err != nil {
			d.log.Error("adminalert: ERROR: " + err.Error())
		}
	}
}

// forgetBans makes the detector forget lifted bans' hosts (so their next probe is
// acted on again), takes them off the blocked files and undoes what the classic
// commands did under them. A host with commands to undo is forgotten once they are
// undone: acted on before, its new commands would race the undo of the old ones.
func (d *Daemon) forgetBans(ended []bans.Ban) {
	prefixes := make([]netip.Prefix, len(ended))
	d.mu.Lock()
	for i, b := range ended {
		if len(b.Reason.Classic) == 0 {
			d.det.ForgetPrefix(b.Prefix)
		}
		prefixes[i] = b.Prefix
	}
	d.mu.Unlock()
	if err := d.files.drop(prefixes); err != nil {
		d.log.Error("adminalert: ERROR: " + err.Error())
	}
	for _, b := range ended {
		if len(b.Reason.Classic) > 0 {
			d.undoClassic(b)
		}
	}
}

// undoClassic undoes what the classic commands did under an ended ban, as the
// configuration in force says, logs what stays because no undo key is set, and then
// forgets the ban's host. It runs on the command pool: the manager's goroutine must
// not wait for commands. Bans lifted at start, before the pool exists (Restore's
// safety recheck), are undone at once.
func (d *Daemon) undoClassic(b bans.Ban) {
	undo := d.undoJob(b)
	job := func(ctx context.Context) {
		undo(ctx)
		d.forgetPrefix(b.Prefix)
	}
	if d.commands == nil {
		job(context.Background())
		return
	}
	d.commands.run(job, func() {
		d.stats.Failures.Add(1)
		d.log.Error(fmt.Sprintf("attackalert: ERROR: command queue full: what the KILL_ commands did under the ban on %s is not undone", b.Prefix))
		d.forgetPrefix(b.Prefix)
	})
}

func (d *Daemon) forgetPrefix(p netip.Prefix) {
	d.mu.Lock()
	d.det.ForgetPrefix(p)
	d.mu.Unlock()
}

// undoJob logs what of b's classic actions stays and returns the undo of the others.
func (d *Daemon) undoJob(b bans.Ban) func(context.Context) {
	responder := d.state.Load().responder
	for _, s := range d.stays(b) {
		d.log.Warn(fmt.Sprintf("attackalert: Ban on %s ended; %s", b.Prefix, s))
	}
	return func(ctx context.Context) {
		for _, done := range b.Reason.Classic {
			responder.Undo(ctx, done)
		}
	}
}

// stays says what the classic commands did under b that stays when it ends.
func (d *Daemon) stays(b bans.Ban) []string {
	responder := d.state.Load().responder
	var out []string
	for _, done := range b.Reason.Classic {
		out = append(out, responder.Stays(done)...)
	}
	return out
}

// modeSuffix names a process by its modes ("tcp", "stcp+sudp").
func modeSuffix(modes []probe.Mode) string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	return strings.Join(names, "+")
}

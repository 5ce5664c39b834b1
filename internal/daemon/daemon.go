// Package daemon wires the parts together: sensors produce probes, the detector judges
// them, and a small pool of workers logs, responds and records, off the detection path.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/fleet"
	"github.com/portsentry-go/portsentry/internal/listening"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/safety"
	"github.com/portsentry-go/portsentry/internal/sensor"
	"github.com/portsentry-go/portsentry/internal/web"
)

// DefaultConfigPath is where Debian keeps the config.
const DefaultConfigPath = "/etc/portsentry/portsentry.conf"

// Queue and pool sizes. Each worker has its own queue and every verdict about one host
// goes to the same worker, so a host's log lines keep their order (its "already
// blocked" line never overtakes the detection that blocked it). A slow KILL_ command
// occupies one worker; detection goes on and verdicts queue up to queueSize per worker,
// beyond which they are dropped and counted (a dropped "respond" verdict is forgotten,
// so the host's next hit tries again).
const (
	queueSize = 1024
	workers   = 4
)

// Where the resolvers come from (systemd-resolved lists its upstream servers in the
// second file), and how often gateways and resolvers are re-read.
const (
	resolvConf   = "/etc/resolv.conf"
	resolvedConf = "/run/systemd/resolve/resolv.conf"
	infraRefresh = 10 * time.Second
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string // "" means DefaultConfigPath
	Modes      []probe.Mode
	Log        *slog.Logger
	// OwnAddrs tracks the host's addresses; nil means a new tracker on this namespace.
	OwnAddrs *netaddr.OwnAddrs
	Version  string // for the status command
	// DropPrivileges narrows the process's capabilities once the sockets are open
	// (the real daemon; tests running a Daemon in their own process keep theirs).
	DropPrivileges bool
}

// Daemon is one running PortSentry.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	state atomic.Pointer[state] // everything a reload replaces

	// startCfg is the configuration the daemon started with: the keys a reload cannot
	// apply (config.PendingRestart) keep its values until the next start.
	startCfg *config.Config

	own   *netaddr.OwnAddrs
	infra *netaddr.Infra // gateways and resolvers: never acted on
	files *files
	rec   *recorder // writes to files, in batches

	mu  sync.Mutex // guards det
	det *detect.Detector

	bans  *bans.Manager
	fleet *fleet.Agent // nil without FLEET_NATS
	// commandCaps is set when commands were given capabilities at start.
	commandCaps bool
	started     time.Time
	metrics     *web.Metrics
	events      *web.Events
	jsonLog     *jsonLog    // nil without JSON_LOG
	flood       *floodMeter // guarded by mu
	notify      *notifier   // systemd's readiness protocol
	// protected caches the safety view built from the own addresses, the ignore set
	// and the gateways and resolvers.
	protected atomic.Pointer[protected]
	// stillFree, set with the stealth modes, takes a fresh look at the local sockets
	// before a stealth probe is acted on: false if its port has just been taken. (No
	// pointer to the probe: passed to a function value, the probe would escape to the
	// heap.)
	stillFree func(probe.Proto, netip.AddrPort, time.Time) bool
	connect   map[probe.Mode]*sensor.Connect
	stealth   *sensor.Stealth    // nil without stealth modes
	listening *listening.Tracker // local services, for smart verify; nil without stealth modes
	jobs      [workers]chan detect.Verdict
	commands  *commandPool    // classic KILL_ commands, off the workers
	ctx       context.Context // for responses; cancelled at shutdown
	stats     Stats
}

// state is the configuration-derived part of the daemon, swapped whole on reload.
type state struct {
	cfg       *config.Config
	ignore    *netaddr.Set
	responder *respond.Classic
	resolver  *resolver
}

// Stats are the daemon's running counters.
type Stats struct {
	// Ignored, Impossible (sources no real host sends from), Suppressed (probes held
	// back because their rank's BAN_RATE budget was spent, bans refused because BAN_CAP
	// was reached), Repeated (hits from already-blocked hosts counted instead of
	// logged) and Reloads are also metrics, read from here when scraped.
	web.Totals
	Hits, Detections, Responses, Failures, QueueDrops atomic.Uint64
	// Dismissed counts stealth probes found, at the last moment, to be aimed at a port
	// a local service had just opened.
	Dismissed atomic.Uint64
	// Restored and Removed count what reconciling the backend with the ban journal
	// changed: bans put back into the system, entries of ours taken out.
	Restored, Removed atomic.Uint64
}

// String renders the counters for the log.
func (s *Stats) String() string {
	return fmt.Sprintf("hits=%d ignored=%d impossible=%d detections=%d responses=%d failures=%d queue_drops=%d suppressed=%d repeated=%d dismissed=%d reloads=%d",
		s.Hits.Load(), s.Ignored.Load(), s.Impossible.Load(), s.Detections.Load(), s.Responses.Load(), s.Failures.Load(),
		s.QueueDrops.Load(), s.Suppressed.Load(), s.Repeated.Load(), s.Dismissed.Load(), s.Reloads.Load())
}

// New loads the configuration and ignore file; it opens nothing yet.
func New(opts Options) (*Daemon, error) {
	if opts.ConfigPath == "" {
		opts.ConfigPath = DefaultConfigPath
	}
	if len(opts.Modes) == 0 {
		return nil, errors.New("no mode given: use one or more of -tcp -udp -stcp -sudp -atcp -audp")
	}
	d := &Daemon{opts: opts, log: opts.Log, own: opts.OwnAddrs, connect: map[probe.Mode]*sensor.Connect{},
		events: web.NewEvents(web.DefaultEvents), flood: newFloodMeter(), notify: newNotifier()}
	d.metrics = web.NewMetrics(&d.stats.Totals)
	d.metrics.SetBuildInfo(cmp.Or(opts.Version, "dev"))
	st, err := d.load((*config.Config).ValidateStart)
	if err != nil {
		return nil, err
	}
	d.state.Store(st)
	d.startCfg = st.cfg
	d.det = detect.New(st.cfg.ScanTrigger, detect.DefaultTableSize, st.cfg.BanRate)
	d.det.SetResponse(d.response(st.cfg)) // again once the ban backend is open
	if d.own == nil {
		d.own = netaddr.NewOwnAddrs(opts.Log)
	}
	d.infra = netaddr.NewInfra(opts.Log, resolvConf, resolvedConf)
	return d, nil
}

// LoadConfig reads path; when path is the default and does not exist, it returns the
// built-in defaults (Debian's shipped settings) so the daemon can be tried at once.
func LoadConfig(path string) (*config.Config, diag.List, error) {
	cfg, diags, err := config.Load(path)
	if err != nil && path == DefaultConfigPath && errors.Is(err, fs.ErrNotExist) {
		return config.Default(), nil, nil
	}
	return cfg, diags, err
}

// load builds a fresh state from the config file and the ignore files. check is
// ValidateStart at start and ValidateReload on reload: the checks check-config makes
// too (values, dashboard, interfaces, and files the daemon writes that are not regular
// files). Every problem is logged with its file and line. It fails on config errors
// and on an ignore file that exists but cannot be read (not a regular file, too large,
// no permission): running without the hosts it lists could get one of them blocked.
// Bad ignore lines are skipped.
func (d *Daemon) load(check func(*config.Config, []probe.Mode) diag.List) (*state, error) {
	cfg, diags, err := LoadConfig(d.opts.ConfigPath)
	d.logWarnings(diags)
	if err != nil {
		return nil, err
	}
	if cfg.Source == config.DefaultsSource {
		d.log.Info(fmt.Sprintf("adminalert: No config file at %s: running on built-in defaults (Debian's shipped settings)", d.opts.ConfigPath))
	}
	if diags := check(cfg, d.opts.Modes); diags.HasErrors() {
		return nil, diags.Errors()
	} else {
		d.logWarnings(diags)
	}
	files, lines, unreadable := LoadIgnore(cfg)
	for _, dg := range lines {
		// Bad ignore lines are skipped, not fatal: say so at the error's level.
		d.log.Warn("adminalert: " + dg.String())
	}
	if len(unreadable) > 0 {
		return nil, unreadable
	}
	var ignore []netip.Prefix
	for _, f := range files {
		ignore = append(ignore, f.Prefixes...)
	}
	return &state{
		cfg:       cfg,
		ignore:    netaddr.NewSet(ignore),
		responder: respond.NewClassic(d.classicConfig(cfg), d.log),
		resolver:  newResolver(cfg.ResolveHost),
	}, nil
}

// IgnoreFile is one ignore file read, and its entries.
type IgnoreFile struct {
	Path     string
	Prefixes []netip.Prefix
}

// LoadIgnore reads IGNORE_FILE and, beside it, Debian's IGNORE_FILE.static (Debian's
// init script merged the two at start; reading both makes that step unnecessary): the
// daemon's ignore set, and what check-config reports. It returns the files read, the
// problems of their lines (skipped), and an Error at IGNORE_FILE's line for each file
// that exists but cannot be read (a directory or FIFO among them: they are not regular
// files). Both files missing is ValidateStart's warning.
func LoadIgnore(cfg *config.Config) (files []IgnoreFile, lines, unreadable diag.List) {
	if cfg.IgnoreFile == "" {
		return nil, nil, nil
	}
	for _, p := range []string{cfg.IgnoreFile, cfg.IgnoreFile + ".static"} {
		prefixes, diags, err := netaddr.LoadIgnore(p)
		lines = append(lines, diags...)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			unreadable = append(unreadable, diag.Diagnostic{File: cfg.Source, Line: cfg.Line("IGNORE_FILE"),
				Severity: diag.Error, Msg: "IGNORE_FILE: " + err.Error()})
		default:
			files = append(files, IgnoreFile{Path: p, Prefixes: prefixes})
		}
	}
	return files, lines, unreadable
}

// logWarnings logs the warnings of a list; its errors are the caller's to report.
func (d *Daemon) logWarnings(l diag.List) {
	for _, dg := range l {
		if dg.Severity == diag.Warning {
			d.log.Warn("adminalert: " + dg.String())
		}
	}
}

func (d *Daemon) classicConfig(c *config.Config) respond.ClassicConfig {
	return respond.ClassicConfig{
		BlockTCP:        c.BlockTCP,
		BlockUDP:        c.BlockUDP,
		KillRoute:       c.KillRoute,
		KillHostsDeny:   c.KillHostsDeny,
		KillRunCmd:      c.KillRunCmd,
		KillRunCmdFirst: c.KillRunCmdFirst,
		KillRouteUndo:   c.KillRouteUndo,
		KillRunCmdUndo:  c.KillRunCmdUndo,
		HostsDenyFile:   c.HostsDenyFile,
		Timeout:         c.CommandTimeout,
		OnCommand:       d.metrics.Command,
	}
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.state.Load().cfg }

// view returns the safety view every decision and every ban is checked against: the
// ignore file, the host's own addresses and networks (loopback and the unspecified
// addresses are always in), and its gateways and DNS resolvers, which a spoofed probe
// would otherwise get banned (SPEC §8), plus the sources no real host sends from. It
// is rebuilt when one of its parts has changed (an address, a reload, a new gateway);
// a batch of probes fetches it once.
func (d *Daemon) view() *safety.View {
	own, ignore, infra := d.own.Set(), d.state.Load().ignore, d.infra.Set()
	p := d.protected.Load()
	if p == nil || p.own != own || p.ignore != ignore || p.infra != infra {
		v := safety.NewView(safety.Inputs{Own: d.own.Addrs(), Networks: d.own.Networks(),
			Gateways: d.infra.Gateways(), Resolvers: d.infra.Resolvers(), Ignore: ignore})
		p = &protected{own: own, ignore: ignore, infra: infra, view: v}
		d.protected.Store(p)
	}
	return p.view
}

// protected is the view, with the sets it was built from.
type protected struct {
	own, ignore, infra *netaddr.Set
	view               *safety.View
}

// Handle is the connect sensors' entry point: judge the probe and queue whatever needs
// logging or action. It never blocks.
func (d *Daemon) Handle(p probe.Probe) {
	var t tally
	d.mu.Lock()
	d.judge(&p, &t, d.view())
	d.mu.Unlock()
	t.flush(d)
}

// HandleBatch judges probes in order, as Handle does, for the stealth sensor, which
// hands over the probes of one ring block at a time. The detector's lock is taken once
// and the counters are added to once per batch: under a flood, atomic operations, not
// the judging itself, would otherwise be most of the cost of a packet.
func (d *Daemon) HandleBatch(ps []probe.Probe) {
	var t tally
	d.mu.Lock()
	view := d.view()
	for i := range ps {
		d.judge(&ps[i], &t, view)
	}
	d.mu.Unlock()
	t.flush(d)
}

// tally gathers a batch's counts; flush adds them to the shared counters.
type tally struct {
	hits, ignored, impossible, suppressed, repeated, queueDrops uint64
	// Hits per mode and scan type, kept as runs: a batch is mostly one kind of probe.
	run        uint64
	mode, scan string
}

func (t *tally) hit(d *Daemon, p *probe.Probe) {
	t.hits++
	if t.run > 0 && (string(p.Mode) != t.mode || p.ScanType != t.scan) {
		d.metrics.Hit(t.mode, t.scan, t.run)
		t.run = 0
	}
	t.run++
	t.mode, t.scan = string(p.Mode), p.ScanType
}

func (t *tally) flush(d *Daemon) {
	if t.run > 0 {
		d.metrics.Hit(t.mode, t.scan, t.run)
	}
	add := func(c *atomic.Uint64, n uint64, metric func(uint64)) {
		if n > 0 {
			c.Add(n)
			if metric != nil {
				metric(n)
			}
		}
	}
	add(&d.stats.Hits, t.hits, nil)
	add(&d.stats.Ignored, t.ignored, nil)
	add(&d.stats.Impossible, t.impossible, nil)
	add(&d.stats.Suppressed, t.suppressed, nil)
	add(&d.stats.Repeated, t.repeated, nil)
	add(&d.stats.QueueDrops, t.queueDrops, nil)
}

// judge runs one probe through the detector (d.mu held) and queues its verdict.
func (d *Daemon) judge(p *probe.Probe, t *tally, view *safety.View) {
	p.Src = netip.AddrPortFrom(probe.Canonical(p.Src.Addr()), p.Src.Port())
	v := d.det.Judge(p, view.Source(p.Src.Addr()))
	switch v.Action {
	case detect.Ignored: // silent and uncounted by the detector (SPEC §4)
		t.hits++
		t.ignored++
		return
	case detect.Impossible:
		t.hits++
		t.impossible++
		return
	}
	t.hit(d, p)
	switch v.Action {
	case detect.Counted:
		return
	case detect.Repeated:
		t.repeated++
		return
	case detect.Suppressed:
		t.suppressed++
		d.flood.held(p, &v)
		return
	case detect.Respond:
		// A stealth probe's port may have been taken by a service since the last
		// periodic look at the sockets (once a second): look again, as of the packet's
		// time. It runs under d.mu, so that look (a few sock_diag calls, at most one per
		// protocol per 10 ms) briefly holds up the other sensors; only hosts about to be
		// acted on need it.
		if d.stillFree != nil && !p.Mode.Connect() && !d.stillFree(p.Proto, p.Dst, p.Time) {
			d.stats.Dismissed.Add(1)
			return
		}
		d.det.Mark(p.Mode, p.Src.Addr()) // before the response runs: see Judge
	}
	q := d.jobs[shard(p.Src.Addr())]
	if v.Action == detect.AlreadyBlocked && len(q) >= cap(q)/2 {
		// The second half of a queue is kept for hosts not yet acted on: a flood from
		// one banned host must not take the slots new scanners need.
		d.det.Unsay(p.Mode, p.Src.Addr(), v)
		t.repeated++
		return
	}
	select {
	case q <- detect.Verdict{Probe: *p, Decision: v}:
	default:
		t.queueDrops++
		if v.Action == detect.Respond {
			d.det.Forget(p.Mode, p.Src.Addr())
		}
	}
}

// shard picks the worker for a host: a cheap hash of its address bytes.
func shard(a netip.Addr) int {
	b := a.As16()
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % workers)
}

func (d *Daemon) forget(m probe.Mode, a netip.Addr) {
	d.mu.Lock()
	d.det.Forget(m, a)
	d.mu.Unlock()
}

// response is what the detector's Respond verdicts follow under cfg.
func (d *Daemon) response(cfg *config.Config) detect.Response {
	return detect.Response{BlockTCP: int(cfg.BlockTCP), BlockUDP: int(cfg.BlockUDP),
		Native: d.bans != nil && d.bans.Native(), UnspoofableOnly: cfg.UnspoofableOnly}
}

// Run starts everything, serves until ctx is done, and shuts down cleanly. Each value
// received on reload triggers a configuration reload.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	stopWatchers := d.startWatchers(ctx)
	defer stopWatchers()
	cfg := d.Config()
	if err := d.openStores(cfg); err != nil {
		return err
	}
	stopWorkers := d.startWorkers(ctx) // first: the manager queues undos on their command pool
	banCtx, stopBans := context.WithCancel(context.WithoutCancel(ctx))
	d.bans.Start(banCtx)
	stopFleet := d.runFleet(ctx)
	srv, webSrv := d.listenControl(cfg), d.startWeb(cfg)
	err := d.startSensors(ctx, cfg)
	if d.stealth != nil {
		sst := d.stealth.Stats()
		d.metrics.SetCapture(func() (uint64, uint64) { return sst.Frames.Load(), sst.KernelDrop.Load() })
	}
	if err == nil {
		d.dropPrivileges(cfg)
		d.log.Info("adminalert: PortSentry is now active and listening.")
		d.notify.ready(d.statusLine())
		d.serve(ctx, reload)
		d.notify.stopping()
		d.log.Info("securityalert: PortSentry is shutting down")
		d.log.Info("adminalert: PortSentry is shutting down")
	}
	d.stopSensors()
	if srv != nil {
		srv.Close()
	}
	if webSrv != nil {
		webSrv.Close()
	}
	stopWorkers()
	stopFleet() // what it has not published yet, the next start publishes from the journal
	stopBans()  // after the workers: their last bans are committed first
	d.log.Info("adminalert: totals: " + d.stats.String())
	d.notify.close()
	return errors.Join(err, d.closeStores())
}

// startWatchers follows the host's addresses, gateways and resolvers.
func (d *Daemon) startWatchers(ctx context.Context) (stop func()) {
	if err := d.own.Start(ctx); err != nil {
		d.log.Warn("adminalert: ERROR: cannot follow this host's addresses, retrying: " + err.Error())
	}
	if err := d.infra.Start(ctx, infraRefresh); err != nil {
		d.log.Warn("adminalert: ERROR: cannot read gateways or resolvers: " + err.Error())
	}
	return func() { d.infra.Stop(); d.own.Stop() }
}

// openStores opens what the daemon writes: history and blocked files, the ban journal
// (carrying its bans into the kernel, the detector and the blocked files) and JSON_LOG.
func (d *Daemon) openStores(cfg *config.Config) error {
	f, err := openFiles(cfg, d.opts.Modes, d.fileReport)
	if err != nil {
		return err
	}
	d.files = f
	d.rec = newRecorder(f, d.log)
	d.started = time.Now()
	if d.bans, err = d.openBans(d.started); err != nil {
		d.rec.close()
		d.files.close()
		return err
	}
	d.metrics.SetActiveBans(d.bans.Backend(), func() float64 { return float64(d.bans.Len()) })
	d.mu.Lock()
	d.det.SetResponse(d.response(cfg))
	d.mu.Unlock()
	d.restoreBans()
	d.openFleet(cfg) // before the manager starts: it tells the agent of every ban
	if cfg.JSONLog != "" {
		if d.jsonLog, err = openJSONLog(cfg.JSONLog, d.log, d.fileReport("json_log")); err != nil {
			d.log.Error("adminalert: ERROR: JSON_LOG: " + err.Error())
		}
	}
	return nil
}

func (d *Daemon) closeStores() error {
	berr := d.bans.Close()
	d.rec.close()
	if d.jsonLog != nil {
		d.jsonLog.close()
	}
	return errors.Join(berr, d.files.close())
}

// startWorkers starts the response workers. The returned function closes their
// queues and waits: queued responses get a bounded time to finish, then running
// commands are cut short.
func (d *Daemon) startWorkers(ctx context.Context) (stop func()) {
	respCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.ctx = respCtx
	d.commands = newCommandPool(respCtx)
	var wg sync.WaitGroup
	for i := range d.jobs {
		d.jobs[i] = make(chan detect.Verdict, queueSize)
		wg.Go(func() {
			for v := range d.jobs[i] {
				d.process(v)
			}
		})
	}
	return func() {
		for _, q := range d.jobs {
			close(q)
		}
		timer := time.AfterFunc(10*time.Second, cancel)
		wg.Wait()
		d.commands.close()
		timer.Stop()
		cancel()
	}
}

func (d *Daemon) serve(ctx context.Context, reload <-chan os.Signal) {
	tick := time.NewTicker(floodReport) // also the pace of the queue-drop warnings and STATUS
	defer tick.Stop()
	// The watchdog's keep-alives come from this loop, so systemd restarts a daemon whose
	// main loop is stuck (a nil channel never fires without a watchdog).
	var watchdog <-chan time.Time
	if d.notify.watchdog > 0 {
		t := time.NewTicker(d.notify.watchdog)
		defer t.Stop()
		watchdog = t.C
	}
	var lastDrops uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			d.notify.reloading()
			d.reload()
			d.notify.ready(d.statusLine())
		case <-d.flood.begun:
			d.reportFlood(true)
		case <-watchdog:
			d.notify.alive()
		case <-tick.C:
			if n := d.stats.QueueDrops.Load(); n != lastDrops {
				d.log.Warn(fmt.Sprintf("adminalert: response queue full: %d detections dropped so far", n))
				lastDrops = n
			}
			d.reportFlood(false)
			d.notify.status(d.statusLine())
		}
	}
}

// statusLine is the one-line state systemctl status shows.
func (d *Daemon) statusLine() string {
	return fmt.Sprintf("%d detections, %d active bans (%s), %d probes held back",
		d.stats.Detections.Load(), d.bans.Len(), d.bans.Backend(), d.stats.Suppressed.Load())
}

func (d *Daemon) startSensors(ctx context.Context, cfg *config.Config) error {
	for _, m := range d.opts.Modes {
		if m.Connect() {
			c := sensor.NewConnect(m, d.log, d.Handle)
			d.connect[m] = c
			// A mode that could bind none of its ports watches nothing; classic went on
			// and said it was active. Refuse instead, so the service manager sees it.
			if want := portsFor(cfg, m); len(c.Update(want, cfg.PortBanner)) == 0 && len(want) > 0 {
				return fmt.Errorf("-%s: none of the %d %s ports could be bound (is another PortSentry running?): not starting a mode that watches nothing",
					m, len(want), m.Proto())
			}
		}
	}
	if sm := stealthModes(d.opts.Modes); len(sm) > 0 {
		return d.startStealth(ctx, cfg, sm)
	}
	return nil
}

func (d *Daemon) stopSensors() {
	for _, c := range d.connect {
		c.Close()
	}
	if d.stealth != nil {
		d.stealth.Close()
		d.log.Info("adminalert: stealth sensor: " + d.stealth.Stats().String())
	}
	if d.listening != nil {
		d.listening.Stop()
	}
}

func portsFor(cfg *config.Config, m probe.Mode) []uint16 {
	if m.Proto() == probe.UDP {
		return cfg.UDPPorts
	}
	return cfg.TCPPorts
}

// reload re-reads the config and ignore file. A config with errors is rejected and the
// running one stays in force; otherwise listeners are adjusted (unchanged ports are not
// touched), counters and blocked hosts are kept, and files are reopened if moved.
func (d *Daemon) reload() {
	d.log.Info(fmt.Sprintf("adminalert: Reloading configuration from %s", d.opts.ConfigPath))
	st, err := d.load((*config.Config).ValidateReload)
	if err != nil {
		d.rejectReload(err)
		return
	}
	if err := d.files.reopen(st.cfg, d.opts.Modes); err != nil {
		d.rejectReload(err)
		return
	}
	old := d.Config()
	d.state.Store(st)
	d.mu.Lock()
	d.det.SetTrigger(st.cfg.ScanTrigger)
	d.det.SetResponse(d.response(st.cfg))
	if st.cfg.BanRate != old.BanRate {
		d.det.SetRate(st.cfg.BanRate)
	}
	d.mu.Unlock()
	for m, c := range d.connect {
		c.Update(portsFor(st.cfg, m), st.cfg.PortBanner)
	}
	if d.stealth != nil {
		if err := d.stealth.Update(buildWatch(st.cfg, stealthModes(d.opts.Modes))); err != nil {
			d.log.Error("adminalert: ERROR: " + err.Error())
		}
	}
	d.checkCommandPrivileges(st.cfg)
	d.stats.Reloads.Add(1)
	d.log.Info("adminalert: " + reloadedMessage(d.startCfg, st.cfg, d.log))
}

// reloadedMessage logs, one line each, the keys of next that a reload cannot apply and
// that differ from the configuration of the start, and returns the final line of the
// reload, which counts and names them.
func reloadedMessage(started, next *config.Config, log *slog.Logger) string {
	pending := config.PendingRestart(started, next)
	if len(pending) == 0 {
		return "Configuration reloaded."
	}
	var names []string
	for _, p := range pending {
		log.Warn("adminalert: " + p.String())
		names = append(names, p.Key)
	}
	if len(names) == 1 {
		return "Configuration reloaded (1 key needs a restart: " + names[0] + ")"
	}
	return fmt.Sprintf("Configuration reloaded (%d keys need a restart: %s)", len(names), strings.Join(names, ", "))
}

// rejectReload logs why a reload failed, a line per problem, each naming file and line.
func (d *Daemon) rejectReload(err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		d.log.Error("adminalert: ERROR: " + line)
	}
	d.log.Error("adminalert: ERROR: reload rejected, the running configuration stays in force")
}

package web

import (
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// Metrics holds the daemon's Prometheus metrics in a private registry (nothing is
// registered with the global default one). Every method is safe for concurrent use
// and cheap enough to call per hit: the label children for the six modes and their
// scan types are created up front, so Hit and Detection neither allocate nor lock
// for them. docs/api.md lists the metrics.
type Metrics struct {
	reg *prometheus.Registry

	hits       *prometheus.CounterVec
	hitByMode  [probe.ModeCount][len(scanLabels)]prometheus.Counter
	detections *prometheus.CounterVec
	detByMode  [probe.ModeCount]prometheus.Counter

	totals                    []prometheus.Collector // read from Totals at scrape time
	commands, commandFailures prometheus.Counter

	bans, backendErrors         *prometheus.CounterVec
	repairs, writeErrors, drops *prometheus.CounterVec
	queued                      *prometheus.GaugeVec
	mu                          sync.RWMutex
	banBy, errBy                map[string]prometheus.Counter

	active  *activeCollector
	capture *captureCollector
	fleet   *FleetMetrics // nil until Fleet is called
}

// The scan label's values. A classic scan string maps to one of these (scanIndex), so
// the label has a small fixed set of values whatever the sensors report.
var scanLabels = [...]string{"connect", "syn", "fin", "null", "xmas", "unknown", "udp", "other"}

const (
	scanConnect = iota
	scanSYN
	scanFIN
	scanNULL
	scanXMAS
	scanUnknown
	scanUDP
	scanOther
)

// modeIndex returns the mode's position in probe.Modes, or -1.
func modeIndex(mode string) int {
	if i := probe.Mode(mode).Index(); i < probe.ModeCount {
		return i
	}
	return -1
}

// scanIndex maps a scan type as the sensors report it (the classic strings, "" for a
// connect-mode hit and for UDP stealth) or an already short label to a scanLabels index.
func scanIndex(mode, scan string) int {
	switch scan {
	case "":
		switch mode {
		case "sudp", "audp":
			return scanUDP
		case "stcp", "atcp":
			return scanUnknown
		}
		return scanConnect
	case packet.ScanSYN, "syn":
		return scanSYN
	case packet.ScanFIN, "fin":
		return scanFIN
	case packet.ScanNULL, "null":
		return scanNULL
	case packet.ScanXMAS, "xmas":
		return scanXMAS
	case "connect":
		return scanConnect
	case "udp":
		return scanUDP
	case "unknown":
		return scanUnknown
	}
	if strings.HasPrefix(scan, "Unknown Type") {
		return scanUnknown
	}
	return scanOther
}

// ScanLabel is the value of the scan label that Hit records for a mode and scan type.
func ScanLabel(mode, scan string) string { return scanLabels[scanIndex(mode, scan)] }

// Totals are counters the daemon keeps for its status and shutdown summary; the
// metrics read them when scraped, so that each event is counted once.
type Totals struct {
	Ignored, Impossible, Suppressed, Repeated, Reloads atomic.Uint64
}

// NewMetrics creates the metrics, with the Go runtime and process collectors
// alongside; t holds the counters the daemon keeps itself (nil: none are counted).
func NewMetrics(t *Totals) *Metrics {
	if t == nil {
		t = &Totals{}
	}
	counter := func(name, help string, c *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(c.Load()) })
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_hits_total",
			Help: "Probes seen by the sensors (before the ignore set and the trigger count), by mode and scan type.",
		}, []string{"mode", "scan"}),
		detections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_detections_total",
			Help: "Hosts that crossed the trigger and were acted on, by mode.",
		}, []string{"mode"}),
		totals: []prometheus.Collector{
			counter("portsentry_ignored_total",
				"Hits from ignored addresses (the ignore file and the host's own addresses).", &t.Ignored),
			counter("portsentry_suppressed_total",
				"Probes held back because the response budget (BAN_RATE) of their kind of evidence was spent (a flood), and bans refused because BAN_CAP was reached.", &t.Suppressed),
			counter("portsentry_impossible_total",
				"Probes from sources no real host sends from (multicast, broadcast, reserved), never acted on.", &t.Impossible),
			counter("portsentry_repeated_total",
				"Hits from already-blocked hosts that were counted instead of logged one by one.", &t.Repeated),
			counter("portsentry_reloads_total", "Configuration reloads (SIGHUP).", &t.Reloads),
		},
		commands: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_commands_total",
			Help: "KILL_ROUTE, KILL_HOSTS_DENY and KILL_RUN_CMD commands run.",
		}),
		commandFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_command_failures_total",
			Help: "Commands that failed (non-zero exit, signal, timeout or could not start).",
		}),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_bans_total",
			Help: "Bans imposed, by blocking backend.",
		}, []string{"backend"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_backend_errors_total",
			Help: "Failed operations of a blocking backend, by backend.",
		}, []string{"backend"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_backend_repairs_total",
			Help: "Entries the periodic reconciliation changed in the system: bans the journal holds that were missing (restored) and entries of ours the journal does not hold (removed).",
		}, []string{"backend", "what"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_write_errors_total",
			Help: "Failed writes and fsyncs of the daemon's files (a full disk, a quota, an I/O error), by file.",
		}, []string{"file"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_write_dropped_total",
			Help: "Lines given up on because a file could not be written for so long that its queue filled, by file (ban_journal: bans refused).",
		}, []string{"file"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portsentry_write_queued",
			Help: "Lines waiting for a file that cannot be written now, by file (ban_journal: bans waiting for their record).",
		}, []string{"file"}),
		banBy:   map[string]prometheus.Counter{},
		errBy:   map[string]prometheus.Counter{},
		active:  newActiveCollector(),
		capture: newCaptureCollector(),
	}
	// The combinations the sensors produce exist from the start (at zero), so that
	// rate() works from the first hit and lookups are array reads.
	for mi, m0 := range probe.Modes {
		mode := string(m0)
		var scans []int
		switch m0 {
		case probe.ModeTCP, probe.ModeUDP:
			scans = []int{scanConnect}
		case probe.ModeSTCP, probe.ModeATCP:
			scans = []int{scanSYN, scanFIN, scanNULL, scanXMAS, scanUnknown}
		default:
			scans = []int{scanUDP}
		}
		for _, si := range scans {
			m.hitByMode[mi][si] = m.hits.WithLabelValues(mode, scanLabels[si])
		}
		m.detByMode[mi] = m.detections.WithLabelValues(mode)
	}
	m.reg.MustRegister(m.totals...)
	m.reg.MustRegister(m.hits, m.detections,
		m.commands, m.commandFailures, m.bans, m.backendErrors, m.repairs, m.writeErrors, m.drops, m.queued, m.active, m.capture,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetBuildInfo publishes portsentry_build_info{version,goversion} 1: which build runs,
// for dashboards and alerts (a fleet on mixed versions, a restart after an upgrade).
// Called once, before the first scrape.
func (m *Metrics) SetBuildInfo(version string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "portsentry_build_info",
		Help:        "Always 1; the labels say which build of the daemon runs: its version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	g.Set(1)
	m.reg.MustRegister(g)
}

// Hit counts n probes of one mode and scan type. scan is the scan type as the sensor
// reports it ("" for a connect-mode hit); see ScanLabel for the label it becomes.
func (m *Metrics) Hit(mode, scan string, n uint64) {
	si := scanIndex(mode, scan)
	if mi := modeIndex(mode); mi >= 0 {
		if c := m.hitByMode[mi][si]; c != nil {
			c.Add(float64(n))
			return
		}
	}
	m.hits.WithLabelValues(mode, scanLabels[si]).Add(float64(n))
}

// Detection counts a host acted on in a mode.
func (m *Metrics) Detection(mode string) {
	if mi := modeIndex(mode); mi >= 0 {
		m.detByMode[mi].Inc()
		return
	}
	m.detections.WithLabelValues(mode).Inc()
}

// Command counts one KILL_ command run, and its failure when !ok.
func (m *Metrics) Command(ok bool) {
	m.commands.Inc()
	if !ok {
		m.commandFailures.Inc()
	}
}

// Ban counts a ban imposed through backend.
func (m *Metrics) Ban(backend string) { m.child(m.bans, m.banBy, backend).Inc() }

// BackendError counts a failed backend operation.
func (m *Metrics) BackendError(backend string) { m.child(m.backendErrors, m.errBy, backend).Inc() }

// Repair counts what a reconciliation of the backend with the journal changed.
func (m *Metrics) Repair(backend string, restored, removed int) {
	m.repairs.WithLabelValues(backend, "restored").Add(float64(restored))
	m.repairs.WithLabelValues(backend, "removed").Add(float64(removed))
}

// WriteError counts a failed write or fsync of a file ("history", "blocked.tcp",
// "json_log", "ban_journal"). The write metrics are touched once per batch, not per
// hit, so their children are looked up each time.
func (m *Metrics) WriteError(file string) { m.writeErrors.WithLabelValues(file).Inc() }

// WriteDropped counts n lines (for the ban journal, bans) a file's full queue refused.
func (m *Metrics) WriteDropped(file string, n int) { m.drops.WithLabelValues(file).Add(float64(n)) }

// WriteQueued sets how many lines (bans) wait for a file now.
func (m *Metrics) WriteQueued(file string, n int) { m.queued.WithLabelValues(file).Set(float64(n)) }

// child returns vec's child for backend, cached so that repeated calls neither
// allocate nor hash.
func (m *Metrics) child(vec *prometheus.CounterVec, cache map[string]prometheus.Counter, backend string) prometheus.Counter {
	m.mu.RLock()
	c, ok := cache[backend]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok = cache[backend]; !ok {
		c = vec.WithLabelValues(backend)
		cache[backend] = c
	}
	return c
}

// SetActiveBans makes portsentry_bans_active{backend} read f at every scrape; a nil
// f removes the backend's gauge. Calling it again for a backend replaces f.
func (m *Metrics) SetActiveBans(backend string, f func() float64) { m.active.set(backend, f) }

// SetCapture makes portsentry_capture_packets_total and
// portsentry_capture_dropped_total read f at every scrape (packets the capture saw,
// and packets the kernel dropped before the capture read them). Until it is called,
// or after SetCapture(nil), the two are absent (no stealth mode running).
func (m *Metrics) SetCapture(f func() (seen, drops uint64)) {
	if f == nil {
		m.capture.f.Store(nil)
		return
	}
	m.capture.f.Store(&f)
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// activeCollector reports one gauge per backend from the daemon's own count.
type activeCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	fs   map[string]func() float64
}

func newActiveCollector() *activeCollector {
	return &activeCollector{
		desc: prometheus.NewDesc("portsentry_bans_active", "Bans in force now, by blocking backend.", []string{"backend"}, nil),
		fs:   map[string]func() float64{},
	}
}

func (c *activeCollector) set(backend string, f func() float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f == nil {
		delete(c.fs, backend)
		return
	}
	c.fs[backend] = f
}

func (c *activeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *activeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	fs := make(map[string]func() float64, len(c.fs))
	for b, f := range c.fs {
		fs[b] = f
	}
	c.mu.Unlock()
	// f runs without the lock held: it may take the daemon's own locks.
	for b, f := range fs {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, f(), b)
	}
}

// captureCollector reports the capture's own counters.
type captureCollector struct {
	seen, drops *prometheus.Desc
	f           atomic.Pointer[func() (uint64, uint64)]
}

func newCaptureCollector() *captureCollector {
	return &captureCollector{
		seen:  prometheus.NewDesc("portsentry_capture_packets_total", "Packets the stealth-mode capture received.", nil, nil),
		drops: prometheus.NewDesc("portsentry_capture_dropped_total", "Packets the kernel dropped before the capture could read them.", nil, nil),
	}
}

func (c *captureCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.seen; ch <- c.drops }

func (c *captureCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.f.Load()
	if f == nil {
		return
	}
	seen, drops := (*f)()
	ch <- prometheus.MustNewConstMetric(c.seen, prometheus.CounterValue, float64(seen))
	ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(drops))
}

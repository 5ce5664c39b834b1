//go:build linux

// Package listening tracks which local TCP and UDP sockets take new packets, per address
// family and local address, and keeps that view current as services start and stop.
//
// It replaces classic PortSentry's "smart verify", which tried to bind() the port when a
// packet arrived: that counted TIME_WAIT and address-specific binds as "in use" and
// overflowed after 64 busy ports. Here:
//
//   - TCP: only sockets in LISTEN state count; TIME_WAIT, ESTABLISHED and the rest do not.
//   - UDP: every bound socket counts, connected ones too: a connected socket's port
//     receives its peer's replies (a local DNS or NTP client on a low port), and those
//     are not probes. This costs some precision (another host probing that port while
//     the client runs is missed), the same trade classic's bind test made.
//   - A socket bound to one local address makes the port in use only for packets to that
//     address. A wildcard bind (0.0.0.0, ::) covers every address of its family, and an
//     IPv6 wildcard without IPV6_V6ONLY covers IPv4 too.
//   - A socket bound to a device (SO_BINDTODEVICE) or a link-local address with a scope
//     covers its address on every interface: when unsure, "in use" (no alarm) is the
//     safer answer.
//
// The view is a snapshot of the kernel's sock_diag dumps (or /proc/net when those are
// unavailable), taken once a second by default and read lock-free by InUse.
package listening

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// DefaultInterval is the refresh period when Start is given none.
const DefaultInterval = time.Second

// Tracker holds the current listening sockets of one network namespace.
type Tracker struct {
	log  *slog.Logger
	src  source
	snap atomic.Pointer[snapshot]

	refreshMu sync.Mutex // serialises refreshes and guards src, so snapshots replace each other in order
	// refreshed holds, per protocol (probe.TCP, probe.UDP), the unix nanoseconds of the
	// last attempt to read its sockets.
	refreshed [3]atomic.Int64
	usedProc  bool // guarded by refreshMu: the last snapshot read /proc/net

	cbMu      sync.Mutex
	callbacks []func()

	runMu sync.Mutex // guards stop and done: Start/Stop bookkeeping only
	stop  context.CancelFunc
	done  chan struct{}
}

// Option configures a Tracker.
type Option func(*Tracker)

// WithNetns makes the Tracker read the sockets of network namespace ns instead of the
// namespace of the thread that refreshes. The caller keeps ownership of ns and must
// keep it open until the Tracker is no longer used (every refresh enters it again).
func WithNetns(ns netns.NsHandle) Option {
	return func(t *Tracker) { t.src.ns = ns }
}

// New returns a Tracker that knows no sockets until Start or Refresh. A nil log
// discards messages.
func New(log *slog.Logger, opts ...Option) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{log: log, src: source{ns: netns.None()}}
	for _, opt := range opts {
		opt(t)
	}
	t.snap.Store(newSnapshot(nil))
	return t
}

// InUse reports whether a local socket would take a new proto packet to dst, i.e.
// whether a stealth probe to dst is traffic for a real service rather than a hit.
// IPv4-mapped IPv6 destinations count as IPv4. It never blocks or allocates.
func (t *Tracker) InUse(proto probe.Proto, dst netip.AddrPort) bool {
	tb := t.snap.Load().table(proto)
	return tb != nil && tb.inUse(dst)
}

// Ports returns the ports proto sockets listen on at any address, sorted, for building
// advanced mode's watch list ("ports below N not in use") and for logging. The slice
// is the caller's.
func (t *Tracker) Ports(proto probe.Proto) []uint16 {
	tb := t.snap.Load().table(proto)
	if tb == nil {
		return nil
	}
	return slices.Clone(tb.ports)
}

// OnChange registers f to be called after every snapshot that differs from the one
// before it (the first snapshot counts when it holds any socket): from the refresh
// goroutine, or from the caller of Refresh or Start. f should be quick and may call
// InUse and Ports (no locks are held); concurrent refreshes may call it concurrently.
func (t *Tracker) OnChange(f func()) {
	t.cbMu.Lock()
	defer t.cbMu.Unlock()
	t.callbacks = append(t.callbacks, f)
}

// InUseNow is InUse against a view at most maxAge old, refreshing first if needed. It
// is for the rare packet that is about to be reported: a client socket opened a moment
// ago (a DNS query from a watched port) must not have its replies taken for a scan.
// Refreshes are bounded to one per maxAge however many packets ask.
//
// now is the caller's idea of the current time (the stealth sensor passes the packet's
// kernel timestamp, sparing a clock read per packet).
// Only proto's sockets are read again: under a flood of TCP probes, the UDP tables
// (whose dump walks the kernel's whole UDP hash) are left alone.
func (t *Tracker) InUseNow(proto probe.Proto, dst netip.AddrPort, now time.Time, maxAge time.Duration) bool {
	if proto != probe.TCP && proto != probe.UDP {
		return false
	}
	if now.UnixNano()-t.refreshed[proto].Load() > int64(maxAge) {
		// On failure the last good snapshot answers, as everywhere else.
		if changed, err := t.refresh(proto); err == nil && changed {
			t.notify()
		}
	}
	return t.InUse(proto, dst)
}

// Refresh reads the sockets now and installs the new snapshot. On error the previous
// snapshot stays.
func (t *Tracker) Refresh() error {
	changed, err := t.refresh(0)
	if err != nil {
		return err
	}
	if changed {
		t.notify()
	}
	return nil
}

// refresh reads the sockets of proto (0: of both) and installs a new snapshot if they
// changed; the other protocol's sockets are carried over.
func (t *Tracker) refresh(proto probe.Proto) (changed bool, err error) {
	t.refreshMu.Lock()
	defer t.refreshMu.Unlock()
	now := time.Now().UnixNano() // an attempt: failures are throttled too
	for _, p := range []probe.Proto{probe.TCP, probe.UDP} {
		if proto == 0 || proto == p {
			t.refreshed[p].Store(now)
		}
	}
	ls, fallback, err := t.src.collect(proto)
	if err != nil {
		return false, fmt.Errorf("listening sockets: %w", err)
	}
	t.logSource(fallback)
	old := t.snap.Load().listeners
	if proto != 0 {
		for _, l := range old {
			if l.proto != proto {
				ls = append(ls, l)
			}
		}
	}
	ls = normalise(ls)
	if slices.Equal(ls, old) {
		return false, nil
	}
	s := newSnapshot(ls)
	t.snap.Store(s)
	t.log.Debug("listening sockets changed", "tcp", len(s.tcp.ports), "udp", len(s.udp.ports))
	return true, nil
}

// logSource logs a switch between sock_diag and the /proc/net fallback, once.
func (t *Tracker) logSource(fallback error) {
	if (fallback != nil) == t.usedProc {
		return
	}
	t.usedProc = fallback != nil
	if t.usedProc {
		t.log.Warn("reading listening sockets from /proc/net; IPv6 wildcard sockets are taken as dual-stack",
			"reason", fallback)
		return
	}
	t.log.Info("reading listening sockets through sock_diag again")
}

// notify runs the callbacks outside every lock, so a callback that calls back into
// the Tracker cannot deadlock.
func (t *Tracker) notify() {
	t.cbMu.Lock()
	cbs := slices.Clone(t.callbacks)
	t.cbMu.Unlock()
	for _, f := range cbs {
		f()
	}
}

// Start takes the first snapshot synchronously, so InUse is accurate when Start
// returns, then refreshes every `every` (DefaultInterval if not positive) in a
// goroutine until ctx is done or Stop is called. If the first snapshot fails Start
// returns its error and the goroutine keeps trying at every tick, so a source broken
// at start does not leave the tracker empty for good. A failure is logged once per
// distinct error; the last good snapshot (at first: none) stays.
func (t *Tracker) Start(ctx context.Context, every time.Duration) error {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.done != nil {
		return errors.New("listening tracker: already started")
	}
	err := t.Refresh()
	if every <= 0 {
		every = DefaultInterval
	}
	ctx, t.stop = context.WithCancel(ctx)
	t.done = make(chan struct{})
	go t.run(ctx, every, t.done)
	return err
}

// Stop ends the refresh goroutine and waits for it, and closes the sock_diag socket
// (a later Refresh opens another). It is safe to call more than once and without
// Start; Start may be called again afterwards.
func (t *Tracker) Stop() {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.done != nil {
		t.stop()
		<-t.done
		t.done, t.stop = nil, nil
	}
	t.refreshMu.Lock()
	t.src.close()
	t.refreshMu.Unlock()
}

func (t *Tracker) run(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastErr string // the error last logged; "" while refreshes succeed
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			lastErr = t.logChange(lastErr, t.Refresh())
		}
	}
}

// logChange logs err only when it differs from the previous outcome, so a persistent
// failure does not flood the log once a second, and logs the recovery.
func (t *Tracker) logChange(last string, err error) string {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case msg == last:
	case err != nil:
		t.log.Warn("listening sockets refresh failed, keeping the last snapshot", "err", err)
	default:
		t.log.Info("listening sockets refresh recovered")
	}
	return msg
}

package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// protectedAddr is an address every test host protects (its gateway, say).
var protectedAddr = netip.MustParseAddr("192.0.2.1")

// host is one simulated portsentry: a ban manager on its own journal (no kernel
// backend: the journal is what it enforces) and a fleet agent.
type host struct {
	name     string
	m        *bans.Manager
	a        *Agent
	path     string
	stop     func()
	rejected sync.Map // reason -> *atomic.Int64
	applied  atomic.Int64
	caughtUp atomic.Int64 // replays finished
	onEvent  func(op bans.Op, b bans.Ban)
	mode     string // FLEET_MODE; empty: both
	mu       sync.Mutex
	agent    *Agent
}

func (h *host) rejects(why string) int64 {
	v, _ := h.rejected.LoadOrStore(why, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

// newHost starts a host named name on servers.
func newHost(t testing.TB, name string, servers []string) *host {
	t.Helper()
	return newHostWith(t, name, servers, nil)
}

// newHostWith is newHost with onEvent told of every ban manager event.
func newHostWith(t testing.TB, name string, servers []string, onEvent func(bans.Op, bans.Ban)) *host {
	t.Helper()
	h := &host{name: name, path: filepath.Join(t.TempDir(), "bans"), onEvent: onEvent}
	h.open(t)
	h.connect(t, servers)
	t.Cleanup(h.close)
	return h
}

func (h *host) open(t testing.TB) {
	j, _, err := bans.Open(h.path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	view := safety.NewView(safety.Inputs{Gateways: []netip.Addr{protectedAddr}, Ignore: netaddr.NewSet(nil)})
	h.m = bans.NewManager(bans.Options{Journal: j, View: func() *safety.View { return view },
		Policy: func() bans.Policy { return bans.Policy{BanTime: time.Hour, BanTimeMax: 24 * time.Hour} },
		Hooks: bans.Hooks{Event: func(op bans.Op, b bans.Ban, _ string) {
			h.mu.Lock()
			a, on := h.agent, h.onEvent
			h.mu.Unlock()
			if on != nil {
				on(op, b)
			}
			if a != nil {
				a.Local(op, b)
			}
		}}})
	if err := h.m.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// connect starts an agent (again, after disconnect: a daemon restart on the same
// journal) and the manager.
func (h *host) connect(t testing.TB, servers []string) {
	a, err := New(Options{Servers: servers, Name: h.name, Stream: "PORTSENTRY_BANS", Bans: h.m, Log: testLog(t), Mode: h.mode,
		Limits: Limits{PerOrigin: 20000, RatePerOrigin: 100000},
		Hooks: Hooks{
			Applied: func(n int) { h.applied.Add(int64(n)) },
			Link: func(up bool) {
				if up {
					h.caughtUp.Add(1)
				}
			},
			Rejected: func(why string) {
				v, _ := h.rejected.LoadOrStore(why, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			},
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.agent = a
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	mctx, mcancel := context.WithCancel(context.Background())
	h.m.Start(mctx)
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	h.a = a
	h.stop = func() {
		cancel()
		<-done
		h.mu.Lock()
		h.agent = nil
		h.mu.Unlock()
		mcancel()
		h.m.Close()
	}
}

func (h *host) close() {
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// holds reports whether h enforces a ban of p made by origin ("" local).
func (h *host) holds(p netip.Prefix, origin string) bool {
	for _, b := range h.m.Active() {
		if b.Prefix == p {
			return b.Reason.Origin == origin
		}
	}
	return false
}

func (h *host) has(p netip.Prefix) bool {
	for _, b := range h.m.Active() {
		if b.Prefix == p {
			return true
		}
	}
	return false
}

func (h *host) block(t testing.TB, p netip.Prefix, d time.Duration) {
	t.Helper()
	now := time.Now()
	if _, ok := h.m.Block(bans.Ban{Prefix: p, Start: now, Until: now.Add(d), Reason: bans.Reason{By: "operator"}}); !ok {
		t.Fatalf("%s: block %s refused", h.name, p)
	}
}

func all(hosts []*host, cond func(*host) bool) func() bool {
	return func() bool {
		for _, h := range hosts {
			if !cond(h) {
				return false
			}
		}
		return true
	}
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

const within = 30 * time.Second // generous: the machine is shared

// TestFleet50: with 50 hosts on a 3-node cluster, a ban made on one is enforced on
// all the others with its origin, its unblock lifts it everywhere, and a short ban
// ends everywhere.
func TestFleet50(t *testing.T) {
	c := newCluster(t, 3)
	var hosts []*host
	for i := range 50 {
		hosts = append(hosts, newHost(t, fmt.Sprintf("h%02d", i), c.urls(i%3)))
	}
	eventually(t, within, "not every host linked", all(hosts, func(h *host) bool { return h.a.streamOK.Load() }))
	x := netip.MustParsePrefix("203.0.113.7/32")
	hosts[0].block(t, x, time.Hour)
	eventually(t, within, "the ban did not reach every host", all(hosts[1:], func(h *host) bool { return h.holds(x, "h00") }))
	if !hosts[0].holds(x, "") {
		t.Fatal("the origin's own ban is not local")
	}
	if _, err := hosts[0].m.Unblock(x); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "the unblock did not reach every host", all(hosts, func(h *host) bool { return !h.has(x) }))

	y := netip.MustParsePrefix("2001:db8:1::/64")
	hosts[17].block(t, y, 3*time.Second)
	eventually(t, within, "the short ban did not reach every host", all(hosts, func(h *host) bool { return h.has(y) }))
	eventually(t, within, "the short ban did not end everywhere", all(hosts, func(h *host) bool { return !h.has(y) }))
}

// TestFleetRefusesProtected: a peer publishing bans of what a host protects, bans too
// wide, bans under another host's name, and the same ban over and over, gets none of
// it enforced but the one real ban, once.
func TestFleetRefusesProtected(t *testing.T) {
	c := newCluster(t, 3)
	var hosts []*host
	for i := range 6 {
		hosts = append(hosts, newHost(t, fmt.Sprintf("h%d", i), c.urls(i%3)))
	}
	eventually(t, within, "not every host linked", all(hosts, func(h *host) bool { return h.a.streamOK.Load() }))
	nc, err := nats.Connect(c.url(1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	now := time.Now()
	send := func(subject string, m Message, id string) {
		t.Helper()
		msg := &nats.Msg{Subject: subject, Data: m.Encode(), Header: nats.Header{}}
		msg.Header.Set(nats.MsgIdHdr, id)
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	ban := func(p string) Message {
		return FromBan("mallory", OpBan, bans.Ban{Prefix: netip.MustParsePrefix(p), Start: now, Until: now.Add(time.Hour)}, now)
	}
	gw, wide, net24 := ban("192.0.2.1/32"), ban("10.0.0.0/7"), ban("192.0.2.0/24")
	send(Subject("mallory", gw.Prefix), gw, gw.ID())
	send(Subject("mallory", net24.Prefix), net24, net24.ID())
	send(Subject("mallory", wide.Prefix), wide, wide.ID())
	forged := ban("198.51.100.9/32")
	send(Subject("h0", forged.Prefix), forged, forged.ID()) // claims to be mallory on h0's subject
	real := ban("198.51.100.10/32")
	for i := range 5 {
		id := real.ID()
		if i%2 == 1 {
			id = fmt.Sprint("other-", i) // a duplicate the stream's de-duplication does not catch
		}
		send(Subject("mallory", real.Prefix), real, id)
	}
	eventually(t, within, "the real ban did not reach every host", all(hosts, func(h *host) bool { return h.holds(real.Prefix, "mallory") }))
	eventually(t, within, "refusals not counted on every host", all(hosts, func(h *host) bool {
		ok := h.rejects(bans.RefusedProtected) >= 2 && h.rejects("too_wide") >= 1 && h.rejects("forged") >= 1
		if !ok {
			t.Logf("%s: protected %d too_wide %d forged %d", h.name, h.rejects(bans.RefusedProtected), h.rejects("too_wide"), h.rejects("forged"))
		}
		return ok
	}))
	for _, h := range hosts {
		for _, p := range []netip.Prefix{gw.Prefix, net24.Prefix, wide.Prefix, forged.Prefix} {
			if h.has(p) {
				t.Errorf("%s enforces %s", h.name, p)
			}
		}
		if n := h.applied.Load(); n != 1 {
			t.Errorf("%s applied %d bans, want 1 (duplicates must change nothing)", h.name, n)
		}
	}
}

// TestFleetPartition: a host cut off from NATS keeps enforcing what it has; the
// unblock, the new ban and the ban that came and went while it was away are sorted
// out when it is back; its own ban made while cut off is published when the link
// returns, even across a restart of its daemon in between.
func TestFleetPartition(t *testing.T) {
	c := newCluster(t, 3)
	a := newHost(t, "a", c.urls(0))
	px := newProxy(t, c.opts[1].Host+fmt.Sprintf(":%d", c.opts[1].Port))
	p := newHost(t, "p", []string{px.url()})
	b := newHost(t, "b", c.urls(2))
	hosts := []*host{a, p, b}
	eventually(t, within, "not every host linked", all(hosts, func(h *host) bool { return h.a.streamOK.Load() }))
	y := netip.MustParsePrefix("198.51.100.1/32")
	a.block(t, y, time.Hour)
	eventually(t, within, "the first ban did not reach p", func() bool { return p.holds(y, "a") })

	px.cut()
	eventually(t, within, "p did not notice the cut", func() bool { return !p.a.streamOK.Load() })
	if _, err := a.m.Unblock(y); err != nil {
		t.Fatal(err)
	}
	x, z := netip.MustParsePrefix("198.51.100.2/32"), netip.MustParsePrefix("198.51.100.3/32")
	a.block(t, x, time.Hour)
	a.block(t, z, time.Hour)
	if _, err := a.m.Unblock(z); err != nil {
		t.Fatal(err)
	}
	w := netip.MustParsePrefix("198.51.100.4/32")
	p.block(t, w, time.Hour) // its publish fails: queued
	eventually(t, within, "b did not get a's new ban", func() bool { return b.holds(x, "a") && !b.has(y) })
	if !p.holds(y, "a") {
		t.Fatal("p dropped a remote ban while cut off")
	}
	p.close() // a daemon restart while cut off: the outbox is gone, the journal is not
	p.open(t)
	p.connect(t, []string{px.url()})
	px.restore()
	eventually(t, within, "p did not catch up", func() bool { return p.holds(x, "a") && !p.has(y) && !p.has(z) })
	eventually(t, within, "p's ban made while cut off did not reach the others", all([]*host{a, b}, func(h *host) bool { return h.holds(w, "p") }))
}

// TestFleetNodeRestart: a server stops; its hosts move to the others and bans keep
// flowing; it comes back on its store and catches up; bans keep flowing through it.
func TestFleetNodeRestart(t *testing.T) {
	c := newCluster(t, 3)
	var hosts []*host
	for i := range 9 {
		hosts = append(hosts, newHost(t, fmt.Sprintf("h%d", i), c.urls(i%3)))
	}
	eventually(t, within, "not every host linked", all(hosts, func(h *host) bool { return h.a.streamOK.Load() }))
	c.stop(0)
	c.waitLeader()
	x := netip.MustParsePrefix("203.0.113.50/32")
	hosts[1].block(t, x, time.Hour)
	eventually(t, within, "a ban made while a server was down did not reach every host", all(hosts[2:], func(h *host) bool { return h.holds(x, "h1") }))
	eventually(t, within, "h0 did not get it", func() bool { return hosts[0].holds(x, "h1") })
	c.start(0)
	c.waitLeader()
	y := netip.MustParsePrefix("203.0.113.51/32")
	hosts[3].block(t, y, time.Hour) // h3 is on server 0 again, or on another
	eventually(t, within, "a ban after the restart did not reach every host", all(append(hosts[:3:3], hosts[4:]...), func(h *host) bool { return h.holds(y, "h3") }))
	if _, err := hosts[1].m.Unblock(x); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "the unblock did not reach every host", all(hosts, func(h *host) bool { return !h.has(x) }))
}

// TestFleetDismiss: a remote ban an operator lifted here is not enforced again by the
// next replay, only by its origin's next ban of that prefix.
func TestFleetDismiss(t *testing.T) {
	c := newCluster(t, 3)
	a := newHost(t, "a", c.urls(0))
	px := newProxy(t, fmt.Sprintf("127.0.0.1:%d", c.opts[1].Port))
	b := newHost(t, "b", []string{px.url()})
	eventually(t, within, "not every host linked", all([]*host{a, b}, func(h *host) bool { return h.caughtUp.Load() >= 1 }))
	x := netip.MustParsePrefix("198.51.100.20/32")
	a.block(t, x, time.Hour)
	eventually(t, within, "the ban did not reach b", func() bool { return b.holds(x, "a") })
	ended, err := b.m.Unblock(x)
	if err != nil || len(ended) != 1 {
		t.Fatalf("unblock: %v %v", ended, err)
	}
	b.a.Dismiss(ended)
	px.cut()
	eventually(t, within, "b did not notice the cut", func() bool { return !b.a.streamOK.Load() })
	px.restore()
	eventually(t, within, "b did not replay", func() bool { return b.caughtUp.Load() >= 2 })
	if b.has(x) {
		t.Fatal("the replay enforced again a ban the operator lifted")
	}
	time.Sleep(2 * time.Millisecond) // a's next ban is made after the dismissal, to the millisecond
	a.block(t, x, 2*time.Hour)
	eventually(t, within, "a's new ban of the prefix did not reach b", func() bool { return b.holds(x, "a") })
}

// TestFleetModes: a publish-only host's bans reach the others but it enforces none of
// theirs; a subscribe-only host enforces theirs and publishes none of its own.
func TestFleetModes(t *testing.T) {
	c := newCluster(t, 3)
	pub := &host{name: "pub", path: filepath.Join(t.TempDir(), "bans"), mode: ModePublish}
	sub := &host{name: "sub", path: filepath.Join(t.TempDir(), "bans"), mode: ModeSubscribe}
	for i, h := range []*host{pub, sub} {
		h.open(t)
		h.connect(t, c.urls(i))
		t.Cleanup(h.close)
	}
	both := newHost(t, "both", c.urls(2))
	hosts := []*host{pub, sub, both}
	eventually(t, within, "not every host linked", all(hosts, func(h *host) bool { return h.caughtUp.Load() >= 1 }))
	x, y, z := netip.MustParsePrefix("198.51.100.31/32"), netip.MustParsePrefix("198.51.100.32/32"), netip.MustParsePrefix("198.51.100.33/32")
	pub.block(t, x, time.Hour)
	sub.block(t, y, time.Hour)
	both.block(t, z, time.Hour)
	eventually(t, within, "the publish-only host's ban did not reach the others", all([]*host{sub, both}, func(h *host) bool { return h.holds(x, "pub") }))
	eventually(t, within, "the subscribe-only host did not get a ban", func() bool { return sub.holds(z, "both") })
	// Whatever was to arrive has arrived once a later ban from the same origin did.
	w := netip.MustParsePrefix("198.51.100.34/32")
	both.block(t, w, time.Hour)
	eventually(t, within, "a later ban did not reach the subscribe-only host", func() bool { return sub.holds(w, "both") })
	if pub.has(z) || pub.has(w) {
		t.Error("the publish-only host enforces a peer's ban")
	}
	if both.has(y) {
		t.Error("the subscribe-only host published its ban")
	}
}

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
	mu       sync.Mutex
	agent    *Agent
}

func (h *host) rejects(why string) int64 {
	v, _ := h.rejected.LoadOrStore(why, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

// newHost starts a host named name on servers.
func newHost(t *testing.T, name string, servers []string) *host {
	t.Helper()
	h := &host{name: name, path: filepath.Join(t.TempDir(), "bans")}
	h.open(t)
	h.connect(t, servers)
	t.Cleanup(h.close)
	return h
}

func (h *host) open(t *testing.T) {
	j, _, err := bans.Open(h.path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	view := safety.NewView(safety.Inputs{Gateways: []netip.Addr{protectedAddr}, Ignore: netaddr.NewSet(nil)})
	h.m = bans.NewManager(bans.Options{Journal: j, View: func() *safety.View { return view },
		Policy: func() bans.Policy { return bans.Policy{BanTime: time.Hour, BanTimeMax: 24 * time.Hour} },
		Hooks: bans.Hooks{Event: func(op bans.Op, b bans.Ban, _ string) {
			h.mu.Lock()
			a := h.agent
			h.mu.Unlock()
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
func (h *host) connect(t *testing.T, servers []string) {
	a, err := New(Options{Servers: servers, Name: h.name, Stream: "PORTSENTRY_BANS", Bans: h.m, Log: testLog(t),
		Limits: Limits{PerOrigin: 1000, RatePerOrigin: 100000},
		Hooks: Hooks{
			Applied: func(n int) { h.applied.Add(int64(n)) },
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

func (h *host) block(t *testing.T, p netip.Prefix, d time.Duration) {
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

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

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

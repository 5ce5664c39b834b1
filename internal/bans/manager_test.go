package bans

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// fakeBackend records what the manager mirrors into it.
type fakeBackend struct {
	mu    sync.Mutex
	held  map[netip.Prefix]bool
	calls []string
	fail  atomic.Bool // Reconcile fails
}

func newFake() *fakeBackend { return &fakeBackend{held: map[netip.Prefix]bool{}} }

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Setup() error { return nil }
func (f *fakeBackend) Close() error { return nil }
func (f *fakeBackend) Apply(bs []respond.Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bs {
		f.held[b.Prefix] = true
		f.calls = append(f.calls, "apply "+b.Prefix.String())
	}
	return nil
}
func (f *fakeBackend) Revoke(ps []netip.Prefix) error { return f.drop("revoke", ps) }
func (f *fakeBackend) Expire(ps []netip.Prefix) error { return f.drop("expire", ps) }
func (f *fakeBackend) drop(op string, ps []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ps {
		delete(f.held, p)
		f.calls = append(f.calls, op+" "+p.String())
	}
	return nil
}
func (f *fakeBackend) Reconcile(want []respond.Ban) (respond.Repair, error) {
	if f.fail.Load() {
		return respond.Repair{}, errors.New("netlink: no buffer space")
	}
	f.mu.Lock()
	var held []netip.Prefix
	for p := range f.held {
		held = append(held, p)
	}
	f.mu.Unlock()
	missing, extra := respond.Diff(want, held)
	f.Apply(missing)
	f.drop("remove", extra)
	return respond.Repair{Restored: len(missing), Removed: len(extra)}, nil
}
func (f *fakeBackend) has(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[p]
}

// testManager is a manager on a fresh journal with the given view, BAN_TIME 1 h.
func testManager(t *testing.T, path string, view *atomic.Pointer[safety.View], b Backend) *Manager {
	t.Helper()
	j, _, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return NewManager(Options{Journal: j, Backend: b, View: view.Load,
		Policy: func() Policy { return Policy{BanTime: time.Hour, BanCap: 10} }})
}

func viewOf(own ...string) *atomic.Pointer[safety.View] {
	var as []netip.Addr
	for _, s := range own {
		as = append(as, netip.MustParseAddr(s))
	}
	var p atomic.Pointer[safety.View]
	p.Store(safety.NewView(safety.Inputs{Own: as, Ignore: netaddr.NewSet(nil)}))
	return &p
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// TestOperatorBanExpiresAfterIdle: the expiry ticker stops while there are no bans; a
// ban made after such a quiet spell, by a detection or by an operator, must still
// expire.
func TestOperatorBanExpiresAfterIdle(t *testing.T) {
	f := newFake()
	m := testManager(t, filepath.Join(t.TempDir(), "journal"), viewOf(), f)
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	defer func() { cancel(); m.Close() }()
	time.Sleep(1500 * time.Millisecond) // the first tick finds no bans and stops the ticker
	now := time.Now()
	p := netip.MustParsePrefix("198.18.9.9/32")
	if _, ok := m.Block(Ban{Prefix: p, Start: now, Until: now.Add(time.Second), Reason: Reason{By: "operator"}}); !ok {
		t.Fatal("operator ban not recorded")
	}
	if !f.has(p) {
		t.Fatal("operator ban not in the backend")
	}
	eventually(t, func() bool { return m.Len() == 0 && !f.has(p) }, "an operator ban made after an idle spell never expired")
	q := netip.MustParsePrefix("198.18.9.10/32")
	m.Ban(Ban{Prefix: q, Start: time.Now(), Until: time.Now().Add(time.Second)})
	eventually(t, func() bool { return f.has(q) }, "a detection's ban never reached the backend")
	eventually(t, func() bool { return m.Len() == 0 }, "a detection's ban after an idle spell never expired")
}

// TestGateFollowsTheView: when an own address appears inside an active ban, the ban is
// lifted from the journal and the backend; a record the gate refuses at start is
// never re-asserted, and the others are.
func TestGateFollowsTheView(t *testing.T) {
	f := newFake()
	path := filepath.Join(t.TempDir(), "journal")
	view := viewOf()
	m := testManager(t, path, view, f)
	var mu sync.Mutex
	var lifted []netip.Prefix
	m.opts.Hooks.Lifted = func(bs []Ban) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bs {
			lifted = append(lifted, b.Prefix)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	wide, other := netip.MustParsePrefix("2001:db8:5::/64"), netip.MustParsePrefix("203.0.113.9/32")
	scanner := netip.MustParseAddr("2001:db8:5::99")
	now := time.Now()
	for _, b := range []Ban{{Prefix: wide, Reason: Reason{Addr: scanner}}, {Prefix: other}} {
		b.Start, b.Until = now, now.Add(time.Hour)
		if _, ok := m.Block(b); !ok {
			t.Fatalf("%s not recorded", b.Prefix)
		}
	}
	view.Store(safety.NewView(safety.Inputs{Own: []netip.Addr{netip.MustParseAddr("2001:db8:5::1")}, Ignore: netaddr.NewSet(nil)}))
	eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !f.has(wide) && m.Len() == 2 && len(lifted) > 0
	}, "a ban covering a new own address was not narrowed")
	if !slices.Equal(lifted, []netip.Prefix{wide}) {
		t.Errorf("lifted %v, want [%s]", lifted, wide)
	}
	// The scanner's ban is narrowed around it, for the time it had left.
	narrowed := netip.MustParsePrefix("2001:db8:5::80/121") // ::80-::ff: ::99, not ::1
	if b, ok := m.journal.Get(narrowed); !ok || !f.has(narrowed) || !b.Until.Equal(now.Add(time.Hour)) {
		t.Errorf("narrowed ban %v %v in the backend %v; active %v", b, ok, f.has(narrowed), m.Active())
	}
	cancel()
	m.Close()

	// At the next start the journal holds one ban that the gate now refuses.
	f2 := newFake()
	j, _, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Add(Ban{Prefix: netip.MustParsePrefix("2001:db8:5::/96"), Start: now, Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	m2 := testManager(t, path, view, f2)
	if err := m2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if !f2.has(other) || f2.has(netip.MustParsePrefix("2001:db8:5::/96")) || m2.Len() != 2 {
		t.Errorf("after Restore: backend calls %v, %d active", f2.calls, m2.Len())
	}
	m2.Close()
}

// TestCapRefusalsAreHandedBack: bans beyond BAN_CAP are refused,
// counted and handed to Lifted; renewals of active bans always pass.
func TestCapRefusalsAreHandedBack(t *testing.T) {
	m := testManager(t, filepath.Join(t.TempDir(), "journal"), viewOf(), newFake())
	var refused, lifted int
	m.opts.Hooks.Refused = func(n int) { refused += n }
	m.opts.Hooks.Lifted = func(bs []Ban) { lifted += len(bs) }
	now := time.Now()
	var batch []Ban
	for i := range 15 {
		batch = append(batch, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), 32), Start: now, Until: now.Add(time.Hour)})
	}
	m.pending.Add(int64(len(batch)))
	m.commit(batch)
	if m.Len() != 10 || refused != 5 || lifted != 5 {
		t.Fatalf("active %d, refused %d, lifted %d; want 10, 5, 5", m.Len(), refused, lifted)
	}
	m.pending.Add(1)
	m.commit(batch[:1]) // a renewal
	if m.Len() != 10 || refused != 5 {
		t.Fatalf("a renewal was refused: active %d, refused %d", m.Len(), refused)
	}
	m.Close()
}

// TestNopBans: with no native backend, spoofable evidence earns a ban that expires,
// unspoofable evidence a permanent one.
func TestNopBans(t *testing.T) {
	m := testManager(t, filepath.Join(t.TempDir(), "journal"), viewOf(), Nop{})
	now := time.Now()
	p := netip.MustParsePrefix("198.18.1.1/32")
	if b := m.NewBan(p, Reason{Spoofable: true}, -1, now); b.Permanent() || b.Until.Sub(now) < time.Hour {
		t.Errorf("spoofable evidence: until %v", b.Until)
	}
	if b := m.NewBan(p, Reason{}, -1, now); !b.Permanent() {
		t.Errorf("a handshake's ban expires at %v", b.Until)
	}
	if m.Native() || m.Backend() != "classic" {
		t.Errorf("Nop: native %v, name %q", m.Native(), m.Backend())
	}
	m.Close()
}

// TestNoteFollowsTheQueuedBan: the classic commands of a detection run while its ban
// may still be queued; the note waits for it. The unblock then hands the note to
// Lifted, which is how the daemon undoes the commands. A note for a host that is not
// banned is refused, so the caller undoes at once.
func TestNoteFollowsTheQueuedBan(t *testing.T) {
	m := testManager(t, filepath.Join(t.TempDir(), "journal"), viewOf(), newFake())
	var lifted []Ban
	m.opts.Hooks.Lifted = func(bs []Ban) { lifted = append(lifted, bs...) }
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	defer func() { cancel(); m.Close() }()
	a := netip.MustParseAddr("198.18.9.9")
	p := netip.PrefixFrom(a, 32)
	d := respond.Done{Addr: a, Route: true}
	for range 50 {
		m.Ban(m.NewBan(p, Reason{Addr: a}, -1, time.Now()))
		if ok, err := m.Note(p, d); !ok || err != nil {
			t.Fatalf("note after a queued ban: %v %v", ok, err)
		}
		if _, err := m.Unblock(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(lifted) != 50 || !slices.Equal(lifted[49].Reason.Classic, []respond.Done{d}) {
		t.Errorf("lifted %d bans, the last with %+v", len(lifted), lifted[len(lifted)-1].Reason.Classic)
	}
	if ok, _ := m.Note(p, d); ok {
		t.Error("note accepted for a host that is not banned")
	}
}

// The system loses bans and gains entries behind the manager's back; every
// reconciliation puts it back as the journal says, logs the repair with its counts, and
// a failing one is logged once until it works again.
func TestReconcileRepairs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans")
	now := time.Now()
	j, _, err := Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Add(Ban{Prefix: pfx("192.0.2.1/32"), Start: now, Until: now.Add(time.Hour)},
		Ban{Prefix: pfx("192.0.2.2/32"), Start: now}); err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	var repairs []respond.Repair
	f := newFake()
	f.held[pfx("203.0.113.9/32")] = true // not in the journal
	m := NewManager(Options{Journal: j, Backend: f, View: viewOf().Load,
		Log:    slog.New(slog.NewTextHandler(&logged, nil)),
		Policy: func() Policy { return Policy{BanTime: time.Hour} },
		Hooks:  Hooks{Repaired: func(r respond.Repair) { repairs = append(repairs, r) }}})
	defer m.Close()
	if err := m.Restore(now); err != nil {
		t.Fatal(err)
	}
	if !f.has(pfx("192.0.2.1/32")) || !f.has(pfx("192.0.2.2/32")) || f.has(pfx("203.0.113.9/32")) {
		t.Fatalf("after Restore the backend holds %v", f.held)
	}
	m.reconcile(now) // nothing wrong: no repair
	f.drop("lost", []netip.Prefix{pfx("192.0.2.1/32"), pfx("192.0.2.2/32")})
	f.fail.Store(true)
	m.reconcile(now)
	m.reconcile(now)
	f.fail.Store(false)
	m.reconcile(now)
	if want := []respond.Repair{{Restored: 2, Removed: 1}, {Restored: 2}}; !slices.Equal(repairs, want) {
		t.Errorf("repairs %v, want %v", repairs, want)
	}
	out := logged.String()
	for s, n := range map[string]int{
		"2 bans of the journal were missing from the system and have been restored; 1 entries": 1,
		"2 bans of the journal were missing from the system and have been restored; 0 entries": 1,
		"comparing with the ban journal: netlink: no buffer space":                             1,
		"the system matches the ban journal again":                                             1,
	} {
		if got := strings.Count(out, s); got != n {
			t.Errorf("%q logged %d times, want %d:\n%s", s, got, n, out)
		}
	}
}

// Unblocking a prefix lifts the bans inside it and those covering it, and no other.
func TestUnblockInsideAndCovering(t *testing.T) {
	f := newFake()
	m := testManager(t, filepath.Join(t.TempDir(), "bans"), viewOf(), f)
	defer m.Close()
	now := time.Now()
	for _, p := range []string{"10.78.1.0/24", "10.78.1.70/32", "10.78.0.60/32", "10.78.2.1/32", "10.0.0.0/8"} {
		if _, ok := m.Block(Ban{Prefix: pfx(p), Start: now}); !ok {
			t.Fatalf("block %s refused", p)
		}
	}
	ended, err := m.Unblock(pfx("10.78.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range ended {
		got = append(got, b.Prefix.String())
	}
	slices.Sort(got)
	if want := []string{"10.0.0.0/8", "10.78.1.0/24", "10.78.1.70/32"}; !slices.Equal(got, want) {
		t.Errorf("unblock 10.78.1.0/24 lifted %v, want %v", got, want)
	}
	if !f.has(pfx("10.78.0.60/32")) || !f.has(pfx("10.78.2.1/32")) || f.has(pfx("10.78.1.70/32")) {
		t.Errorf("backend holds %v", f.held)
	}
}

// TestNoteOnAHeldBan: a ban waiting for a full disk keeps the note until it is written.
func TestNoteOnAHeldBan(t *testing.T) {
	h := newHeld("j", appendfile.Report{Log: slog.New(slog.DiscardHandler)})
	p := pfx("198.18.9.9/32")
	d := respond.Done{Addr: p.Addr(), HostsDeny: "ALL: 198.18.9.9"}
	h.keep([]Ban{{Prefix: p}}, syscall.ENOSPC)
	if !h.note(p, d) || h.note(pfx("198.18.9.10/32"), d) {
		t.Fatal("note on the held ban refused, or on another accepted")
	}
	if got := h.take(nil); len(got) != 1 || !slices.Equal(got[0].Reason.Classic, []respond.Done{d}) {
		t.Errorf("held %+v", got)
	}
}

// unenforcingBackend holds some prefixes without enforcing them, as the route backend
// does for a prefix a route not its own holds.
type unenforcingBackend struct {
	*fakeBackend
	why map[netip.Prefix]string
}

func (u unenforcingBackend) Unenforced(p netip.Prefix) string { return u.why[p] }
func (u unenforcingBackend) UnenforcedCount() int             { return len(u.why) }

// TestUnenforcedBanSaysSo: a ban the backend records but does not enforce is logged
// (and sent as an event) as such, not as "has been banned via"; at start, the
// journal's bans that are not enforced are named.
func TestUnenforcedBanSaysSo(t *testing.T) {
	foreign := netip.MustParsePrefix("192.0.2.9/32")
	ours := netip.MustParsePrefix("203.0.113.7/32")
	b := unenforcingBackend{newFake(), map[netip.Prefix]string{foreign: "a blackhole route that is not ours holds the prefix"}}
	path := filepath.Join(t.TempDir(), "journal")
	var logs bytes.Buffer
	var events []string
	open := func() *Manager {
		j, _, err := Open(path, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return NewManager(Options{Journal: j, Backend: b, View: viewOf().Load, Log: slog.New(slog.NewTextHandler(&logs, nil)),
			Policy: func() Policy { return Policy{BanTime: time.Hour, BanCap: 10} },
			Hooks:  Hooks{Event: func(_ Op, _ Ban, text string) { events = append(events, text) }}})
	}
	m := open()
	if err := m.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, p := range []netip.Prefix{foreign, ours} {
		if _, ok := m.Block(Ban{Prefix: p, Start: now, Until: now.Add(time.Hour), Reason: Reason{By: "operator"}}); !ok {
			t.Fatalf("%v not recorded", p)
		}
	}
	want := []string{
		"attackalert: Host 192.0.2.9/32: ban recorded for 1h0m0s (offence 1) but not enforced by fake: a blackhole route that is not ours holds the prefix",
		"attackalert: Host 203.0.113.7/32 has been banned via fake for 1h0m0s (offence 1)",
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, w := range want {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	if strings.Contains(logs.String(), "192.0.2.9/32 has been banned") {
		t.Errorf("an unenforced ban logged as banned:\n%s", logs.String())
	}
	if m.Unenforced(foreign) == "" || m.Unenforced(ours) != "" {
		t.Errorf("Unenforced: %q, %q", m.Unenforced(foreign), m.Unenforced(ours))
	}
	m.Close()

	logs.Reset()
	m = open()
	defer m.Close()
	if err := m.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if w := "attackalert: Ban on 192.0.2.9/32 (from the ban journal) is recorded but not enforced by fake: a blackhole route that is not ours holds the prefix"; !strings.Contains(logs.String(), w) || strings.Contains(logs.String(), "203.0.113.7") {
		t.Errorf("at start, log:\n%s\nwant only %q", logs.String(), w)
	}
}

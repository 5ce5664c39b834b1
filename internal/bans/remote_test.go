package bans

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

func remoteManager(t *testing.T, path string, f *fakeBackend, own ...string) *Manager {
	t.Helper()
	j, _, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(Options{Journal: j, Backend: f, View: viewOf(own...).Load,
		Policy: func() Policy { return Policy{BanTime: time.Hour, BanTimeMax: 2 * time.Hour, BanCap: 3} }})
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	t.Cleanup(func() { cancel(); m.Close() })
	return m
}

func remoteBan(p, origin string, now time.Time, d time.Duration) Ban {
	b := Ban{Prefix: netip.MustParsePrefix(p), Start: now, Reason: Reason{By: "fleet", Origin: origin}}
	if d > 0 {
		b.Until = now.Add(d)
	}
	return b
}

func TestRemoteBansFollowLocalRules(t *testing.T) {
	f := newFake()
	path := filepath.Join(t.TempDir(), "journal")
	m := remoteManager(t, path, f, "192.0.2.1")
	now := time.Now()
	local := netip.MustParsePrefix("198.18.0.1/32")
	if _, ok := m.Block(Ban{Prefix: local, Start: now, Until: now.Add(time.Hour), Reason: Reason{By: "operator"}}); !ok {
		t.Fatal("local ban not recorded")
	}
	applied, refused := m.Remote([]Ban{
		remoteBan("198.18.0.1/32", "b", now, 24*time.Hour), // banned here already
		remoteBan("192.0.2.0/24", "b", now, time.Hour),     // covers this host
		remoteBan("198.18.0.2/32", "b", now, 0),            // permanent: cut to BAN_TIME_MAX
		remoteBan("198.18.0.3/32", "b", now.Add(-2*time.Hour), time.Hour),
	}, now)
	want := map[string]string{"198.18.0.1/32": RefusedLocal, "192.0.2.0/24": RefusedProtected, "198.18.0.3/32": RefusedExpired}
	for p, why := range want {
		if got := refused[netip.MustParsePrefix(p)]; got != why {
			t.Errorf("%s refused %q, want %q", p, got, why)
		}
	}
	if len(refused) != len(want) || applied != 1 {
		t.Errorf("applied %d, refused %v", applied, refused)
	}
	if b, _ := m.journal.Get(local); b.Remote() {
		t.Error("a remote ban replaced a local one")
	}
	b, ok := m.journal.Get(netip.MustParsePrefix("198.18.0.2/32"))
	if !ok || b.Reason.Origin != "b" || b.Permanent() || b.Until.After(now.Add(2*time.Hour)) {
		t.Fatalf("remote permanent ban stored as %+v (%v)", b, ok)
	}
	if !f.has(b.Prefix) {
		t.Error("remote ban not in the backend")
	}
	// A duplicate changes nothing; another origin cannot lift it; its own can.
	recs := m.journal.records
	if n, _ := m.Remote([]Ban{remoteBan("198.18.0.2/32", "b", now, 0)}, now); n != 0 || m.journal.records != recs {
		t.Error("a duplicate remote ban was journaled again")
	}
	if ended, _ := m.LiftRemote([]netip.Prefix{b.Prefix, local}, "c"); len(ended) != 0 {
		t.Errorf("origin c lifted %v", ended)
	}
	if ended, _ := m.LiftRemote([]netip.Prefix{b.Prefix, local}, "b"); len(ended) != 1 || ended[0].Prefix != b.Prefix {
		t.Errorf("origin b lifted %v", ended)
	}
	if f.has(b.Prefix) || !f.has(local) {
		t.Error("lifting b's ban left the backend wrong")
	}
}

// TestRemoteBansApartInCap: BAN_CAP counts local and remote bans apart, so a flood of
// remote bans leaves room for local detection; a local detection of a remotely banned
// prefix takes the ban over.
func TestRemoteBansApartInCap(t *testing.T) {
	f := newFake()
	path := filepath.Join(t.TempDir(), "journal")
	m := remoteManager(t, path, f)
	now := time.Now()
	var list []Ban
	for _, p := range []string{"198.18.1.1/32", "198.18.1.2/32", "198.18.1.3/32", "198.18.1.4/32"} {
		list = append(list, remoteBan(p, "b", now, time.Hour))
	}
	if _, refused := m.Remote(list, now); len(refused) != 1 || refused[list[3].Prefix] != RefusedCap {
		t.Errorf("refused %v, want the fourth for BAN_CAP", refused)
	}
	if m.Len() != 3 || m.journal.Remote() != 3 {
		t.Fatalf("%d bans, %d remote: BAN_CAP 3 should hold 3 remote ones", m.Len(), m.journal.Remote())
	}
	if _, ok := m.Block(Ban{Prefix: netip.MustParsePrefix("198.18.2.1/32"), Start: now, Until: now.Add(time.Hour)}); !ok {
		t.Fatal("a local ban was refused because of remote bans")
	}
	if _, ok := m.Block(Ban{Prefix: netip.MustParsePrefix("198.18.1.1/32"), Start: now, Until: now.Add(time.Hour)}); !ok {
		t.Fatal("a local ban of a remotely banned prefix was refused")
	}
	if b, _ := m.journal.Get(netip.MustParsePrefix("198.18.1.1/32")); b.Remote() || m.journal.Remote() != 2 {
		t.Errorf("local ban did not take over: %+v, %d remote", b, m.journal.Remote())
	}
	ended, err := m.UnblockOrigin("*")
	if err != nil || len(ended) != 2 || m.Len() != 2 {
		t.Errorf("unblock -origin '*': %v %v, %d left", ended, err, m.Len())
	}
}

// TestJournalKeepsOrigin: a restart replays a remote ban with its origin.
func TestJournalKeepsOrigin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := remoteBan("198.18.3.1/32", "web-2", time.Now(), time.Hour)
	if _, err := j.Add(b); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, _, err = Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got, ok := j.Get(b.Prefix)
	if !ok || got.Reason.Origin != "web-2" || j.Remote() != 1 {
		t.Errorf("replayed %+v (%v), %d remote", got, ok, j.Remote())
	}
}

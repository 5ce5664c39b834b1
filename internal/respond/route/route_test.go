package route

import (
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newNS creates a network namespace psbk<pid>r<k>, deleted in cleanup.
func newNS(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	name, h := testnet.NewNS(t, "psbkr")
	// lo up, so that IPv6 routes have a device to hang on.
	ip(t, name, "link", "set", "lo", "up")
	return name, h
}

func ip(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newBackend(t *testing.T, h netns.NsHandle) *Backend {
	t.Helper()
	b, err := New(Options{Netns: h}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	return b
}

// shown parses `ip [-6] route show ...` output into "type prefix proto" lines.
func shown(t *testing.T, ns string, args ...string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(ip(t, ns, args...)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

func bans(ps ...string) []respond.Ban {
	var out []respond.Ban
	for _, s := range ps {
		out = append(out, respond.Ban{Prefix: netip.MustParsePrefix(s), Timeout: time.Hour})
	}
	return out
}

func prefixes(ps ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ps {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func sortedList(t *testing.T, b *Backend) []string {
	t.Helper()
	ps, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func TestApplyListRevoke(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h)
	if b.Name() != "route" {
		t.Errorf("Name() = %q", b.Name())
	}
	// Foreign routes: one unrelated, one for a prefix we are about to ban.
	ip(t, ns, "route", "add", "blackhole", "192.0.2.1")
	ip(t, ns, "route", "add", "blackhole", "192.0.2.9")
	ip(t, ns, "-6", "route", "add", "blackhole", "2001:db8:f00::/48")
	ip(t, ns, "-6", "route", "add", "blackhole", "2001:db8:f01::/48", "proto", "static")
	foreign4 := shown(t, ns, "route", "show")
	foreign6 := shown(t, ns, "-6", "route", "show", "type", "blackhole")

	want := bans("198.51.100.7/32", "203.0.113.0/24", "2001:db8:bad::/64", "2001:db8::7/128", "192.0.2.9/32",
		"::ffff:198.51.100.8/128")
	for range 2 { // idempotent
		if err := b.Apply(want); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"blackhole 198.51.100.7 ", "blackhole 198.51.100.8 ", "blackhole 203.0.113.0/24 "},
		addSpace(shown(t, ns, "route", "show", "proto", "181"))); diff != "" {
		t.Errorf("ip route show proto 181 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"blackhole 2001:db8::7 dev lo metric 1024 pref medium", "blackhole 2001:db8:bad::/64 dev lo metric 1024 pref medium"},
		shown(t, ns, "-6", "route", "show", "proto", "181")); diff != "" {
		t.Errorf("ip -6 route show proto 181 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"198.51.100.7/32", "198.51.100.8/32", "2001:db8::7/128", "2001:db8:bad::/64", "203.0.113.0/24"},
		sortedList(t, b)); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	// Revoke and Expire of the foreign prefixes touch nothing.
	if err := b.Revoke(prefixes("192.0.2.1/32", "192.0.2.9/32", "2001:db8:f00::/48", "2001:db8:f01::/48")); err != nil {
		t.Fatal(err)
	}
	if err := b.Expire(prefixes("192.0.2.1/32", "192.0.2.9/32", "2001:db8:f00::/48", "2001:db8:f01::/48")); err != nil {
		t.Fatal(err)
	}

	// Expire some, revoke the rest (and some absent ones).
	if err := b.Expire(prefixes("198.51.100.7/32", "2001:db8:bad::/64")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.51.100.8/32", "2001:db8::7/128", "203.0.113.0/24"}, sortedList(t, b)); diff != "" {
		t.Errorf("List after Expire (-want +got):\n%s", diff)
	}
	if err := b.Revoke(prefixes("198.51.100.8/32", "203.0.113.0/24", "2001:db8::7/128", "198.51.100.7/32", "2001:db8:1::/64")); err != nil {
		t.Fatal(err)
	}
	if got := shown(t, ns, "route", "show", "proto", "181"); len(got) != 0 {
		t.Errorf("IPv4 routes left: %q", got)
	}
	if got := shown(t, ns, "-6", "route", "show", "proto", "181"); len(got) != 0 {
		t.Errorf("IPv6 routes left: %q", got)
	}
	if diff := cmp.Diff(foreign4, shown(t, ns, "route", "show")); diff != "" {
		t.Errorf("foreign IPv4 routes changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(foreign6, shown(t, ns, "-6", "route", "show", "type", "blackhole")); diff != "" {
		t.Errorf("foreign IPv6 routes changed (-before +after):\n%s", diff)
	}
}

// addSpace makes `ip route` lines comparable whatever trailing space ip prints.
func addSpace(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = strings.TrimSpace(l) + " "
	}
	return out
}

func TestBadPrefixes(t *testing.T) {
	_, h := newNS(t)
	b := newBackend(t, h)
	err := b.Apply([]respond.Ban{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, {Prefix: netip.MustParsePrefix("198.51.100.1/32")}})
	if err == nil || !strings.Contains(err.Error(), "whole address family") {
		t.Errorf("Apply(0.0.0.0/0) = %v, want a refusal", err)
	}
	if diff := cmp.Diff([]string{"198.51.100.1/32"}, sortedList(t, b)); diff != "" {
		t.Errorf("the good ban in the batch was not applied (-want +got):\n%s", diff)
	}
	if _, err := New(Options{Protocol: 4}, nil); err == nil {
		t.Error("New accepted protocol 4 (static)")
	}
}

// TestTraffic checks that a banned scanner can no longer complete a TCP handshake
// with the defended namespace, over IPv4 and IPv6, and can again after Revoke.
func TestTraffic(t *testing.T) {
	p := testnet.NewPair(t)
	h, err := netns.GetFromName(p.Defended)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := newBackend(t, h)
	l4 := p.Listen(t, p.Defended, "tcp", netip.AddrPortFrom(p.DefV4, 8080).String())
	l6 := p.Listen(t, p.Defended, "tcp", netip.AddrPortFrom(p.DefV6, 8080).String())
	testnet.Serve(l4, "hello\n")
	testnet.Serve(l6, "hello\n")
	to4, to6 := netip.AddrPortFrom(p.DefV4, 8080), netip.AddrPortFrom(p.DefV6, 8080)
	connect := func(to netip.AddrPort) error {
		_, err := testnet.Connect(p.Scanner, netip.Addr{}, to, time.Second)
		return err
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err != nil {
			t.Fatalf("before the ban: %v: %v", to, err)
		}
	}
	ban := []respond.Ban{{Prefix: netip.PrefixFrom(p.ScanV4, 32)}, {Prefix: netip.PrefixFrom(p.ScanV6, 128)}}
	if err := b.Apply(ban); err != nil {
		t.Fatal(err)
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err == nil {
			t.Errorf("banned scanner still connects to %v", to)
		}
	}
	if err := b.Revoke([]netip.Prefix{ban[0].Prefix, ban[1].Prefix}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err != nil {
			t.Errorf("after Revoke: %v: %v", to, err)
		}
	}
}

// TestUnenforced: a ban whose prefix a route that is not ours holds gets no route of
// ours and is no error; Unenforced says so, and whether that route drops the traffic
// anyway. Once that route is gone, Reconcile adds ours and the ban is enforced; a ban
// lifted is forgotten.
func TestUnenforced(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h)
	ip(t, ns, "route", "add", "blackhole", "192.0.2.9", "proto", "static")
	ip(t, ns, "route", "add", "198.51.100.0/24", "dev", "lo", "proto", "boot")
	ip(t, ns, "-6", "route", "add", "prohibit", "2001:db8:f00::/48")

	if err := b.Apply(bans("192.0.2.9/32", "198.51.100.0/24", "2001:db8:f00::/48", "203.0.113.7/32", "::ffff:192.0.2.9/128")); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, c := range []struct{ prefix, want string }{
		{"192.0.2.9/32", "a blackhole route that is not ours (proto static, metric 0) holds the prefix and is left alone: it drops the traffic instead, and stays when the ban ends"},
		{"::ffff:192.0.2.9/128", "a blackhole route that is not ours (proto static, metric 0) holds the prefix and is left alone: it drops the traffic instead, and stays when the ban ends"},
		{"198.51.100.0/24", "a unicast route that is not ours (proto boot, metric 0) holds the prefix and is left alone: the host is not blocked"},
		{"2001:db8:f00::/48", "a prohibit route that is not ours (proto boot, metric 1024) holds the prefix and is left alone: it drops the traffic instead, and stays when the ban ends"},
		{"203.0.113.7/32", ""},
		{"192.0.2.10/32", ""},
	} {
		if got := b.Unenforced(netip.MustParsePrefix(c.prefix)); got != c.want {
			t.Errorf("Unenforced(%s) = %q, want %q", c.prefix, got, c.want)
		}
	}
	if diff := cmp.Diff([]string{"203.0.113.7/32"}, sortedList(t, b)); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if n := b.UnenforcedCount(); n != 3 {
		t.Errorf("UnenforcedCount = %d, want 3", n)
	}

	// A start: a new backend learns the same from Reconcile, which repairs nothing.
	b2 := newBackend(t, h)
	want := bans("192.0.2.9/32", "198.51.100.0/24", "2001:db8:f00::/48", "203.0.113.7/32")
	reconcile(t, b2, want, 0, 0)
	if got := b2.Unenforced(netip.MustParsePrefix("198.51.100.0/24")); !strings.Contains(got, "the host is not blocked") {
		t.Errorf("after Reconcile: Unenforced = %q", got)
	}
	// The foreign route goes: the next reconciliation puts ours in its place.
	ip(t, ns, "route", "del", "198.51.100.0/24")
	reconcile(t, b2, want, 1, 0)
	if got := b2.Unenforced(netip.MustParsePrefix("198.51.100.0/24")); got != "" {
		t.Errorf("enforced now, but Unenforced = %q", got)
	}
	// Lifted bans are forgotten, by Revoke as by a reconciliation without them.
	if err := b2.Revoke(prefixes("192.0.2.9/32")); err != nil {
		t.Fatal(err)
	}
	if got := b2.Unenforced(netip.MustParsePrefix("192.0.2.9/32")); got != "" {
		t.Errorf("revoked, but Unenforced = %q", got)
	}
	reconcile(t, b2, nil, 0, 2)
	if got := b2.Unenforced(netip.MustParsePrefix("2001:db8:f00::/48")); got != "" {
		t.Errorf("no longer banned, but Unenforced = %q", got)
	}
}

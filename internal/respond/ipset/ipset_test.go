package ipset

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
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

// newNS creates a network namespace psbk<pid>i<k>, deleted in cleanup.
func newNS(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	return testnet.NewNS(t, "psbki")
}

// in runs a command inside ns through `ip netns exec`, independently of the backend.
func in(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newBackend(t *testing.T, h netns.NsHandle, opts Options) *Backend {
	t.Helper()
	opts.Netns = h
	b, err := New(opts, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// ruleCount counts our rule in `iptables -S INPUT` (or ip6tables).
func ruleCount(t *testing.T, ns, cmd, set string) int {
	t.Helper()
	want := fmt.Sprintf("-A INPUT -m set --match-set %s src -j DROP", set)
	n := 0
	for _, l := range strings.Split(in(t, ns, cmd, "-w", "-S", "INPUT"), "\n") {
		if strings.TrimSpace(l) == want {
			n++
		}
	}
	return n
}

var memberRE = regexp.MustCompile(`^(\S+)(?: timeout (\d+))?$`)

// members parses `ipset list NAME`: element -> timeout left (-1: no timeout shown).
func members(t *testing.T, ns, set string) (header string, m map[string]int) {
	t.Helper()
	out := in(t, ns, "ipset", "list", set)
	m = map[string]int{}
	inMembers := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Header:") {
			header = l
		}
		if l == "Members:" {
			inMembers = true
			continue
		}
		if !inMembers || l == "" {
			continue
		}
		g := memberRE.FindStringSubmatch(l)
		if g == nil {
			t.Fatalf("ipset list %s: odd member line %q", set, l)
		}
		m[g[1]] = -1
		if g[2] != "" {
			m[g[1]], _ = strconv.Atoi(g[2])
		}
	}
	return header, m
}

func TestSetupApplyExpire(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	if b.Name() != "ipset" {
		t.Errorf("Name() = %q", b.Name())
	}
	for range 2 {
		if err := b.Setup(); err != nil {
			t.Fatal(err)
		}
	}
	if n := ruleCount(t, ns, "iptables", DefaultSet4); n != 1 {
		t.Errorf("iptables rule present %d times after two Setups, want 1", n)
	}
	if n := ruleCount(t, ns, "ip6tables", DefaultSet6); n != 1 {
		t.Errorf("ip6tables rule present %d times after two Setups, want 1", n)
	}
	for _, set := range []string{DefaultSet4, DefaultSet6} {
		hdr, _ := members(t, ns, set)
		if !strings.Contains(hdr, "timeout 0") {
			t.Errorf("set %s header %q lacks timeout 0", set, hdr)
		}
	}
	if hdr, _ := members(t, ns, DefaultSet6); !strings.Contains(hdr, "family inet6") {
		t.Errorf("set %s header %q: not inet6", DefaultSet6, hdr)
	}

	err := b.Apply([]respond.Ban{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: 1500 * time.Millisecond}, // rounds up to 2 s
		{Prefix: netip.MustParsePrefix("203.0.113.0/24")},                                    // permanent
		{Prefix: netip.MustParsePrefix("2001:db8:bad::/64"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: 60 * 24 * time.Hour}, // past the kernel's maximum
	})
	if err != nil {
		t.Fatal(err)
	}
	_, m4 := members(t, ns, DefaultSet4)
	if to, ok := m4["198.51.100.7"]; !ok || to < 1 || to > 2 {
		t.Errorf("ipset list %s: 198.51.100.7 timeout %d (present %v), want 1-2; all %v", DefaultSet4, to, ok, m4)
	}
	if to, ok := m4["203.0.113.0/24"]; !ok || to != 0 && to != -1 {
		t.Errorf("ipset list %s: 203.0.113.0/24 timeout %d (present %v), want permanent", DefaultSet4, to, ok)
	}
	_, m6 := members(t, ns, DefaultSet6)
	if to := m6["2001:db8:bad::/64"]; to < 3590 || to > 3600 {
		t.Errorf("ipset list %s: 2001:db8:bad::/64 timeout %d, want ~3600; all %v", DefaultSet6, to, m6)
	}
	if to, ok := m6["2001:db8::7"]; !ok || to > 0 {
		t.Errorf("ipset list %s: 2001:db8::7 timeout %d (present %v), want permanent", DefaultSet6, to, ok)
	}
	list, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Prefix.String())
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"198.51.100.7/32", "2001:db8::7/128", "2001:db8:bad::/64", "203.0.113.0/24"}, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	// The 2 s element goes by itself.
	deadline := time.Now().Add(6 * time.Second)
	for {
		_, m4 = members(t, ns, DefaultSet4)
		if _, ok := m4["198.51.100.7"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("198.51.100.7 still in %s after 6 s: %v", DefaultSet4, m4)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Renewal replaces the timeout.
	for _, d := range []time.Duration{10 * time.Second, time.Hour} {
		if err := b.Apply([]respond.Ban{{Prefix: netip.MustParsePrefix("198.51.100.9/32"), Timeout: d}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, m4 = members(t, ns, DefaultSet4); m4["198.51.100.9"] < 3590 {
		t.Errorf("renewed element timeout %d, want ~3600", m4["198.51.100.9"])
	}

	// Revoke and Expire; absent prefixes are fine.
	if err := b.Revoke([]netip.Prefix{netip.MustParsePrefix("198.51.100.9/32"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8:bad::/64")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Expire([]netip.Prefix{netip.MustParsePrefix("2001:db8::7/128"), netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("198.51.100.7/32")}); err != nil {
		t.Fatal(err)
	}
	if list, err := b.List(); err != nil || len(list) != 0 {
		t.Errorf("List after Revoke/Expire = %v, %v; want empty", list, err)
	}

	// Close keeps everything; Teardown removes rules and sets.
	if err := b.Teardown(); err != nil {
		t.Fatal(err)
	}
	if n := ruleCount(t, ns, "iptables", DefaultSet4) + ruleCount(t, ns, "ip6tables", DefaultSet6); n != 0 {
		t.Errorf("%d rules left after Teardown", n)
	}
	if out := strings.TrimSpace(in(t, ns, "ipset", "list", "-n")); out != "" {
		t.Errorf("sets left after Teardown: %q", out)
	}
}

func TestSetupErrors(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{IPTables: "/nonexistent/iptables"})
	if err := b.Setup(); err == nil || !strings.Contains(err.Error(), "/nonexistent/iptables") {
		t.Errorf("Setup without iptables: %v, want an error naming it", err)
	}
	in(t, ns, "ipset", "create", DefaultSet4, "hash:ip")
	b = newBackend(t, h, Options{})
	if err := b.Setup(); err == nil || !strings.Contains(err.Error(), DefaultSet4) {
		t.Errorf("Setup with a foreign set %s: %v, want an error naming it", DefaultSet4, err)
	} else {
		t.Log(err)
	}
	if _, err := New(Options{Set4: "x", Set6: "x"}, nil); err == nil {
		t.Error("New accepted equal set names")
	}
}

// TestTraffic checks that a banned scanner cannot connect, over IPv4 and IPv6.
func TestTraffic(t *testing.T) {
	testnet.Require(t, "ipset", "iptables", "ip6tables")
	p := testnet.NewPair(t)
	h, err := netns.GetFromName(p.Defended)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := newBackend(t, h, Options{})
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	to4, to6 := netip.AddrPortFrom(p.DefV4, 8080), netip.AddrPortFrom(p.DefV6, 8080)
	testnet.Serve(p.Listen(t, p.Defended, "tcp", to4.String()), "hello\n")
	testnet.Serve(p.Listen(t, p.Defended, "tcp", to6.String()), "hello\n")
	connect := func(to netip.AddrPort) error {
		_, err := testnet.Connect(p.Scanner, netip.Addr{}, to, time.Second)
		return err
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err != nil {
			t.Fatalf("before the ban: %v: %v", to, err)
		}
	}
	if err := b.Apply([]respond.Ban{{Prefix: netip.PrefixFrom(p.ScanV4, 32), Timeout: time.Minute},
		{Prefix: p.V6Net, Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err == nil {
			t.Errorf("banned scanner still connects to %v", to)
		}
	}
	if err := b.Revoke([]netip.Prefix{netip.PrefixFrom(p.ScanV4, 32), p.V6Net}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []netip.AddrPort{to4, to6} {
		if err := connect(to); err != nil {
			t.Errorf("after Revoke: %v: %v", to, err)
		}
	}
}

package ipset

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

func reconcile(t *testing.T, b *Backend, want []respond.Ban, restored, removed int) {
	t.Helper()
	rep, err := b.Reconcile(want)
	if err != nil {
		t.Fatal(err)
	}
	if w := (respond.Repair{Restored: restored, Removed: removed}); rep != w {
		t.Errorf("Reconcile = %+v, want %+v", rep, w)
	}
}

// countingTools returns wrappers of the commands v4 and v6 (iptables and ip6tables of
// one variant) that log each run to a file, and a function counting the runs so far.
func countingTools(t *testing.T, v4, v6 string) (Options, func() int) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	var opts Options
	for _, cmd := range []string{v4, v6} {
		real, err := exec.LookPath(cmd)
		if err != nil {
			t.Skip(err)
		}
		path := filepath.Join(dir, filepath.Base(cmd))
		script := "#!/bin/sh\necho \"$0 $*\" >>" + log + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if cmd == v4 {
			opts.IPTables = path
		} else {
			opts.IP6Tables = path
		}
	}
	return opts, func() int {
		b, _ := os.ReadFile(log)
		return strings.Count(string(b), "\n")
	}
}

// TestReconcile repairs by-hand changes, with each iptables variant: the set
// reference counts that spare the forks must behave the same with both.
func TestReconcile(t *testing.T) {
	for _, v := range [][2]string{{"iptables-nft", "ip6tables-nft"}, {"iptables-legacy", "ip6tables-legacy"}} {
		t.Run(v[0], func(t *testing.T) {
			testnet.Require(t, "ipset", v[0], v[1])
			testReconcile(t, v[0], v[1])
		})
	}
}

func testReconcile(t *testing.T, ipt, ip6t string) {
	ns, h := newNS(t)
	opts, runs := countingTools(t, ipt, ip6t)
	b := newBackend(t, h, opts)
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	// Someone else's set, with an element of theirs.
	in(t, ns, "ipset", "create", "admin4", "hash:ip")
	in(t, ns, "ipset", "add", "admin4", "192.0.2.1")
	want := []respond.Ban{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24")},
		{Prefix: netip.MustParsePrefix("2001:db8:bad::/64"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: time.Hour},
	}
	if err := b.Apply(want); err != nil {
		t.Fatal(err)
	}
	n := runs()
	reconcile(t, b, want, 0, 0)
	if runs() != n {
		t.Errorf("a Reconcile with nothing to repair ran iptables %d times", runs()-n)
	}

	// By hand: one of ours deleted, one the journal does not hold added.
	in(t, ns, "ipset", "del", DefaultSet4, "198.51.100.7")
	in(t, ns, "ipset", "add", DefaultSet6, "2001:db8:eee::/48")
	reconcile(t, b, want, 1, 1)
	if _, m4 := members(t, ns, DefaultSet4); m4["198.51.100.7"] < 3590 {
		t.Errorf("restored element's timeout %d, want ~3600", m4["198.51.100.7"])
	}
	if _, m6 := members(t, ns, DefaultSet6); len(m6) != 2 {
		t.Errorf("%s holds %v", DefaultSet6, m6)
	}

	// By hand, cut short: a timed ban's element, and the permanent one, given 100 s.
	in(t, ns, "ipset", "-exist", "add", DefaultSet4, "198.51.100.7", "timeout", "100")
	in(t, ns, "ipset", "-exist", "add", DefaultSet4, "203.0.113.0/24", "timeout", "100")
	reconcile(t, b, want, 2, 0)
	if _, m4 := members(t, ns, DefaultSet4); m4["198.51.100.7"] < 3590 || m4["203.0.113.0/24"] != 0 {
		t.Errorf("renewed elements: %v, want 198.51.100.7 ~3600 s and 203.0.113.0/24 permanent", m4)
	}
	// An element that outlives its ban is Expire's to remove.
	reconcile(t, b, append(want[:0:0], respond.Ban{Prefix: want[0].Prefix, Timeout: time.Minute}, want[1], want[2], want[3]), 0, 0)

	// iptables flushed: the rule comes back, the elements were never gone.
	in(t, ns, ipt, "-w", "-F", "INPUT")
	reconcile(t, b, want, 0, 0)
	if n := ruleCount(t, ns, ipt, DefaultSet4); n != 1 {
		t.Errorf("iptables rule present %d times after Reconcile", n)
	}
	// ip6tables flushed and the set destroyed: both come back, with the elements.
	in(t, ns, ip6t, "-w", "-F", "INPUT")
	in(t, ns, "ipset", "destroy", DefaultSet6)
	reconcile(t, b, want, 2, 0)
	if n := ruleCount(t, ns, ip6t, DefaultSet6); n != 1 {
		t.Errorf("ip6tables rule present %d times after Reconcile", n)
	}
	if hdr, m6 := members(t, ns, DefaultSet6); !strings.Contains(hdr, "family inet6") || !strings.Contains(hdr, "timeout 0") || len(m6) != 2 {
		t.Errorf("recreated %s: %q %v", DefaultSet6, hdr, m6)
	}
	n = runs()
	reconcile(t, b, want, 0, 0)
	if runs() != n {
		t.Errorf("a Reconcile after the repair ran iptables %d times", runs()-n)
	}
	if n := ruleCount(t, ns, ipt, DefaultSet4) + ruleCount(t, ns, ip6t, DefaultSet6); n != 2 {
		t.Errorf("%d rules of ours, want 2", n)
	}

	// The administrator's rules, one naming our set: its reference is seen once.
	in(t, ns, ipt, "-w", "-A", "INPUT", "-m", "set", "--match-set", "admin4", "src", "-j", "ACCEPT")
	in(t, ns, ipt, "-w", "-A", "INPUT", "-m", "set", "--match-set", DefaultSet4, "src", "-j", "LOG")
	reconcile(t, b, want, 0, 0)
	n = runs()
	reconcile(t, b, want, 0, 0)
	if runs() != n {
		t.Errorf("a Reconcile after a new reference was seen ran iptables %d times", runs()-n)
	}

	// No bans: the sets are emptied, nothing of anyone else's changes.
	reconcile(t, b, nil, 0, 4)
	if list, err := b.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v", list, err)
	}
	if _, m := members(t, ns, "admin4"); !cmp.Equal(m, map[string]int{"192.0.2.1": -1}) {
		t.Errorf("admin4 holds %v", m)
	}
	if rules := in(t, ns, ipt, "-w", "-S", "INPUT"); !strings.Contains(rules, "--match-set admin4 src -j ACCEPT") ||
		!strings.Contains(rules, "--match-set "+DefaultSet4+" src -j LOG") {
		t.Errorf("the administrator's rules are gone:\n%s", rules)
	}
}

func TestSetNames(t *testing.T) {
	for inst, want := range map[string][2]string{
		"":                            {DefaultSet4, DefaultSet6},
		"udp":                         {"portsentry-udp4", "portsentry-udp6"},
		"stcp+sudp+atcp+aud":          {"portsentry-stcp+sudp+atcp+aud4", "portsentry-stcp+sudp+atcp+aud6"},
		"tcp+udp+stcp+sudp+atcp+audp": {"portsentry-tcp+udp+st~e21451ac4", "portsentry-tcp+udp+st~e21451ac6"},
	} {
		if s4, s6 := SetNames(inst); s4 != want[0] || s6 != want[1] {
			t.Errorf("SetNames(%q) = %q, %q; want %q", inst, s4, s6, want)
		}
	}
	if a, _ := SetNames("tcp+udp+stcp+sudp+atcp"); a == "portsentry-tcp+udp+st~e21451ac4" || len(a) != 31 {
		t.Errorf("SetNames(tcp+udp+stcp+sudp+atcp) = %q", a)
	}
}

// TestInstances: two daemons' sets and rules side by side; one's Revoke, Reconcile
// and Teardown never touch the other's.
func TestInstances(t *testing.T) {
	testnet.Require(t, "ipset", "iptables", "ip6tables")
	ns, h := newNS(t)
	def := newBackend(t, h, Options{})
	long := newBackend(t, h, Options{Instance: "tcp+udp+stcp+sudp+atcp+audp"})
	for _, b := range []*Backend{def, long} {
		if err := b.Setup(); err != nil {
			t.Fatal(err)
		}
	}
	shared := []respond.Ban{{Prefix: netip.MustParsePrefix("198.51.100.7/32")}, {Prefix: netip.MustParsePrefix("2001:db8::/64")}}
	for _, b := range []*Backend{def, long} {
		if err := b.Apply(shared); err != nil {
			t.Fatal(err)
		}
	}
	l4, l6 := long.opts.Set4, long.opts.Set6
	if n := ruleCount(t, ns, "iptables", l4) + ruleCount(t, ns, "ip6tables", l6); n != 2 {
		t.Errorf("%d rules for %s, %s; want 2", n, l4, l6)
	}
	if err := def.Revoke([]netip.Prefix{shared[0].Prefix, shared[1].Prefix}); err != nil {
		t.Fatal(err)
	}
	reconcile(t, def, nil, 0, 0)
	reconcile(t, long, shared, 0, 0)
	reconcile(t, def, shared, 2, 0)
	// iptables flushed: each instance puts back its own rules, once.
	in(t, ns, "iptables", "-w", "-F", "INPUT")
	in(t, ns, "ip6tables", "-w", "-F", "INPUT")
	for range 2 {
		reconcile(t, def, shared, 0, 0)
	}
	if n := ruleCount(t, ns, "iptables", DefaultSet4) + ruleCount(t, ns, "ip6tables", DefaultSet6) +
		ruleCount(t, ns, "iptables", l4) + ruleCount(t, ns, "ip6tables", l6); n != 2 {
		t.Errorf("%d rules after the default instance's Reconcile, want its 2", n)
	}
	reconcile(t, long, shared, 0, 0)
	if n := ruleCount(t, ns, "iptables", l4) + ruleCount(t, ns, "ip6tables", l6); n != 2 {
		t.Errorf("%d rules for %s, %s after its Reconcile; want 2", n, l4, l6)
	}
	if err := long.Teardown(); err != nil {
		t.Fatal(err)
	}
	reconcile(t, def, shared, 0, 0)
	if n := ruleCount(t, ns, "iptables", DefaultSet4) + ruleCount(t, ns, "ip6tables", DefaultSet6); n != 2 {
		t.Errorf("%d default rules after the other's Teardown, want 2", n)
	}
	if got := strings.Fields(in(t, ns, "ipset", "list", "-n")); !cmp.Equal(got, []string{DefaultSet4, DefaultSet6}) {
		t.Errorf("sets left: %q", got)
	}
	if _, err := New(Options{Instance: "a~b"}, nil); err == nil {
		t.Error("New accepted instance a~b")
	}
}

// BenchmarkReconcile is one Reconcile with nothing to repair, 500 IPv4 and 500 IPv6
// bans held.
func BenchmarkReconcile(bm *testing.B) {
	testnet.Require(bm, "ipset", "iptables", "ip6tables")
	_, h := testnet.NewNS(bm, "psbki")
	b, err := New(Options{Netns: h}, nil)
	if err != nil {
		bm.Fatal(err)
	}
	defer b.Close()
	if err := b.Setup(); err != nil {
		bm.Fatal(err)
	}
	var want []respond.Ban
	for i := range 500 {
		want = append(want,
			respond.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour},
			respond.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 128), Timeout: time.Hour})
	}
	if err := b.Apply(want); err != nil {
		bm.Fatal(err)
	}
	for bm.Loop() {
		if rep, err := b.Reconcile(want); err != nil || rep.Changed() {
			bm.Fatal(rep, err)
		}
	}
}

package route

import (
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"

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

// allRoutes is every route of both families in every table.
func allRoutes(t *testing.T, ns string) []string {
	return append(shown(t, ns, "route", "show", "table", "all"), shown(t, ns, "-6", "route", "show", "table", "all")...)
}

func TestReconcile(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h)
	// Foreign routes: someone's blackhole, one for a prefix we ban, and routes tagged
	// 181 that are not our blackholes in our table.
	ip(t, ns, "route", "add", "blackhole", "192.0.2.1")
	ip(t, ns, "route", "add", "blackhole", "192.0.2.9")
	ip(t, ns, "-6", "route", "add", "blackhole", "2001:db8:f00::/48", "proto", "static")
	ip(t, ns, "route", "add", "unreachable", "192.0.2.77", "proto", "181")
	ip(t, ns, "route", "add", "blackhole", "192.0.2.88", "proto", "181", "table", "100")
	want := bans("198.51.100.7/32", "203.0.113.0/24", "2001:db8:bad::/64", "2001:db8::7/128", "192.0.2.9/32")
	if err := b.Apply(want); err != nil {
		t.Fatal(err)
	}
	before := allRoutes(t, ns)
	reconcile(t, b, want, 0, 0)

	// By hand: two of ours deleted, two tagged blackholes the journal does not hold added.
	ip(t, ns, "route", "del", "blackhole", "198.51.100.7", "proto", "181")
	ip(t, ns, "-6", "route", "del", "blackhole", "2001:db8:bad::/64", "proto", "181")
	ip(t, ns, "route", "add", "blackhole", "203.0.113.50", "proto", "181")
	ip(t, ns, "-6", "route", "add", "blackhole", "2001:db8:eee::/48", "proto", "181")
	reconcile(t, b, want, 2, 2)
	if diff := cmp.Diff(before, allRoutes(t, ns)); diff != "" {
		t.Errorf("routes after Reconcile (-after Apply +after Reconcile):\n%s", diff)
	}
	// The foreign route for 192.0.2.9 is met again, and still not replaced.
	reconcile(t, b, want, 0, 0)

	// A ban about to run out is not put back; no bans leaves no route of ours.
	ip(t, ns, "route", "del", "blackhole", "198.51.100.7", "proto", "181")
	reconcile(t, b, append(bans("203.0.113.0/24", "2001:db8:bad::/64", "2001:db8::7/128"),
		respond.Ban{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Second}), 0, 0)
	reconcile(t, b, nil, 0, 3)
	if got := sortedList(t, b); len(got) != 0 {
		t.Errorf("routes of ours left: %v", got)
	}
	if got := shown(t, ns, "route", "show", "table", "all", "proto", "181"); !cmp.Equal(got, []string{
		"blackhole 192.0.2.88 table 100", "unreachable 192.0.2.77"}) {
		t.Errorf("foreign proto 181 routes: %q", got)
	}
	// A bad prefix is an error, the good ones beside it are still restored.
	if _, err := b.Reconcile([]respond.Ban{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, {Prefix: netip.MustParsePrefix("198.51.100.1/32")}}); err == nil {
		t.Error("Reconcile accepted 0.0.0.0/0")
	}
	if got := sortedList(t, b); !cmp.Equal(got, []string{"198.51.100.1/32"}) {
		t.Errorf("List = %v", got)
	}
}

func newInstance(t *testing.T, h netns.NsHandle, name string) *Backend {
	t.Helper()
	b, err := New(Options{Netns: h, Instance: name}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstances: the default instance and two named ones ban overlapping prefixes;
// none's Revoke or Reconcile deletes another's route.
func TestInstances(t *testing.T) {
	ns, h := newNS(t)
	def, udp, both := newBackend(t, h), newInstance(t, h, "udp"), newInstance(t, h, "tcp+udp")
	if udp.Protocol() != InstanceProtocol || udp.Metric() != InstanceMetric("udp") || def.Metric() != 0 {
		t.Fatalf("udp: proto %d metric %d; default metric %d", udp.Protocol(), udp.Metric(), def.Metric())
	}
	shared := bans("198.51.100.7/32", "2001:db8:bad::/64")
	for _, b := range []*Backend{def, udp, both} {
		if err := b.Apply(shared); err != nil {
			t.Fatal(err)
		}
	}
	if err := udp.Apply(bans("203.0.113.9/32")); err != nil {
		t.Fatal(err)
	}
	m := strconv.Itoa(udp.Metric())
	if diff := cmp.Diff([]string{"blackhole 198.51.100.7 metric " + m, "blackhole 198.51.100.7 metric " + strconv.Itoa(both.Metric()),
		"blackhole 203.0.113.9 metric " + m}, sortedTrim(shown(t, ns, "route", "show", "proto", "180"))); diff != "" {
		t.Errorf("ip route show proto 180 (-want +got):\n%s", diff)
	}
	if got := shown(t, ns, "route", "show", "proto", "181"); len(got) != 1 {
		t.Errorf("ip route show proto 181: %q", got)
	}

	// The default instance lifts the shared bans: the named ones keep theirs.
	if err := def.Revoke(prefixes("198.51.100.7/32", "2001:db8:bad::/64", "203.0.113.9/32")); err != nil {
		t.Fatal(err)
	}
	reconcile(t, def, nil, 0, 0)
	for _, b := range []*Backend{udp, both} {
		if got := sortedList(t, b); len(got) < 2 {
			t.Errorf("instance %q lost routes to the default's Revoke: %v", b.opts.Instance, got)
		}
	}
	// udp reconciles to nothing, then revokes what "tcp+udp" holds: "tcp+udp" keeps it.
	reconcile(t, udp, nil, 0, 3)
	if err := udp.Revoke(prefixes("198.51.100.7/32", "2001:db8:bad::/64")); err != nil {
		t.Fatal(err)
	}
	reconcile(t, both, shared, 0, 0)
	if diff := cmp.Diff([]string{"198.51.100.7/32", "2001:db8:bad::/64"}, sortedList(t, both)); diff != "" {
		t.Errorf("tcp+udp (-want +got):\n%s", diff)
	}
	// The default instance puts its bans back beside the named one's.
	reconcile(t, def, shared, 2, 0)
	reconcile(t, both, shared, 0, 0)

	if _, err := New(Options{Instance: "udp", Protocol: DefaultProtocol}, nil); err == nil {
		t.Error("New accepted a named instance on the default instance's protocol")
	}
	if _, err := New(Options{Protocol: InstanceProtocol}, nil); err == nil {
		t.Error("New accepted the default instance on the named instances' protocol")
	}
	if _, err := New(Options{Instance: "a b"}, nil); err == nil {
		t.Error("New accepted instance \"a b\"")
	}
}

// sortedTrim drops what `ip route` prints after the metric (and trailing blanks).
func sortedTrim(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = strings.Join(strings.Fields(l), " ")
	}
	return out
}

// TestInstanceMetrics: the names the daemon gives its processes (their modes joined
// with "+") get distinct metrics.
func TestInstanceMetrics(t *testing.T) {
	modes := []string{"tcp", "udp", "stcp", "sudp", "atcp", "audp"}
	seen := map[int]string{}
	for set := 1; set < 1<<len(modes); set++ {
		var names []string
		for i, m := range modes {
			if set&(1<<i) != 0 {
				names = append(names, m)
			}
		}
		name := strings.Join(names, "+")
		m := InstanceMetric(name)
		if other, ok := seen[m]; ok || m == 0 {
			t.Errorf("instances %q and %q share metric %d", name, other, m)
		}
		seen[m] = name
	}
}

// BenchmarkReconcile is one Reconcile with nothing to repair, 500 IPv4 and 500 IPv6
// bans held: by our routes, or (classic KILL_ROUTE beside the backend) by someone
// else's route for each prefix.
func BenchmarkReconcile(bm *testing.B) {
	var want []respond.Ban
	for i := range 500 {
		want = append(want,
			respond.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32), Timeout: time.Hour},
			respond.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 128), Timeout: time.Hour})
	}
	bm.Run("ours", func(bm *testing.B) {
		b := benchBackend(bm, nil)
		if err := b.Apply(want); err != nil {
			bm.Fatal(err)
		}
		benchReconcile(bm, b, want)
	})
	bm.Run("foreign", func(bm *testing.B) {
		var batch strings.Builder
		for _, ban := range want {
			batch.WriteString("route add blackhole " + ban.Prefix.String() + " proto boot\n")
		}
		benchReconcile(bm, benchBackend(bm, &batch), want)
	})
}

// benchBackend is a backend in a new namespace, in which the ip(8) batch runs first.
func benchBackend(bm *testing.B, batch *strings.Builder) *Backend {
	ns, h := testnet.NewNS(bm, "psbkr")
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader("link set lo up\n")
	if batch != nil {
		cmd.Stdin = strings.NewReader("link set lo up\n" + batch.String())
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		bm.Fatalf("%v: %s", err, out)
	}
	b, err := New(Options{Netns: h}, nil)
	if err != nil {
		bm.Fatal(err)
	}
	bm.Cleanup(func() { b.Close() })
	return b
}

func benchReconcile(bm *testing.B, b *Backend, want []respond.Ban) {
	for bm.Loop() {
		if rep, err := b.Reconcile(want); err != nil || rep.Changed() {
			bm.Fatal(rep, err)
		}
	}
}

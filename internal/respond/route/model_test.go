package route

import (
	"maps"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/respond"
)

// byHand runs ip(8) in ns on one of b's routes, as an administrator would.
func byHand(rt *rapid.T, ns, op string, b *Backend, p netip.Prefix) {
	args := []string{"-n", ns, "-4", "route", op, "blackhole", p.String(), "proto", strconv.Itoa(b.Protocol())}
	if p.Addr().Is6() {
		args[2] = "-6"
	}
	if b.Metric() != 0 {
		args = append(args, "metric", strconv.Itoa(b.Metric()))
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		rt.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestReconcileModel drives the default instance and two named ones through random
// bans, revocations, hand deletions and hand additions of their routes, against a
// model of each one's journal and routes: each Reconcile must report exactly the
// model's differences, and no operation of one instance may change another's routes.
func TestReconcileModel(t *testing.T) {
	ns, h := newNS(t)
	ip(t, ns, "route", "add", "blackhole", "192.0.2.200", "proto", "static")
	foreign := shown(t, ns, "route", "show", "proto", "static")
	bs := []*Backend{newBackend(t, h), newInstance(t, h, "udp"), newInstance(t, h, "tcp+udp")}
	var pool []netip.Prefix
	for i := 1; i <= 4; i++ {
		pool = append(pool, netip.MustParsePrefix("192.0.2."+strconv.Itoa(i)+"/32"),
			netip.MustParsePrefix("2001:db8::"+strconv.Itoa(i)+"/128"))
	}
	rapid.Check(t, func(rt *rapid.T) {
		for _, fam := range []string{"-4", "-6"} {
			for _, proto := range []string{"180", "181"} {
				exec.Command("ip", "-n", ns, fam, "route", "flush", "proto", proto).Run()
			}
		}
		journal := []map[netip.Prefix]bool{{}, {}, {}}
		held := []map[netip.Prefix]bool{{}, {}, {}}
		for range rapid.IntRange(1, 40).Draw(rt, "steps") {
			i := rapid.IntRange(0, len(bs)-1).Draw(rt, "instance")
			b, p := bs[i], rapid.SampledFrom(pool).Draw(rt, "prefix")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0:
				if err := b.Apply([]respond.Ban{{Prefix: p}}); err != nil {
					rt.Fatal(err)
				}
				journal[i][p], held[i][p] = true, true
			case 1:
				if err := b.Revoke([]netip.Prefix{p}); err != nil {
					rt.Fatal(err)
				}
				delete(journal[i], p)
				delete(held[i], p)
			case 2:
				if held[i][p] {
					byHand(rt, ns, "del", b, p)
					delete(held[i], p)
				}
			case 3:
				if !held[i][p] {
					byHand(rt, ns, "add", b, p)
					held[i][p] = true
				}
			case 4:
				checkReconcile(rt, b, journal[i], held[i])
				held[i] = maps.Clone(journal[i])
			}
			for j, b := range bs {
				if diff := cmp.Diff(held[j], listed(rt, b)); diff != "" {
					rt.Fatalf("instance %q routes (-model +kernel):\n%s", b.opts.Instance, diff)
				}
			}
		}
	})
	if diff := cmp.Diff(foreign, shown(t, ns, "route", "show", "proto", "static")); diff != "" {
		t.Errorf("foreign route changed (-before +after):\n%s", diff)
	}
}

func checkReconcile(rt *rapid.T, b *Backend, journal, held map[netip.Prefix]bool) {
	var want []respond.Ban
	var w respond.Repair
	for p := range journal {
		want = append(want, respond.Ban{Prefix: p})
		if !held[p] {
			w.Restored++
		}
	}
	for p := range held {
		if !journal[p] {
			w.Removed++
		}
	}
	for _, w := range []respond.Repair{w, {}} { // then nothing left to repair
		rep, err := b.Reconcile(want)
		if err != nil {
			rt.Fatal(err)
		}
		if rep != w {
			rt.Fatalf("instance %q: Reconcile = %+v, want %+v", b.opts.Instance, rep, w)
		}
	}
}

func listed(rt *rapid.T, b *Backend) map[netip.Prefix]bool {
	ps, err := b.List()
	if err != nil {
		rt.Fatal(err)
	}
	out := map[netip.Prefix]bool{}
	for _, p := range ps {
		out[p] = true
	}
	return out
}

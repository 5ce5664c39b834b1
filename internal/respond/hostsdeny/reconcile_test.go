package hostsdeny

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/respond"
)

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(...any)
	Fatalf(string, ...any)
	Errorf(string, ...any)
}

// handDelete removes p's rule (and its expiry line) from the file, as an
// administrator's editor would, without the backend.
func handDelete(t tb, path string, p netip.Prefix) {
	t.Helper()
	ls := strings.SplitAfter(read(t, path), "\n")
	i := slices.Index(ls, rulePrefix+Pattern(p)+"\n")
	if i < 0 {
		t.Fatalf("no rule for %v in %q", p, ls)
	}
	from := i
	if i > 0 && strings.HasPrefix(ls[i-1], untilPrefix) {
		from--
	}
	write(t, path, strings.Join(slices.Delete(ls, from, i+1), ""))
}

// handAdd writes a rule for p just before the block's end marker: a rule of ours
// that the journal does not hold.
func handAdd(t tb, path, end string, p netip.Prefix) {
	t.Helper()
	s := read(t, path)
	i := strings.Index(s, end+"\n")
	if i < 0 {
		t.Fatalf("no %q in %q", end, s)
	}
	write(t, path, s[:i]+rulePrefix+Pattern(p)+"\n"+s[i:])
}

func write(t tb, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func reconcile(t tb, b *Backend, want []respond.Ban, restored, removed int) {
	t.Helper()
	rep, err := b.Reconcile(want)
	if err != nil {
		t.Fatal(err)
	}
	if w := (respond.Repair{Restored: restored, Removed: removed}); rep != w {
		t.Errorf("Reconcile = %+v, want %+v", rep, w)
	}
}

func TestReconcile(t *testing.T) {
	b, path, c := newBackend(t, head+tail)
	want := []respond.Ban{ban("192.0.2.1/32", time.Hour), ban("192.0.2.2/32", 0), ban("2001:db8::/64", 2*time.Hour)}
	if err := b.Apply(want); err != nil {
		t.Fatal(err)
	}
	applied := read(t, path)
	reconcile(t, b, want, 0, 0)

	// An administrator deletes one of our rules and slips one into the block; the
	// journal holds neither change.
	handDelete(t, path, want[0].Prefix)
	handAdd(t, path, EndMarker, netip.MustParsePrefix("198.51.100.9/32"))
	c.set(t0.Add(10 * time.Minute))
	want[0].Timeout = 50 * time.Minute // what the journal has left of it
	reconcile(t, b, want, 1, 1)
	wantFile := head + tail + BeginMarker + "\n" +
		"ALL: 192.0.2.2\n" +
		"# until 2026-11-24T19:00:00Z\n" +
		"ALL: [2001:db8::]/64\n" +
		"# until 2026-11-24T18:00:00Z\n" +
		"ALL: 192.0.2.1\n" +
		EndMarker + "\n"
	if diff := cmp.Diff(wantFile, read(t, path)); diff != "" {
		t.Errorf("after Reconcile (-want +got):\n%s", diff)
	}

	// Nothing wrong: no rewrite.
	st1, _ := os.Stat(path)
	reconcile(t, b, want, 0, 0)
	if st2, _ := os.Stat(path); !os.SameFile(st1, st2) {
		t.Error("a Reconcile with nothing to repair rewrote the file")
	}

	// The file deleted: it comes back with the block alone.
	os.Remove(path)
	c.set(t0)
	want[0].Timeout = time.Hour
	reconcile(t, b, want, 3, 0)
	if got := read(t, path); got != strings.TrimPrefix(applied, head+tail) {
		t.Errorf("recreated file:\n%q\nwant\n%q", got, strings.TrimPrefix(applied, head+tail))
	}

	// A ban about to expire is not put back; an empty journal empties the block.
	handDelete(t, path, want[0].Prefix)
	reconcile(t, b, []respond.Ban{ban("192.0.2.1/32", time.Second), want[1], want[2]}, 0, 0)
	reconcile(t, b, nil, 0, 2)
	if got := read(t, path); got != "" {
		t.Errorf("file after reconciling with no bans: %q", got)
	}
}

func TestReconcileKeepsForeign(t *testing.T) {
	orig := head + BeginMarker + "\nsshd: 10.0.0.1 # someone's edit\nALL: 192.0.2.1\n" + EndMarker + "\n" + tail
	b, path, _ := newBackend(t, orig)
	reconcile(t, b, []respond.Ban{ban("192.0.2.1/32", 0)}, 0, 0)
	reconcile(t, b, nil, 0, 1)
	want := head + BeginMarker + "\nsshd: 10.0.0.1 # someone's edit\n" + EndMarker + "\n" + tail
	if diff := cmp.Diff(want, read(t, path)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := b.Reconcile([]respond.Ban{{Prefix: netip.MustParsePrefix("::/0")}, ban("192.0.2.3/32", 0)}); err == nil {
		t.Error("Reconcile accepted ::/0")
	}
	if !strings.Contains(read(t, path), "ALL: 192.0.2.3\n") {
		t.Error("the good ban beside a bad one was not restored")
	}
}

// TestInstances: two daemons on one file keep a block each, and neither's Revoke or
// Reconcile touches the other's rules, even for a host both banned.
func TestInstances(t *testing.T) {
	def, path, c := newBackend(t, head)
	udp, err := New(Options{Path: path, Now: c.Now, Instance: "udp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := udp.Setup(); err != nil {
		t.Fatal(err)
	}
	if err := def.Apply([]respond.Ban{ban("192.0.2.1/32", 0), ban("192.0.2.2/32", 0)}); err != nil {
		t.Fatal(err)
	}
	if err := udp.Apply([]respond.Ban{ban("192.0.2.2/32", 0), ban("192.0.2.3/32", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	udpBlock := "# BEGIN portsentry udp (managed: do not edit between these lines)\n" +
		"ALL: 192.0.2.2\n# until 2026-11-24T18:00:00Z\nALL: 192.0.2.3\n# END portsentry udp\n"
	want := head + BeginMarker + "\nALL: 192.0.2.1\nALL: 192.0.2.2\n" + EndMarker + "\n" + udpBlock
	if diff := cmp.Diff(want, read(t, path)); diff != "" {
		t.Fatalf("two blocks (-want +got):\n%s", diff)
	}
	if err := def.Revoke(pfx("192.0.2.2/32", "192.0.2.3/32")); err != nil {
		t.Fatal(err)
	}
	reconcile(t, def, nil, 0, 1)
	if diff := cmp.Diff(head+udpBlock, read(t, path)); diff != "" {
		t.Errorf("the default instance touched udp's block (-want +got):\n%s", diff)
	}
	reconcile(t, udp, []respond.Ban{ban("192.0.2.2/32", 0), ban("192.0.2.3/32", time.Hour)}, 0, 0)
	if err := def.Apply([]respond.Ban{ban("192.0.2.9/32", 0)}); err != nil {
		t.Fatal(err)
	}
	reconcile(t, udp, nil, 0, 2)
	if diff := cmp.Diff(head+BeginMarker+"\nALL: 192.0.2.9\n"+EndMarker+"\n", read(t, path)); diff != "" {
		t.Errorf("udp touched the default block (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"a b", "x\n", strings.Repeat("a", respond.MaxInstance+1)} {
		if _, err := New(Options{Path: path, Instance: bad}, nil); err == nil {
			t.Errorf("New accepted instance %q", bad)
		}
	}
}

// TestReconcileModel drives random bans, revocations and hand edits of the file and
// checks that Reconcile reports exactly the model's differences and leaves the block
// holding the journal's bans, and everything around it as it was.
func TestReconcileModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		path := filepath.Join(t.TempDir(), "hosts.deny")
		write(rt, path, head)
		b, err := New(Options{Path: path, Now: func() time.Time { return t0 }, Instance: rapid.SampledFrom([]string{"", "udp"}).Draw(rt, "instance")}, nil)
		if err != nil {
			rt.Fatal(err)
		}
		journal := map[netip.Prefix]bool{} // what the daemon banned
		held := map[netip.Prefix]bool{}    // what the file holds
		prefix := rapid.Custom(func(rt *rapid.T) netip.Prefix {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, rapid.ByteRange(1, 8).Draw(rt, "host")}), 32)
		})
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			p := prefix.Draw(rt, "prefix")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0:
				if err := b.Apply([]respond.Ban{{Prefix: p}}); err != nil {
					rt.Fatal(err)
				}
				journal[p], held[p] = true, true
			case 1:
				if err := b.Revoke([]netip.Prefix{p}); err != nil {
					rt.Fatal(err)
				}
				delete(journal, p)
				delete(held, p)
			case 2:
				if held[p] {
					handDelete(rt, path, p)
					delete(held, p)
				}
			case 3:
				if !held[p] && len(held) > 0 {
					handAdd(rt, path, b.end, p)
					held[p] = true
				}
			case 4:
				var want []respond.Ban
				var restored, removed int
				for q := range journal {
					want = append(want, respond.Ban{Prefix: q})
					if !held[q] {
						restored++
					}
				}
				for q := range held {
					if !journal[q] {
						removed++
					}
				}
				reconcile(rt, b, want, restored, removed)
				held = maps.Clone(journal)
				reconcile(rt, b, want, 0, 0)
			}
		}
		list, err := b.List()
		if err != nil {
			rt.Fatal(err)
		}
		got := map[netip.Prefix]bool{}
		for _, e := range list {
			got[e.Prefix] = true
		}
		if diff := cmp.Diff(held, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			rt.Fatalf("file holds (-model +file):\n%s", diff)
		}
		if s := read(rt, path); !strings.HasPrefix(s, head) {
			rt.Fatalf("text before the block changed: %q", s)
		}
	})
}

// BenchmarkReconcile is one Reconcile with nothing to repair, 500 IPv4 and 500 IPv6
// bans held.
func BenchmarkReconcile(bm *testing.B) {
	path := filepath.Join(bm.TempDir(), "hosts.deny")
	write(bm, path, head)
	b, err := New(Options{Path: path}, nil)
	if err != nil {
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

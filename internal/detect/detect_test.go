package detect

import (
	"net/netip"
	"testing"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
	"pgregory.net/rapid"
)

func hit(src string, mode probe.Mode) probe.Probe {
	return probe.Probe{Src: netip.AddrPortFrom(netip.MustParseAddr(src), 40000), Mode: mode, Proto: mode.Proto(), Spoofable: true}
}

// observe judges p as the daemon does: an allowed source, marked when acted on.
func (d *Detector) observe(p probe.Probe) Decision {
	v := d.Judge(&p, safety.Allowed)
	if v.Action == Respond {
		d.Mark(p.Mode, p.Src.Addr())
	}
	return v
}

func TestTriggerZeroAndOneFireOnFirstHit(t *testing.T) {
	for _, trig := range []int{0, 1} {
		d := New(trig, 0, 0)
		if v := d.observe(hit("198.18.0.2", probe.ModeTCP)); v.Action != Respond {
			t.Errorf("trigger %d: first hit gave %v", trig, v.Action)
		}
		if v := d.observe(hit("198.18.0.2", probe.ModeTCP)); v.Action != AlreadyBlocked {
			t.Errorf("trigger %d: second hit gave %v", trig, v.Action)
		}
	}
}

func TestTriggerCountsPerHost(t *testing.T) {
	d := New(3, 0, 0)
	want := []Action{Counted, Counted, Respond, AlreadyBlocked}
	for i, w := range want {
		if v := d.observe(hit("198.18.0.2", probe.ModeTCP)); v.Action != w || int(v.Hits) != i+1 {
			t.Fatalf("hit %d: %v/%d, want %v/%d", i+1, v.Action, v.Hits, w, i+1)
		}
		// Another host's hits never advance this one's count.
		if v := d.observe(hit("198.18.0.3", probe.ModeTCP)); int(v.Hits) != i+1 {
			t.Fatalf("other host hit %d: hits %d", i+1, v.Hits)
		}
	}
}

func TestExactAddressNotSubstring(t *testing.T) {
	// Classic matched blocked hosts by substring: 1.2.3.4 looked blocked once 21.2.3.4 was.
	d := New(0, 0, 0)
	d.observe(hit("21.2.3.4", probe.ModeTCP))
	if v := d.observe(hit("1.2.3.4", probe.ModeTCP)); v.Action != Respond {
		t.Fatalf("1.2.3.4 after 21.2.3.4: %v", v.Action)
	}
}

func TestBlockedIsPerModeAndForgettable(t *testing.T) {
	d := New(0, 0, 0)
	d.observe(hit("2001:db8::2", probe.ModeTCP))
	if v := d.observe(hit("2001:db8::2", probe.ModeUDP)); v.Action != Respond {
		t.Fatalf("udp after tcp: %v", v.Action)
	}
	d.Forget(probe.ModeTCP, netip.MustParseAddr("2001:db8::2"))
	if v := d.observe(hit("2001:db8::2", probe.ModeTCP)); v.Action != Respond {
		t.Fatalf("after Forget: %v", v.Action)
	}
}

func TestIgnoredIsSilentAndUncounted(t *testing.T) {
	d := New(2, 0, 0)
	for i := 0; i < 5; i++ {
		p := hit("198.18.0.9", probe.ModeTCP)
		if v := d.Judge(&p, safety.Protected); v.Action != Ignored {
			t.Fatalf("ignored host gave %v", v.Action)
		}
	}
	if d.Tracked() != 0 {
		t.Fatalf("ignored hits were counted")
	}
}

// TestTableIsBoundedAndMatchesModel drives the detector with random hits from a small
// address pool and compares every verdict with a model that has unbounded memory, as long
// as the table never overflows; when it can overflow, it checks the bound instead.
func TestTableIsBoundedAndMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		trigger := rapid.IntRange(0, 5).Draw(t, "trigger")
		size := rapid.IntRange(1, 8).Draw(t, "size")
		pool := rapid.IntRange(1, 12).Draw(t, "pool")
		d := New(trigger, size, 0)
		counts := map[netip.Addr]int{}
		blocked := map[probe.Mode]map[netip.Addr]bool{}
		modes := []probe.Mode{probe.ModeTCP, probe.ModeUDP}
		for _, step := range rapid.SliceOfN(rapid.IntRange(0, 2*pool-1), 1, 200).Draw(t, "steps") {
			a := netip.AddrFrom4([4]byte{198, 18, 0, byte(step % pool)})
			mode := modes[step/pool]
			v := d.observe(probe.Probe{Src: netip.AddrPortFrom(a, 1), Mode: mode})
			if capacity := len(d.hits.slots); d.Tracked() > capacity {
				t.Fatalf("table holds %d > %d", d.Tracked(), capacity)
			}
			if pool > len(d.hits.slots) || onceCollide(d.hits, pool) {
				continue // evictions make counts restart; only the bound is checked
			}
			counts[a]++
			want := Counted
			if trigger <= 1 || counts[a] >= trigger {
				want = Respond
				if blocked[mode][a] {
					want = AlreadyBlocked
					if v.Action == Repeated {
						want = Repeated // the probes share one time: said once
					}
				}
				if blocked[mode] == nil {
					blocked[mode] = map[netip.Addr]bool{}
				}
				blocked[mode][a] = true
			}
			if v.Action != want {
				t.Fatalf("%v %v: got %v want %v (count %d)", a, mode, v.Action, want, counts[a])
			}
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	d := New(3, DefaultTableSize, 0)
	probes := make([]probe.Probe, 1024)
	for i := range probes {
		probes[i] = probe.Probe{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 1), Mode: probe.ModeSTCP}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.observe(probes[i%len(probes)])
	}
}

func TestBlockedMemoryIsBounded(t *testing.T) {
	d := New(0, 0, 0)
	d.memory = 100
	for i := 0; i < 10000; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if v := d.observe(probe.Probe{Src: netip.AddrPortFrom(src, 1), Mode: probe.ModeSTCP}); v.Action != Respond {
			t.Fatalf("new source %v: %v", src, v.Action)
		}
	}
	if n := d.Remembered(probe.ModeSTCP); n != 100 {
		t.Fatalf("remembers %d hosts, bound is 100", n)
	}
	// The most recent hosts are the ones remembered.
	last := netip.AddrFrom4([4]byte{198, 18, 39, 15}) // i = 9999
	if !d.Blocked(probe.ModeSTCP, last) {
		t.Fatal("latest host forgotten")
	}
}

// TestJudgeMarksNothing: Judge leaves the marking to its caller, so a host whose
// response the caller refused is still new to the mode next time.
func TestJudgeMarksNothing(t *testing.T) {
	d := New(0, 0, 0)
	p := hit("198.18.0.2", probe.ModeSTCP)
	for range 2 {
		if v := d.Judge(&p, safety.Allowed); v.Action != Respond {
			t.Fatalf("unmarked host: %v, want respond", v.Action)
		}
	}
	if n := d.Remembered(probe.ModeSTCP); n != 0 {
		t.Fatalf("Judge remembered %d hosts by itself", n)
	}
	d.Mark(p.Mode, p.Src.Addr())
	if v := d.Judge(&p, safety.Allowed); v.Action != AlreadyBlocked {
		t.Fatalf("marked host: %v, want already-blocked", v.Action)
	}
}

// onceCollide reports whether two of the pool's addresses share a slot of the table's
// first tier, where one would make the other's count restart (as an eviction does).
func onceCollide(t *hostTable, pool int) bool {
	seen := map[*uint32]bool{}
	for i := range pool {
		k := netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}).As16()
		s, _ := t.onceAt(t.hash(&k))
		if seen[s] {
			return true
		}
		seen[s] = true
	}
	return false
}

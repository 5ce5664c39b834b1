package detect

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
)

var (
	t0     = time.Unix(1795539421, 0)
	target = netip.MustParseAddrPort("192.0.2.10:31337")
)

// spoofed is the i-th source of a random-source flood.
func spoofed(i int, at time.Time) probe.Probe {
	return probe.Probe{Src: netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 40000),
		Dst: target, Mode: probe.ModeSTCP, Proto: probe.TCP, Spoofable: true, Time: at}
}

// TestDecisions: each row is a situation and what the decision must be.
func TestDecisions(t *testing.T) {
	scanner := func(port uint16, at time.Time) probe.Probe {
		return probe.Probe{Src: netip.MustParseAddrPort("203.0.113.7:40000"), Dst: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), port),
			Mode: probe.ModeSTCP, Proto: probe.TCP, Spoofable: true, Time: at}
	}
	connect := func(at time.Time) probe.Probe {
		p := scanner(143, at)
		p.Mode, p.Spoofable = probe.ModeTCP, false
		return p
	}
	tests := []struct {
		name    string
		trigger int
		flood   int // one-off spoofed probes first, spending the single-probe budget
		class   safety.Class
		probes  []probe.Probe
		want    []Action
		rank    Rank // of the last verdict
	}{
		{"protected source", 0, 0, safety.Protected, []probe.Probe{scanner(1, t0)}, []Action{Ignored}, Single},
		{"impossible source", 0, 0, safety.Impossible, []probe.Probe{scanner(1, t0)}, []Action{Impossible}, Single},
		{"first probe, no flood", 0, 0, safety.Allowed, []probe.Probe{scanner(1, t0)}, []Action{Respond}, Single},
		{"first probe under a flood", 0, 60, safety.Allowed, []probe.Probe{scanner(1, t0)}, []Action{Suppressed}, Single},
		{"second probe under a flood ranks higher", 0, 60, safety.Allowed,
			[]probe.Probe{scanner(1, t0), scanner(2, t0.Add(time.Millisecond))}, []Action{Suppressed, Respond}, Repeat},
		{"same port again also ranks higher", 0, 60, safety.Allowed,
			[]probe.Probe{scanner(1, t0), scanner(1, t0.Add(time.Millisecond))}, []Action{Suppressed, Respond}, Repeat},
		{"a handshake under a flood", 0, 60, safety.Allowed, []probe.Probe{connect(t0)}, []Action{Respond}, Handshake},
		{"trigger 3 counts first", 3, 0, safety.Allowed,
			[]probe.Probe{scanner(1, t0), scanner(2, t0), scanner(3, t0)}, []Action{Counted, Counted, Respond}, Repeat},
		{"trigger 3, same port three times", 3, 0, safety.Allowed,
			[]probe.Probe{scanner(1, t0), scanner(1, t0), scanner(1, t0)}, []Action{Counted, Counted, Respond}, Single},
		{"already blocked: said a few times, then counted, then said again", 0, 0, safety.Allowed,
			[]probe.Probe{scanner(1, t0), scanner(2, t0), scanner(3, t0), scanner(4, t0), scanner(5, t0), scanner(6, t0),
				scanner(7, t0.Add(time.Second)), scanner(8, t0.Add(11*time.Second))},
			[]Action{Respond, AlreadyBlocked, AlreadyBlocked, AlreadyBlocked, AlreadyBlocked, AlreadyBlocked, Repeated, AlreadyBlocked}, Single},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(tt.trigger, 0, 60)
			for i := range tt.flood {
				d.observe(spoofed(i, t0))
			}
			var v Decision
			for i, p := range tt.probes {
				v = d.Judge(&p, tt.class)
				if v.Action == Respond {
					d.Mark(p.Mode, p.Src.Addr())
				}
				if v.Action != tt.want[i] {
					t.Fatalf("probe %d: %v, want %v", i+1, v.Action, tt.want[i])
				}
			}
			if v.Action == Respond && v.Rank != tt.rank {
				t.Fatalf("rank %v, want %v", v.Rank, tt.rank)
			}
		})
	}
}

// TestRepeatsAreReported: the hits counted between two "already blocked" lines are
// reported with the second.
func TestRepeatsAreReported(t *testing.T) {
	d := New(0, 0, 0)
	p := spoofed(1, t0)
	d.observe(p)
	for range RepeatLines {
		d.observe(p) // said
	}
	for i := range 5 {
		p.Time = t0.Add(time.Duration(i+1) * time.Second)
		if v := d.observe(p); v.Action != Repeated {
			t.Fatalf("repeat %d: %v", i, v.Action)
		}
	}
	p.Time = t0.Add(RepeatEvery + time.Second)
	if v := d.observe(p); v.Action != AlreadyBlocked || v.Repeats != 5 {
		t.Fatalf("after the window: %v with %d repeats, want already-blocked with 5", v.Action, v.Repeats)
	}
	// An undelivered line is counted and tried again on the next hit.
	p.Time = p.Time.Add(RepeatEvery)
	v := d.observe(p)
	if v.Action != AlreadyBlocked {
		t.Fatalf("new window: %v", v.Action)
	}
	d.Unsay(p.Mode, p.Src.Addr(), v)
	p.Time = p.Time.Add(time.Millisecond)
	if v := d.observe(p); v.Action != AlreadyBlocked || v.Repeats != 1 {
		t.Fatalf("after an undelivered line: %v with %d repeats", v.Action, v.Repeats)
	}
}

// TestFloodCannotEvictAReturningSource: with SCAN_TRIGGER 3, a scanner seen twice keeps
// its count through a flood of one-off sources many times the table's size, so its
// third probe fires.
func TestFloodCannotEvictAReturningSource(t *testing.T) {
	d := New(3, 1024, 0)
	real := spoofed(1<<23, t0)
	real.Src = netip.MustParseAddrPort("203.0.113.7:40000")
	d.observe(real)
	d.observe(real)
	for i := range 100 * 1024 {
		d.observe(spoofed(i, t0))
	}
	if v := d.observe(real); v.Action != Respond || v.Hits != 3 {
		t.Fatalf("scanner after the flood: %v, hits %d", v.Action, v.Hits)
	}
	if n := d.Tracked(); n > len(d.hits.slots) {
		t.Fatalf("table holds %d of %d", n, len(d.hits.slots))
	}
}

// TestBudgetsAreSeparate: a spent single-probe budget leaves the others whole.
func TestBudgetsAreSeparate(t *testing.T) {
	d := New(0, 0, 10)
	responded := map[Rank]int{}
	for i := range 1000 {
		if v := d.observe(spoofed(i, t0)); v.Action == Respond {
			responded[v.Rank]++
		}
	}
	for i := range 1000 { // each refused source comes back once
		if v := d.observe(spoofed(i, t0)); v.Action == Respond {
			responded[v.Rank]++
		}
	}
	if fmt.Sprint(responded) != "map[single:10 repeat:10]" {
		t.Fatalf("responses by rank %v, want 10 single and 10 repeat", responded)
	}
}

func BenchmarkJudgeFlood(b *testing.B) {
	for _, trigger := range []int{0, 3} {
		b.Run(fmt.Sprintf("trigger%d", trigger), func(b *testing.B) {
			d := New(trigger, DefaultTableSize, 60)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := spoofed(i, t0.Add(time.Duration(i)*5*time.Microsecond))
				d.Judge(&p, safety.Allowed)
			}
		})
	}
}

// TestPlans: how a Respond verdict is carried out, by configuration and evidence.
func TestPlans(t *testing.T) {
	tests := []struct {
		resp      Response
		proto     probe.Proto
		spoofable bool
		want      Plan
	}{
		{Response{}, probe.TCP, true, PlanLogOnly},
		{Response{BlockTCP: 1}, probe.TCP, true, PlanCommandsThenBan},
		{Response{BlockTCP: 1, Native: true}, probe.TCP, true, PlanBanThenCommands},
		{Response{BlockTCP: 1, Native: true}, probe.UDP, true, PlanLogOnly}, // BLOCK_UDP 0
		{Response{BlockUDP: 2, Native: true}, probe.UDP, true, PlanRunCmd},
		{Response{BlockTCP: 1, Native: true, UnspoofableOnly: true}, probe.TCP, true, PlanNotSpoofable},
		{Response{BlockTCP: 1, Native: true, UnspoofableOnly: true}, probe.TCP, false, PlanBanThenCommands},
		{Response{UnspoofableOnly: true}, probe.TCP, true, PlanNotSpoofable},
	}
	for i, tt := range tests {
		d := New(0, 0, 0)
		d.SetResponse(tt.resp)
		p := spoofed(i, t0)
		p.Proto, p.Spoofable = tt.proto, tt.spoofable
		if v := d.Judge(&p, safety.Allowed); v.Action != Respond || v.Plan != tt.want {
			t.Errorf("%+v %v spoofable=%v: %v plan %d, want plan %d", tt.resp, tt.proto, tt.spoofable, v.Action, v.Plan, tt.want)
		}
	}
}

// TestActedHostsAreNeverMissed: the counters' filter lets the decision skip the
// acted-on sets for sources it has never seen; a host the detector has acted on must
// never look like such a source, through floods, evictions and filter rebuilds.
func TestActedHostsAreNeverMissed(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := New(0, rapid.IntRange(8, 64).Draw(t, "size"), 0)
		acted := map[netip.Addr]bool{}
		n := 0
		for _, op := range rapid.SliceOfN(rapid.IntRange(0, 99), 1, 60).Draw(t, "ops") {
			switch {
			case op < 10: // act on a new host
				a := netip.AddrFrom4([4]byte{203, 0, byte(op), byte(n)})
				n++
				d.Mark(probe.ModeSTCP, a)
				acted[a] = true
			case op < 60: // a burst of sources, each seen twice: each enters the table
				// (and sets a filter bit), so bursts evict and force filter rebuilds
				for i := range 1200 {
					p := spoofed(n*600+i/2, t0)
					d.Judge(&p, safety.Allowed)
				}
				n++
			default: // an acted-on host probes again
				for a := range acted {
					p := spoofed(0, t0.Add(time.Duration(op)*time.Hour)) // a fresh repeat window
					p.Src = netip.AddrPortFrom(a, 1)
					if v := d.Judge(&p, safety.Allowed); v.Action != AlreadyBlocked && v.Action != Repeated {
						t.Fatalf("acted-on %s judged %v", a, v.Action)
					}
					break
				}
			}
		}
	})
}

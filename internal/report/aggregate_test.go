package report

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin for the DST test, whatever the machine has

	"pgregory.net/rapid"
)

// TestTopHostsExactUnderCapacity: while the hosts fit, counts are exact and the order
// is by count, then address.
func TestTopHostsExactUnderCapacity(t *testing.T) {
	th := newTopHosts(10)
	for i, k := range []string{"b", "a", "c", "a", "b", "a", "d"} {
		th.add([]byte(k), []byte("n"+k), int64(100+i), protoTCP)
	}
	if !th.exact() {
		t.Fatal("not exact under capacity")
	}
	var got []string
	for _, e := range th.top(10) {
		got = append(got, fmt.Sprintf("%s=%d[%d,%d]", e.key, e.count, e.first, e.last))
	}
	want := "[a=3[101,105] b=2[100,104] c=1[102,102] d=1[106,106]]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

// TestTopHostsGuarantees checks Space-Saving's guarantees on random streams: every
// kept count bounds the truth from above within its error, every host whose true
// count exceeds lines/capacity is kept, and the table never outgrows its capacity.
func TestTopHostsGuarantees(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		capacity := rapid.IntRange(1, 20).Draw(t, "capacity")
		keys := rapid.IntRange(1, 60).Draw(t, "keys")
		n := rapid.IntRange(0, 600).Draw(t, "lines")
		th := newTopHosts(capacity)
		truth := map[string]uint64{}
		for i := 0; i < n; i++ {
			// Skewed: low keys are far more frequent.
			k := strconv.Itoa(rapid.IntRange(0, keys-1).Draw(t, "k") % (1 + rapid.IntRange(0, keys-1).Draw(t, "m")))
			truth[k]++
			th.add([]byte(k), []byte(k), int64(i), protoUDP)
			if th.size() > capacity || len(th.m) != th.size() {
				t.Fatalf("table size %d/%d over capacity %d", th.size(), len(th.m), capacity)
			}
		}
		kept := map[string]bool{}
		var sum uint64
		for _, e := range th.top(capacity) {
			kept[e.key] = true
			sum += e.count
			if tr := truth[e.key]; e.count < tr || e.count-e.err > tr {
				t.Fatalf("%s: count %d err %d, true %d", e.key, e.count, e.err, tr)
			}
			if e.tcp+e.udp != e.count-e.err {
				t.Fatalf("%s: per-protocol counts %d+%d != %d-%d", e.key, e.tcp, e.udp, e.count, e.err)
			}
		}
		if sum != uint64(n) {
			t.Fatalf("counts sum to %d, want %d lines", sum, n)
		}
		for k, c := range truth {
			if c > uint64(n/capacity) && !kept[k] {
				t.Fatalf("%s (%d of %d lines) missing with capacity %d", k, c, n, capacity)
			}
		}
		if th.exact() != (len(truth) <= capacity) {
			t.Fatalf("exact()=%v with %d hosts, capacity %d", th.exact(), len(truth), capacity)
		}
	})
}

func TestHyperLogLogAccuracy(t *testing.T) {
	for _, n := range []int{0, 1, 10, 1000, 20000, 300000} {
		var h hyperLogLog
		for i := 0; i < n; i++ {
			h.add([]byte(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)))
			if i%3 == 0 { // duplicates do not count
				h.add([]byte(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)))
			}
		}
		got := float64(h.estimate())
		// 4 standard errors (0.81% each), and exact-ish for tiny sets.
		if tol := math.Max(0.033*float64(n), 1); math.Abs(got-float64(n)) > tol {
			t.Errorf("%d distinct: estimate %v", n, got)
		}
	}
}

func TestTimelineHoursDaysAndBound(t *testing.T) {
	loc := time.FixedZone("EET", 2*3600)
	at := func(s string) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm.Unix()
	}
	tl := newTimeline(loc, 100)
	for _, s := range []string{"2026-11-22 08:14", "2026-11-22 08:59", "2026-11-22 11:00", "2026-11-22 10:30"} {
		tl.add(at(s))
	}
	b := tl.buckets(tl.level)
	if tl.level != levelHour || len(b) != 4 {
		t.Fatalf("level %d, %d buckets, want hours 08..11", tl.level, len(b))
	}
	wantN := []uint64{2, 0, 1, 1}
	for i, bk := range b {
		if bk.Probes != wantN[i] || bk.Start != at("2026-11-22 08:00")+int64(i)*3600 || bk.End != bk.Start+3600 {
			t.Errorf("bucket %d = %+v", i, bk)
		}
	}
	// 5 days later: over 100 hours, so days.
	tl.add(at("2026-11-27 23:59"))
	b = tl.buckets(tl.level)
	if tl.level != levelDay || len(b) != 6 || b[0].Probes != 4 || b[5].Probes != 1 || b[0].Start != at("2026-11-22 00:00") {
		t.Fatalf("level %d, buckets %+v", tl.level, b)
	}
	// Years: weeks and more, never over 100 buckets.
	for y := 2027; y < 2040; y++ {
		tl.add(at(fmt.Sprintf("%d-06-01 12:00", y)))
		if tl.hi-tl.lo >= 100 || len(tl.counts) > 100 {
			t.Fatalf("%d: %d buckets spanned, %d kept", y, tl.hi-tl.lo+1, len(tl.counts))
		}
	}
	var total uint64
	b = tl.buckets(tl.level)
	for i, bk := range b {
		total += bk.Probes
		if i > 0 && bk.Start != b[i-1].End {
			t.Fatalf("gap between buckets %d and %d", i-1, i)
		}
	}
	if total != 18 || len(b) > 100 || tl.level <= levelWeek {
		t.Errorf("total %d, %d buckets, level %d (%s)", total, len(b), tl.level, unitName(tl.level))
	}
	if w := time.Unix(b[0].Start, 0).In(loc); w.Weekday() != time.Monday || w.Hour() != 0 {
		t.Errorf("multi-week buckets start %s, want a Monday midnight", w)
	}
}

// TestTimelineDST: day buckets follow the wall clock across a DST change (a 23-hour
// day), hours stay one hour wide.
func TestTimelineDST(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	tl := newTimeline(loc, 1000)
	// 2026-03-29 02:00 CET jumps to 03:00 CEST.
	for _, s := range []string{"2026-03-28T23:30:00+01:00", "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T00:10:00+02:00"} {
		tm, _ := time.Parse(time.RFC3339, s)
		tl.add(tm.Unix())
	}
	days := tl.buckets(levelDay)
	if len(days) != 3 || days[1].End-days[1].Start != 23*3600 || days[1].Probes != 2 {
		t.Errorf("days %+v", days)
	}
	hours := tl.buckets(levelHour)
	var n uint64
	for _, h := range hours {
		n += h.Probes
		if h.End-h.Start != 3600 && h.End != h.Start { // the skipped hour is empty
			t.Errorf("hour bucket %+v", h)
		}
	}
	if n != 4 {
		t.Errorf("hours hold %d probes", n)
	}
}

func TestNiceScale(t *testing.T) {
	for _, c := range []struct{ top, step, max uint64 }{
		{0, 1, 1}, {1, 1, 1}, {3, 1, 3}, {12, 5, 15}, {36, 10, 40}, {99, 50, 100}, {1000, 500, 1000},
	} {
		step, yMax := niceScale(c.top)
		if step != c.step || yMax != c.max {
			t.Errorf("niceScale(%d) = %d, %d; want %d, %d", c.top, step, yMax, c.step, c.max)
		}
	}
}

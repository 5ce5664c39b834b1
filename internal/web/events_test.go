package web

import (
	"sync"
	"testing"
	"time"
)

func ids(evs []Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func equalIDs(got []Event, from, to uint64) bool {
	if uint64(len(got)) != to-from+1 && !(from > to && len(got) == 0) {
		return false
	}
	for i, e := range got {
		if e.ID != from+uint64(i) {
			return false
		}
	}
	return true
}

func TestEventsRing(t *testing.T) {
	e := NewEvents(5)
	if e.Cap() != 5 || e.Last() != 0 {
		t.Fatalf("new ring: cap %d last %d", e.Cap(), e.Last())
	}
	if got := e.Since(0, 0); got == nil || len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	fixed := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		ev := Event{Kind: KindDetection, Addr: "192.0.2.1", Text: "x"}
		if i == 2 {
			ev.Time = fixed
			ev.ID = 99 // ignored: Add numbers events itself
		}
		if id := e.Add(ev); id != uint64(i) {
			t.Fatalf("Add #%d returned ID %d", i, id)
		}
	}
	all := e.Since(0, 0)
	if !equalIDs(all, 1, 3) {
		t.Fatalf("Since(0) = %v", ids(all))
	}
	if !all[1].Time.Equal(fixed) || all[0].Time.IsZero() || all[2].Time.IsZero() {
		t.Errorf("times: %v", all)
	}
	if got := e.Since(1, 0); !equalIDs(got, 2, 3) {
		t.Errorf("Since(1) = %v", ids(got))
	}
	if got := e.Since(3, 0); len(got) != 0 {
		t.Errorf("Since(last) = %v", ids(got))
	}
	if got := e.Since(100, 0); len(got) != 0 {
		t.Errorf("Since(future) = %v", ids(got))
	}
	// max keeps the newest.
	if got := e.Since(0, 2); !equalIDs(got, 2, 3) {
		t.Errorf("Since(0, 2) = %v", ids(got))
	}

	// Overflow: 12 events in a ring of 5 keep 8..12.
	for range 9 {
		e.Add(Event{Kind: KindBan, Addr: "192.0.2.2"})
	}
	if e.Last() != 12 {
		t.Fatalf("Last = %d", e.Last())
	}
	if got := e.Since(0, 0); !equalIDs(got, 8, 12) {
		t.Errorf("after overflow Since(0) = %v", ids(got))
	}
	if got := e.Since(3, 100); !equalIDs(got, 8, 12) {
		t.Errorf("Since(3, 100) = %v", ids(got))
	}
	if got := e.Since(10, 0); !equalIDs(got, 11, 12) {
		t.Errorf("Since(10) = %v", ids(got))
	}
	if got := e.Since(7, 3); !equalIDs(got, 10, 12) {
		t.Errorf("Since(7, 3) = %v", ids(got))
	}

	p := e.Page(3, 2)
	if !equalIDs(p.Events, 11, 12) || p.Last != 12 || p.Skipped != 7 || p.Reset {
		t.Errorf("Page(3, 2) = %+v", p)
	}
	p = e.Page(12, 10)
	if len(p.Events) != 0 || p.Skipped != 0 || p.Events == nil {
		t.Errorf("Page(last) = %+v", p)
	}
	p = e.Page(500, 10)
	if !p.Reset || !equalIDs(p.Events, 8, 12) || p.Skipped != 7 {
		t.Errorf("Page(beyond last) = %+v", p)
	}
}

func TestEventsDefaultSize(t *testing.T) {
	if n := NewEvents(0).Cap(); n != DefaultEvents {
		t.Errorf("NewEvents(0).Cap() = %d", n)
	}
	if n := NewEvents(-3).Cap(); n != DefaultEvents {
		t.Errorf("NewEvents(-3).Cap() = %d", n)
	}
}

func TestEventsConcurrent(t *testing.T) {
	e := NewEvents(64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				e.Add(Event{Kind: KindDetection})
			}
		})
		wg.Go(func() {
			var last uint64
			for range 1000 {
				got := e.Since(last, 10)
				for i, ev := range got {
					if ev.ID <= last || i > 0 && ev.ID != got[i-1].ID+1 {
						t.Errorf("IDs out of order: %v after %d", ids(got), last)
						return
					}
				}
				if len(got) > 0 {
					last = got[len(got)-1].ID
				}
			}
		})
	}
	wg.Wait()
	if e.Last() != 4000 {
		t.Errorf("Last = %d, want 4000", e.Last())
	}
}

func TestEventsTimeline(t *testing.T) {
	e := NewEvents(4) // smaller than the detections: the counts do not depend on the ring
	now := time.Date(2026, 11, 24, 10, 30, 20, 0, time.UTC)
	e.now = func() time.Time { return now }
	add := func(ago time.Duration, kind string) {
		e.Add(Event{Kind: kind, Time: now.Add(-ago)})
	}
	for range 3 {
		add(0, KindDetection)
	}
	add(10*time.Second, KindDetection)
	add(5*time.Second, KindBan) // not a detection
	add(2*time.Minute, KindDetection)
	add(59*time.Minute, KindDetection)
	add(61*time.Minute, KindDetection) // outside the hour
	add(-time.Minute, KindDetection)   // in the future: counted now
	tl := e.Timeline(now)
	if len(tl.Minute) != 60 {
		t.Fatalf("%d minutes", len(tl.Minute))
	}
	if want := time.Date(2026, 11, 24, 9, 31, 0, 0, time.UTC); !tl.Start.Equal(want) {
		t.Errorf("start %v, want %v", tl.Start, want)
	}
	want := map[int]uint64{59: 5, 57: 1, 0: 1}
	for i, n := range tl.Minute {
		if n != want[i] {
			t.Errorf("minute %d: %d, want %d", i, n, want[i])
		}
	}
	if tl.Total != 7 {
		t.Errorf("total %d, want 7", tl.Total)
	}
	// An hour later everything has left the window.
	if tl := e.Timeline(now.Add(2 * time.Hour)); tl.Total != 0 {
		t.Errorf("two hours later: total %d", tl.Total)
	}
}

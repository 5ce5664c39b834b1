package detect

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(60) // one a second, a minute's worth of burst
	now := time.Unix(1795539620, 0)
	allowed := 0
	for i := 0; i < 1000; i++ {
		if l.allow(now) {
			allowed++
		}
	}
	if allowed != 60 {
		t.Fatalf("burst allowed %d, want 60", allowed)
	}
	if l.allow(now.Add(500 * time.Millisecond)) {
		t.Fatal("allowed before a token was earned")
	}
	if !l.allow(now.Add(1100 * time.Millisecond)) {
		t.Fatal("refused after a token was earned")
	}
	var none *limiter
	if !none.allow(now) || newLimiter(0) != nil {
		t.Fatal("BAN_RATE 0 must mean no limit")
	}
}

// TestLimiterRate: over a long run the limiter lets through BAN_RATE a minute plus the
// first burst, from any number of goroutines, and times out of order change nothing.
func TestLimiterRate(t *testing.T) {
	l := newLimiter(600) // ten a second
	start := time.Unix(1795539620, 0)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100000 {
				// 100 s in 1 ms steps, each goroutine slightly behind or ahead.
				at := start.Add(time.Duration(i)*time.Millisecond + time.Duration(g-2)*time.Microsecond)
				if l.allow(at) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 600 in the first burst and 10 a second for 100 s, give or take the edges.
	if n := allowed.Load(); n < 1595 || n > 1605 {
		t.Fatalf("allowed %d in 100 s at 10/s after a burst of 600, want about 1600", n)
	}
}

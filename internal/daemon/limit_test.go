package daemon

import (
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

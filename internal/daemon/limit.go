package daemon

import (
	"sync"
	"time"
)

// limiter is a token bucket for new responses (BAN_RATE per minute). A bucket holds a
// minute's worth, so a real scan burst is answered at once while a flood of spoofed
// sources is held to the rate.
type limiter struct {
	mu     sync.Mutex
	perSec float64
	tokens float64
	max    float64
	last   time.Time
}

func newLimiter(perMinute int) *limiter {
	if perMinute <= 0 {
		return nil // no limit
	}
	return &limiter{perSec: float64(perMinute) / 60, tokens: float64(perMinute), max: float64(perMinute)}
}

// allow takes a token if one is left at now. A nil limiter always allows.
func (l *limiter) allow(now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.max, l.tokens+now.Sub(l.last).Seconds()*l.perSec)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

package detect

import (
	"sync/atomic"
	"time"
)

// limiter is a token bucket for new responses (BAN_RATE per minute). A bucket holds a
// minute's worth, so a real scan burst is answered at once while a flood of spoofed
// sources is held to the rate.
//
// It is kept as the generic cell rate algorithm: one timestamp, the theoretical arrival
// time tat of the next token, instead of a count and a clock. Every packet of a flood
// asks, and a refusal is then a single atomic load, with no lock to contend for.
type limiter struct {
	interval int64        // nanoseconds per token
	burst    int64        // how far tat may run ahead of now: (tokens in a full bucket - 1) * interval
	tat      atomic.Int64 // unix nanoseconds; 0: the bucket is full
}

func newLimiter(perMinute int) *limiter {
	if perMinute <= 0 {
		return nil // no limit
	}
	interval := int64(time.Minute) / int64(perMinute)
	return &limiter{interval: interval, burst: int64(perMinute-1) * interval}
}

// allow takes a token if one is left at now. A nil limiter always allows. Times may
// arrive slightly out of order (sensors stamp their own probes); an earlier time is
// judged as it is and never refills the bucket.
func (l *limiter) allow(now time.Time) bool {
	if l == nil {
		return true
	}
	t := now.UnixNano()
	for {
		tat := l.tat.Load()
		next := max(tat, t)
		if next-t > l.burst {
			return false
		}
		if l.tat.CompareAndSwap(tat, next+l.interval) {
			return true
		}
	}
}

package capture

import "time"

// Under a flood the retire timeout hands over a block every millisecond, and waking
// the reader for each would cost more than the packets in it: a context switch takes
// tens of microseconds on small virtual machines. So once Read has caught up with the
// kernel after a busy stretch, it sleeps and then reads every block retired meanwhile
// at once. The pause adapts so that about a quarter of the ring fills during it: long
// while blocks are retired by the timeout, one a millisecond, shorter when packets fill
// them faster than that, so the ring never runs full because of it. A lone probe is no busy stretch and is handed over within the retire timeout;
// under a flood a probe waits at most one pause.
//
// The pause is a time.Sleep, so the goroutine gives its P back and the Go runtime can
// let its monitor thread sleep too. A raw nanosleep that kept the P (the design until
// 2026-11-29) let the monitor wake every 10 ms and preempt the reader, each a context
// switch more: 15–21% more CPU per packet, measured with both versions on the same
// floods (docs/performance.md).
const (
	// busyPackets is the number of packets read since the last wait or pause that
	// marks a flood: 64 packets in one block retired after 1 ms is 64,000 a second.
	busyPackets = 64
	// firstPause is the first pause of a flood, before the pacer has seen a rate.
	firstPause = 8 * time.Millisecond
	// maxPauseCap bounds a pause whatever the ring size: Close waits for it.
	maxPauseCap = 128 * time.Millisecond
)

// pacer decides how long Read pauses when no block is ready. Only Read's goroutine
// uses it.
type pacer struct {
	max     time.Duration // the longest pause: a quarter of the ring at a block per timeout
	target  int           // blocks a pause should let the kernel retire: a quarter of the ring
	pause   time.Duration // the current pause; 0 outside a flood
	blocks  int           // blocks read since the last pause
	packets int           // packets read since the last wait or pause
}

func newPacer(o Options) pacer {
	tick := (o.Timeout + time.Millisecond - 1) / time.Millisecond * time.Millisecond // as the kernel rounds it
	target := o.NumBlocks / 4
	return pacer{max: min(time.Duration(target)*tick, maxPauseCap), target: target}
}

// read records a block of n packets.
func (p *pacer) read(n int) {
	p.blocks++
	p.packets += n
}

// caughtUp returns how long to pause now that no block is ready; 0 means wait for the
// kernel to retire one.
func (p *pacer) caughtUp() time.Duration {
	busy := p.packets >= busyPackets
	p.packets = 0
	if !busy || p.max <= 0 {
		p.pause, p.blocks = 0, 0
		return 0
	}
	if p.pause == 0 {
		p.pause = firstPause
	} else {
		// The blocks read since the last pause were mostly retired during it.
		p.pause = p.pause * time.Duration(p.target) / time.Duration(p.blocks)
	}
	p.pause = min(max(p.pause, time.Millisecond), p.max)
	p.blocks = 0
	return p.pause
}

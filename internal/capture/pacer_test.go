package capture

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestPacerIdleWaits(t *testing.T) {
	p := newPacer(Options{NumBlocks: DefaultNumBlocks, Timeout: DefaultTimeout})
	p.read(1) // a lone probe
	if d := p.caughtUp(); d != 0 {
		t.Fatalf("paused %v after a quiet block", d)
	}
	p.read(busyPackets)
	if d := p.caughtUp(); d != firstPause {
		t.Fatalf("first pause of a flood %v, want %v", d, firstPause)
	}
	if d := p.caughtUp(); d != 0 {
		t.Fatalf("paused again (%v) with nothing read since the last pause", d)
	}
}

// TestPacerCountsTheStretch: the blocks read after a pause count together, so a flood's
// partly filled last block does not end the pausing (one wakeup per block again).
func TestPacerCountsTheStretch(t *testing.T) {
	p := newPacer(Options{NumBlocks: DefaultNumBlocks, Timeout: DefaultTimeout})
	p.read(busyPackets)
	first := p.caughtUp()
	for range 8 {
		p.read(busyPackets / 2)
	}
	p.read(1)
	if d := p.caughtUp(); d <= 0 || d == first {
		t.Fatalf("pause %v after a stretch of small blocks (first pause %v)", d, first)
	}
}

func TestPacerSmallRingNeverPauses(t *testing.T) {
	p := newPacer(Options{NumBlocks: 3, Timeout: DefaultTimeout})
	p.read(1000)
	if d := p.caughtUp(); d != 0 {
		t.Fatalf("a 3-block ring paused %v", d)
	}
}

// TestPacerKeepsRingRoom floods a simulated ring at a steady rate: the blocks retired
// during a pause never fill the ring, and the pause settles where a quarter of it
// fills (unless held at the shortest or longest pause).
func TestPacerKeepsRingRoom(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		numBlocks := rapid.IntRange(4, 512).Draw(t, "blocks")
		p := newPacer(Options{NumBlocks: numBlocks, Timeout: DefaultTimeout})
		// Blocks the kernel retires per millisecond: one by the timeout, more when
		// packets fill them first. Up to a full ring during the first pause.
		first := min(firstPause, p.max)
		rate := rapid.Float64Range(1, float64(numBlocks)/float64(first/time.Millisecond)).Draw(t, "rate")
		var d time.Duration
		p.read(busyPackets)
		for range 20 {
			d = p.caughtUp()
			if d <= 0 || d > maxPauseCap {
				t.Fatalf("pause %v under a flood", d)
			}
			retired := max(1, int(rate*float64(d)/float64(time.Millisecond)))
			if retired > numBlocks {
				t.Fatalf("%d blocks retired during a pause of %v, ring of %d", retired, d, numBlocks)
			}
			for range retired {
				p.read(busyPackets)
			}
		}
		settled := int(rate * float64(d) / float64(time.Millisecond))
		if time.Millisecond < d && d < p.max && (settled < p.target/2 || settled > 2*p.target) {
			t.Fatalf("settled at %v, %d blocks a pause, want about %d", d, settled, p.target)
		}
	})
}

package daemon

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/web"
)

// floodMeter gathers what the response budget held back, so that a flood is reported
// while it lasts instead of line by line: a line when it starts, one at least every
// floodReport while it goes on, and one when it ends. It is updated under d.mu by the
// detection path (no allocation, no I/O) and read by the serve loop.
type floodMeter struct {
	window  floodWindow
	active  bool
	started time.Time
	total   floodWindow // since the flood started
	// begun is signalled (without blocking) when a flood starts, so the serve loop
	// says so at once rather than at its next tick.
	begun chan struct{}
}

// floodReport is how often a flood in progress is summarised.
const floodReport = 10 * time.Second

// floodWindow counts one stretch of held-back probes.
type floodWindow struct {
	probes  uint64
	sources uint64 // distinct: sources new to the hit counters
	byRank  [3]uint64
	ports   topPorts
}

func newFloodMeter() *floodMeter { return &floodMeter{begun: make(chan struct{}, 1)} }

// held records a probe the budget refused.
func (f *floodMeter) held(p *probe.Probe, v *detect.Decision) {
	w := &f.window
	w.probes++
	if v.Fresh {
		w.sources++
	}
	if int(v.Rank) < len(w.byRank) {
		w.byRank[v.Rank]++
	}
	w.ports.add(p.Proto, p.Dst.Port())
	if !f.active {
		f.active, f.started = true, p.Time
		select {
		case f.begun <- struct{}{}:
		default:
		}
	}
}

// take returns the window so far and starts a new one; ended is set when a flood was
// on and the window is empty (it is then over).
func (f *floodMeter) take() (w, total floodWindow, started time.Time, ended bool) {
	w, f.window = f.window, floodWindow{}
	if !f.active {
		return w, floodWindow{}, time.Time{}, false
	}
	f.total.merge(&w)
	total, started = f.total, f.started
	if w.probes == 0 {
		f.active, f.total = false, floodWindow{}
		return w, total, started, true
	}
	return w, total, started, false
}

func (w *floodWindow) merge(o *floodWindow) {
	w.probes += o.probes
	w.sources += o.sources
	for i := range w.byRank {
		w.byRank[i] += o.byRank[i]
	}
	for _, e := range o.ports.e {
		if e.n > 0 {
			w.ports.addN(e.key, e.n)
		}
	}
}

// describe renders a window for the log.
func (w *floodWindow) describe() string {
	return fmt.Sprintf("%d probes from %d new sources held back (single probes %d, repeated %d, handshakes %d); top ports %s",
		w.probes, w.sources, w.byRank[detect.Single], w.byRank[detect.Repeat], w.byRank[detect.Handshake], w.ports.String())
}

// topPorts keeps the most frequent ports of a stream in a few counters (the
// Misra-Gries summary): a port holding more than a fifth of the stream is always
// among them, with a count at most that much too low.
type topPorts struct {
	e [4]struct {
		key uint32 // proto<<16 | port
		n   uint64
	}
}

func (t *topPorts) add(proto probe.Proto, port uint16) { t.addN(uint32(proto)<<16|uint32(port), 1) }

func (t *topPorts) addN(key uint32, n uint64) {
	free := -1
	for i := range t.e {
		if t.e[i].n > 0 && t.e[i].key == key {
			t.e[i].n += n
			return
		}
		if t.e[i].n == 0 && free < 0 {
			free = i
		}
	}
	if free >= 0 {
		t.e[free].key, t.e[free].n = key, n
		return
	}
	least := t.e[0].n
	for i := range t.e {
		least = min(least, t.e[i].n)
	}
	least = min(least, n)
	for i := range t.e {
		t.e[i].n -= least
	}
	if n > least {
		t.addN(key, n-least)
	}
}

// String lists the ports, most frequent first: "TCP 22 (1201), UDP 53 (30)".
func (t *topPorts) String() string {
	es := slices.Clone(t.e[:])
	slices.SortFunc(es, func(a, b struct {
		key uint32
		n   uint64
	}) int {
		return cmp.Compare(b.n, a.n)
	})
	var parts []string
	for _, e := range es {
		if e.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%d)", probe.Proto(e.key>>16), uint16(e.key), e.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// reportFlood logs and publishes the flood's state: at its start (begun), every
// floodReport while it lasts, and at its end.
func (d *Daemon) reportFlood(starting bool) {
	d.mu.Lock()
	var w, total floodWindow
	var started time.Time
	var ended bool
	if starting {
		w, started = d.flood.window, d.flood.started // a look, not a take: the window goes on
	} else {
		w, total, started, ended = d.flood.take()
	}
	d.mu.Unlock()
	cfg := d.Config()
	var text string
	switch {
	case starting:
		text = fmt.Sprintf("attackalert: Possible spoofed flood started: %s so far; BAN_RATE %d/min per kind of evidence: "+
			"hosts seen more than once and real connections are still acted on; detection continues", w.describe(), cfg.BanRate)
	case ended:
		text = fmt.Sprintf("attackalert: Possible spoofed flood ended after %v: %s in all",
			time.Since(started).Round(time.Second), total.describe())
	case w.probes > 0:
		text = fmt.Sprintf("attackalert: Possible spoofed flood continues (for %v): %s in the last %v",
			time.Since(started).Round(time.Second), w.describe(), floodReport)
	default:
		return
	}
	d.log.Warn(text)
	d.event(web.Event{Kind: web.KindFlood, Text: text})
}

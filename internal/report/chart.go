package report

import (
	"math"
	"strconv"
	"time"
)

// chart is the geometry of the timeline's SVG, computed here so that the page needs no
// script to show it.
type chart struct {
	W, H, Left, Right, Top, Base, PlotH float64
	Bars                                []chartBar
	YTicks                              []chartTick
	XLabels                             []chartLabel
}

type chartBar struct {
	X, Y, W, H, Slot float64
	N                uint64
	Title            string
}

type chartTick struct {
	Y     float64
	Label string
}

type chartLabel struct {
	X          float64
	Label, Sub string
}

const maxXLabels = 10

func buildChart(tl Timeline, loc *time.Location) chart {
	c := chart{W: 1160, H: 250, Left: 56, Top: 12}
	c.Right = c.W - 28
	c.Base = c.H - 44
	c.PlotH = c.Base - c.Top
	n := len(tl.Buckets)
	if n == 0 {
		return c
	}
	var top uint64
	for _, b := range tl.Buckets {
		top = max(top, b.Probes)
	}
	step, yMax := niceScale(top)
	for v := uint64(0); v <= yMax; v += step {
		c.YTicks = append(c.YTicks, chartTick{Y: round2(c.Base - float64(v)/float64(yMax)*c.PlotH), Label: group(v)})
	}

	slot := (c.Right - c.Left) / float64(n)
	gap := 0.0
	if slot >= 3 {
		gap = math.Min(slot*0.22, 8)
	}
	for i, b := range tl.Buckets {
		h := float64(b.Probes) / float64(yMax) * c.PlotH
		if b.Probes > 0 {
			h = math.Max(h, 1.5) // a single probe stays visible
		}
		x := c.Left + float64(i)*slot
		c.Bars = append(c.Bars, chartBar{
			X: round2(x + gap/2), W: round2(slot - gap), Slot: round2(slot),
			Y: round2(c.Base - h), H: round2(h), N: b.Probes,
			Title: bucketTitle(b, tl.Unit, loc) + ": " + plural(int64(b.Probes), "probe"),
		})
	}
	c.XLabels = xLabels(tl, loc, c.Left, slot, c.W-30)
	return c
}

// niceScale picks a tick step of 1, 2 or 5 times a power of ten giving at most about
// four intervals, and the axis maximum (a multiple of the step, at least top).
func niceScale(top uint64) (step, yMax uint64) {
	if top == 0 {
		return 1, 1
	}
	raw := float64(top) / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 1
	for _, m := range []float64{1, 2, 5, 10} {
		if s := m * mag; s >= raw {
			step = max(uint64(math.Round(s)), 1)
			break
		}
	}
	yMax = (top + step - 1) / step * step
	return step, yMax
}

// xLabels places at most maxXLabels labels on bucket boundaries that read well: whole
// hours divisible by the stride, midnights, Mondays.
func xLabels(tl Timeline, loc *time.Location, left, slot, limit float64) []chartLabel {
	n := len(tl.Buckets)
	var strides []int
	switch tl.Unit {
	case "hour":
		strides = []int{1, 2, 3, 6, 12, 24, 48, 72, 96, 168}
	case "day":
		strides = []int{1, 2, 3, 7, 14, 28, 56, 91, 182, 364}
	default:
		strides = []int{1, 2, 4, 8, 13, 26, 52, 104, 208}
	}
	stride := strides[len(strides)-1]
	for _, s := range strides {
		if (n+s-1)/s <= maxXLabels {
			stride = s
			break
		}
	}
	at := func(i int) time.Time { return time.Unix(tl.Buckets[i].Start, 0).In(loc) }
	start := 0
	for i := 0; i < n && i < stride; i++ {
		t := at(i)
		aligned := true
		switch {
		case tl.Unit == "hour" && stride < 24:
			aligned = t.Hour()%stride == 0
		case tl.Unit == "hour":
			aligned = t.Hour() == 0
		case tl.Unit == "day" && stride >= 7 && stride%7 == 0:
			aligned = t.Weekday() == time.Monday
		}
		if aligned {
			start = i
			break
		}
	}
	var out []chartLabel
	lastDay, lastYear := "", -1
	for i := start; i < n; i += stride {
		t := at(i)
		x := round2(left + (float64(i)+0.5)*slot)
		if x > limit {
			break
		}
		l := chartLabel{X: x}
		day := t.Format("Mon 2 Jan")
		switch {
		case tl.Unit == "hour" && stride < 24:
			l.Label = t.Format("15:04")
			if day != lastDay {
				l.Sub = day
			}
		case tl.Unit == "hour":
			l.Label = day
			if t.Year() != lastYear {
				l.Sub = strconv.Itoa(t.Year())
			}
		default:
			l.Label = t.Format("2 Jan")
			if t.Year() != lastYear {
				l.Sub = strconv.Itoa(t.Year())
			}
		}
		lastDay, lastYear = day, t.Year()
		out = append(out, l)
	}
	return out
}

// bucketTitle names a bucket for its tooltip.
func bucketTitle(b Bucket, unit string, loc *time.Location) string {
	s, e := time.Unix(b.Start, 0).In(loc), time.Unix(b.End, 0).In(loc)
	switch unit {
	case "hour":
		return s.Format("Mon 2 Jan 2006, 15:04") + "–" + e.Format("15:04")
	case "day":
		return s.Format("Mon 2 Jan 2006")
	case "week":
		return "week of " + s.Format("Mon 2 Jan 2006")
	}
	return s.Format("2 Jan 2006") + " – " + e.Add(-time.Second).Format("2 Jan 2006")
}

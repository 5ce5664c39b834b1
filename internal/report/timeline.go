package report

import (
	"fmt"
	"math"
	"time"
)

// Bucket widths, finest first: an hour, a day, a week (Monday to Sunday), then
// doubling numbers of weeks. Each width divides the next, so buckets can be merged.
const (
	levelHour = 0
	levelDay  = 1
	levelWeek = 2
)

// unitOf returns the width of a level's buckets and the shift that aligns them, both in
// seconds of local clock time: key = floor((local+shift)/width).
func unitOf(level int) (width, shift int64) {
	switch level {
	case levelHour:
		return 3600, 0
	case levelDay:
		return 86400, 0
	}
	// 1970-01-01 was a Thursday: shifting by 3 days puts week starts on Mondays.
	return 7 * 86400 << (level - levelWeek), 3 * 86400
}

// unitName names a level's bucket for people ("hour", "day", "week", "2 weeks").
func unitName(level int) string {
	switch level {
	case levelHour:
		return "hour"
	case levelDay:
		return "day"
	case levelWeek:
		return "week"
	}
	return fmt.Sprintf("%d weeks", 1<<(level-levelWeek))
}

// timeline counts lines per time bucket over the span of the data, in at most
// maxBuckets buckets: when the span outgrows them at one width, the buckets are merged
// into the next width. Buckets follow the wall clock of loc.
type timeline struct {
	loc        *time.Location
	maxBuckets int64
	level      int
	counts     map[int64]uint64
	lo, hi     int64 // bucket keys spanned (lo > hi: empty)

	// The zone offset in force for epochs in [zStart, zEnd), cached.
	zStart, zEnd, zOff int64
}

func newTimeline(loc *time.Location, maxBuckets int) *timeline {
	return &timeline{loc: loc, maxBuckets: int64(max(maxBuckets, 2)), counts: map[int64]uint64{},
		lo: 1, hi: 0, zStart: 1, zEnd: 0}
}

// local returns epoch as seconds of local clock time (epoch plus the zone offset).
func (tl *timeline) local(epoch int64) int64 {
	if epoch < tl.zStart || epoch >= tl.zEnd {
		t := time.Unix(epoch, 0).In(tl.loc)
		_, off := t.Zone()
		s, e := t.ZoneBounds()
		tl.zStart, tl.zEnd, tl.zOff = math.MinInt64, math.MaxInt64, int64(off)
		if !s.IsZero() {
			tl.zStart = s.Unix()
		}
		if !e.IsZero() {
			tl.zEnd = e.Unix()
		}
	}
	return epoch + tl.zOff
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (tl *timeline) key(epoch int64) int64 {
	w, s := unitOf(tl.level)
	return floorDiv(tl.local(epoch)+s, w)
}

// add counts one line at epoch.
func (tl *timeline) add(epoch int64) {
	tl.counts[tl.extend(epoch)]++
}

// extend makes the span cover epoch without counting anything, and returns its key.
func (tl *timeline) extend(epoch int64) int64 {
	for {
		k := tl.key(epoch)
		if tl.lo > tl.hi {
			tl.lo, tl.hi = k, k
			return k
		}
		lo, hi := min(tl.lo, k), max(tl.hi, k)
		if hi-lo < tl.maxBuckets {
			tl.lo, tl.hi = lo, hi
			return k
		}
		tl.coarsen()
	}
}

// coarsen merges the buckets into those of the next level.
func (tl *timeline) coarsen() {
	from := tl.level
	tl.level++
	tl.counts = regroup(tl.counts, from, tl.level)
	tl.lo, tl.hi = convertKey(tl.lo, from, tl.level), convertKey(tl.hi, from, tl.level)
}

// convertKey maps a bucket key at level from to the key of the enclosing bucket at
// level to (to >= from).
func convertKey(k int64, from, to int) int64 {
	w, s := unitOf(from)
	w2, s2 := unitOf(to)
	return floorDiv(k*w-s+s2, w2)
}

func regroup(counts map[int64]uint64, from, to int) map[int64]uint64 {
	out := make(map[int64]uint64, len(counts))
	for k, n := range counts {
		out[convertKey(k, from, to)] += n
	}
	return out
}

// startOf returns the epoch at which the bucket with key k at level begins.
func (tl *timeline) startOf(k int64, level int) int64 {
	w, s := unitOf(level)
	wall := time.Unix(k*w-s, 0).UTC() // local clock time, read as UTC
	return time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), 0, 0, 0, tl.loc).Unix()
}

// Bucket is one bar of the timeline.
type Bucket struct {
	Start  int64  `json:"start"` // epoch seconds, inclusive
	End    int64  `json:"end"`   // epoch seconds, exclusive
	Probes uint64 `json:"probes"`
}

// buckets returns every bucket of the span at level (>= tl.level), empty ones included,
// oldest first.
func (tl *timeline) buckets(level int) []Bucket {
	if tl.lo > tl.hi {
		return nil
	}
	level = max(level, tl.level)
	lo, hi := convertKey(tl.lo, tl.level, level), convertKey(tl.hi, tl.level, level)
	counts := tl.counts
	if level != tl.level {
		counts = regroup(counts, tl.level, level)
	}
	out := make([]Bucket, 0, hi-lo+1)
	for k := lo; k <= hi; k++ {
		out = append(out, Bucket{Start: tl.startOf(k, level), End: tl.startOf(k+1, level), Probes: counts[k]})
	}
	return out
}

// displayLevel is the level the chart uses: hours while the span is at most
// maxHourBars hours (bars stay wide enough to read and hover), otherwise days or
// whatever coarser level the span forced.
func (tl *timeline) displayLevel(maxHourBars int64) int {
	if tl.level == levelHour && tl.lo <= tl.hi && tl.hi-tl.lo+1 > maxHourBars {
		return levelDay
	}
	return tl.level
}

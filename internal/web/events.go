package web

import (
	"sync"
	"time"
)

// Event kinds.
const (
	KindDetection = "detection" // a host crossed the trigger: the classic attackalert
	KindBan       = "ban"       // a ban was imposed (by detection or an operator)
	KindUnban     = "unban"     // a ban was lifted by an operator
	KindExpire    = "expire"    // a ban ran out
	KindFlood     = "flood"     // a flood of forged sources started, goes on or ended: a summary
)

// Event is one entry of the live feed.
type Event struct {
	ID    uint64    `json:"id"`
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"` // one of the Kind constants
	Addr  string    `json:"addr"`
	Name  string    `json:"name,omitempty"`
	Port  uint16    `json:"port,omitempty"`
	Proto string    `json:"proto,omitempty"`
	Mode  string    `json:"mode,omitempty"`
	Scan  string    `json:"scan,omitempty"`
	Text  string    `json:"text"` // the classic log line
}

// DefaultEvents is the ring size NewEvents uses for a size of 0 or less.
const DefaultEvents = 1000

// timelineMinutes is how far back the per-minute detection counts go.
const timelineMinutes = 60

// Events is a bounded ring of the newest events, safe for concurrent use. IDs start
// at 1 and increase by one per event, so a reader can ask for what came after the
// last ID it saw and tell how many it missed.
//
// Alongside the ring it counts detections per minute for the last hour, so the chart
// stays right when the ring holds less than an hour (a flood).
type Events struct {
	mu   sync.Mutex
	ring []Event
	next uint64 // ID of the next event; ring holds IDs [max(1, next-len), next)
	min  [timelineMinutes]minuteCount
	now  func() time.Time
}

type minuteCount struct {
	minute int64 // Unix minute the count belongs to
	n      uint64
}

// NewEvents returns a ring keeping the newest size events (DefaultEvents when size
// is 0 or less).
func NewEvents(size int) *Events {
	if size <= 0 {
		size = DefaultEvents
	}
	return &Events{ring: make([]Event, size), next: 1, now: time.Now}
}

// Cap is the ring's size.
func (e *Events) Cap() int { return len(e.ring) }

// Add stores ev, giving it the next ID and, when ev.Time is zero, the current time.
// It returns the ID. The oldest event is dropped when the ring is full.
func (e *Events) Add(ev Event) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Time.IsZero() {
		ev.Time = e.now()
	}
	ev.ID = e.next
	e.next++
	e.ring[ev.ID%uint64(len(e.ring))] = ev
	if ev.Kind == KindDetection {
		// An event stamped in the future (clock skew) counts in the current minute
		// rather than taking the place of an older minute's count.
		m := min(ev.Time.Unix(), e.now().Unix()) / 60
		b := &e.min[uint64(m)%timelineMinutes]
		switch {
		case b.minute == m:
			b.n++
		case b.minute < m:
			*b = minuteCount{minute: m, n: 1}
		}
		// b.minute > m: an event more than an hour late; not counted.
	}
	return ev.ID
}

// Last is the ID of the newest event, 0 when there is none.
func (e *Events) Last() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.next - 1
}

// Since returns the events with an ID above id, oldest first. When more than max of
// them are held, it returns the newest max (max <= 0 means the ring's size): a reader
// that falls behind skips ahead, as the ring itself does, rather than trailing.
func (e *Events) Since(id uint64, max int) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.since(id, max)
}

func (e *Events) since(id uint64, max int) []Event {
	size := uint64(len(e.ring))
	if max <= 0 || uint64(max) > size {
		max = int(size)
	}
	last := e.next - 1
	if id >= last {
		return []Event{}
	}
	first := id + 1
	if oldest := e.oldest(); first < oldest {
		first = oldest
	}
	if n := last - first + 1; n > uint64(max) {
		first = last - uint64(max) + 1
	}
	out := make([]Event, 0, last-first+1)
	for i := first; i <= last; i++ {
		out = append(out, e.ring[i%size])
	}
	return out
}

// oldest is the ID of the oldest event held (next when empty).
func (e *Events) oldest() uint64 {
	size := uint64(len(e.ring))
	if e.next-1 <= size {
		return 1
	}
	return e.next - size
}

// Page is one answer of /api/events.
type Page struct {
	Events []Event `json:"events"`
	// Last is the newest ID the daemon has given out: ask with since=Last next time.
	Last uint64 `json:"last"`
	// Skipped counts the events after since that are not in Events: dropped from the
	// ring, or beyond max.
	Skipped uint64 `json:"skipped"`
	// Reset is set when since was above Last (the daemon restarted and numbers
	// started again): the answer is then as for since=0.
	Reset bool `json:"reset,omitempty"`
}

// Page answers a reader who saw everything up to since.
func (e *Events) Page(since uint64, max int) Page {
	e.mu.Lock()
	defer e.mu.Unlock()
	var p Page
	p.Last = e.next - 1
	if since > p.Last {
		since, p.Reset = 0, true
	}
	p.Events = e.since(since, max)
	p.Skipped = p.Last - since - uint64(len(p.Events))
	return p
}

// Timeline is detections per minute for the last hour.
type Timeline struct {
	Start  time.Time `json:"start"`  // start of the first minute
	Minute []uint64  `json:"minute"` // counts, oldest first; the last is the current minute
	Total  uint64    `json:"total"`
}

// Timeline counts the detections added per minute over the hour up to now (the
// event times, in whole UTC minutes).
func (e *Events) Timeline(now time.Time) Timeline {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := now.Unix() / 60
	t := Timeline{Start: time.Unix((cur-timelineMinutes+1)*60, 0).UTC(), Minute: make([]uint64, timelineMinutes)}
	for i := range timelineMinutes {
		m := cur - timelineMinutes + 1 + int64(i)
		if b := e.min[uint64(m)%timelineMinutes]; b.minute == m {
			t.Minute[i] = b.n
			t.Total += b.n
		}
	}
	return t
}

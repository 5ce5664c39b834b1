package bans

import (
	"net/netip"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/respond"
)

// maxHeld bounds the bans waiting for the journal (about 200 bytes each). Beyond it new
// bans are refused, counted and logged, and their hosts can be caught again: never
// dropped silently.
const maxHeld = 16384

// held keeps the bans whose journal record could not be written (a full disk). Such a
// ban is not final: it is neither in the backend nor in Active, and the manager commits
// it again, journal first, at its next commit and every appendfile.RetryEvery until the
// disk takes it. The manager's goroutine changes it; covers may be asked from any.
type held struct {
	mu     sync.Mutex
	bans   []Ban
	index  map[netip.Prefix]int // position in bans
	outage appendfile.Outage
	report appendfile.Report
	retry  *time.Timer // armed while bans wait
}

func newHeld(path string, r appendfile.Report) *held {
	return &held{report: r, outage: appendfile.Outage{Name: "ban journal " + path, Unit: "bans", Log: r.Log}}
}

// take returns the held bans followed by batch (a newer ban of a held prefix takes its
// place) and empties the hold.
func (h *held) take(batch []Ban) []Ban {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bans) == 0 {
		return batch
	}
	out := h.bans
	for _, b := range batch {
		if i, ok := h.index[b.Prefix.Masked()]; ok {
			out[i] = b
		} else {
			out = append(out, b)
		}
	}
	h.bans, h.index = nil, nil
	return out
}

// keep holds batch, whose journal write failed with err, up to maxHeld, and returns the
// bans it had no room for.
func (h *held) keep(batch []Ban, err error) (refused []Ban) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.index == nil {
		h.index = map[netip.Prefix]int{}
	}
	for _, b := range batch {
		p := b.Prefix.Masked()
		if i, ok := h.index[p]; ok {
			h.bans[i] = b
			continue
		}
		if len(h.bans) >= maxHeld {
			refused = append(refused, b)
			continue
		}
		h.index[p] = len(h.bans)
		h.bans = append(h.bans, b)
	}
	h.fail(err)
	if len(refused) > 0 {
		h.outage.Dropped(len(refused), maxHeld)
		if h.report.Dropped != nil {
			h.report.Dropped(len(refused))
		}
	}
	h.queued()
	return refused
}

// failed reports a journal write or fsync that failed outside commit (a lift, which its
// caller tries again): once per outage, with the bans held.
func (h *held) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail(err)
}

// fail counts a failure and logs the first of an outage. The caller holds h.mu.
func (h *held) fail(err error) {
	h.outage.Failed(err, len(h.bans))
	if h.report.Error != nil {
		h.report.Error()
	}
}

// committed records a successful journal write; it ends an outage once nothing is held.
func (h *held) committed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.outage.Active() && len(h.bans) == 0 {
		h.outage.Recovered()
		h.queued()
	}
}

// queued reports how many bans wait. The caller holds h.mu.
func (h *held) queued() {
	if h.report.Queued != nil {
		h.report.Queued(len(h.bans))
	}
}

// arm makes retry run in appendfile.RetryEvery, unless it is already due.
func (h *held) arm(retry func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retry == nil {
		h.retry = time.AfterFunc(appendfile.RetryEvery, func() {
			h.mu.Lock()
			h.retry = nil
			h.mu.Unlock()
			retry()
		})
	}
}

// stop disarms the retry.
func (h *held) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retry != nil {
		h.retry.Stop()
		h.retry = nil
	}
}

// covers reports whether a held ban covers a.
func (h *held) covers(a netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.index) == 0 {
		return false
	}
	for bits := a.BitLen(); bits >= 0; bits-- {
		if _, ok := h.index[netip.PrefixFrom(a, bits).Masked()]; ok {
			return true
		}
	}
	return false
}

// note records d in the held ban of exactly p (see Journal.Note); false when none is
// held.
func (h *held) note(p netip.Prefix, d respond.Done) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.index[p.Masked()]
	if ok {
		h.bans[i].Reason.Classic = mergeDone(h.bans[i].Reason.Classic, []respond.Done{d})
	}
	return ok
}

// forget drops the held ban of exactly p.
func (h *held) forget(p netip.Prefix) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.index[p.Masked()]
	if !ok {
		return
	}
	h.bans = append(h.bans[:i], h.bans[i+1:]...)
	delete(h.index, p.Masked())
	for j := i; j < len(h.bans); j++ {
		h.index[h.bans[j].Prefix.Masked()] = j
	}
	h.queued()
}

func (h *held) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bans)
}

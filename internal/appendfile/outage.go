package appendfile

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// RetryEvery is how often what could not be written is tried again, besides at the
// next write.
const RetryEvery = time.Second

// Outage tells the log once when a file stops taking writes and once when it takes
// them again, however many writes fail in between: a full disk must not also flood the
// log (which may well be on the same disk). It is not safe for concurrent use.
type Outage struct {
	Name string // what the log calls the file: its path, "ban journal PATH"
	Unit string // what is queued: "lines", "bans"
	Log  *slog.Logger

	since   time.Time // when the outage began; zero when there is none
	dropped int       // given up on during this outage
}

// Failed records a failed write (or fsync) with queued items waiting; the first of an
// outage is logged.
func (o *Outage) Failed(err error, queued int) {
	if !o.since.IsZero() {
		return
	}
	o.since = time.Now()
	msg := fmt.Sprintf("adminalert: ERROR: %s: %v", o.Name, cause(err))
	if queued > 0 {
		msg += fmt.Sprintf(": %d %s queued, retrying every %v", queued, o.Unit, RetryEvery)
	}
	o.Log.Error(msg)
}

// Dropped records n items given up on because the queue was full; the first drop of
// an outage is logged, the count with the recovery.
func (o *Outage) Dropped(n, limit int) {
	if o.dropped == 0 {
		o.Log.Error(fmt.Sprintf("adminalert: ERROR: %s: %d %s queued, as many as are kept: newer ones are dropped and counted", o.Name, limit, o.Unit))
	}
	o.dropped += n
}

// Recovered records a successful write, which ends an outage; its end is logged with
// how long it lasted and what was dropped.
func (o *Outage) Recovered() {
	if o.since.IsZero() {
		return
	}
	msg := fmt.Sprintf("adminalert: %s written again after %v", o.Name, time.Since(o.since).Round(time.Millisecond))
	if o.dropped > 0 {
		msg += fmt.Sprintf("; %d %s were dropped", o.dropped, o.Unit)
	}
	o.Log.Warn(msg)
	o.since, o.dropped = time.Time{}, 0
}

// Active reports whether writes are failing now.
func (o *Outage) Active() bool { return !o.since.IsZero() }

// cause drops what the outage's name already says from an error that ends in an
// *os.PathError ("ban journal: write PATH: no space left on device"), keeping only
// why it failed; other errors (a failed cut joined to the write's) are kept whole.
func cause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) && strings.HasSuffix(err.Error(), pe.Error()) {
		return pe.Err
	}
	return err
}

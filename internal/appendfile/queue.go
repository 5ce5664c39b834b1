package appendfile

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Queue bounds and chunk sizes. A history line is about 100 bytes and a JSON_LOG
// event about 300, so a full queue holds a few MiB per file; a chunk is what one
// write(2) carries when the queue is written out.
const (
	MaxQueued  = 16384
	chunkLines = 4096
	chunkBytes = 1 << 20
)

// Report is where a Queue tells of trouble besides the log. Any field may be nil.
type Report struct {
	Log     *slog.Logger
	Error   func()      // a write or fsync failed
	Queued  func(n int) // lines waiting now
	Dropped func(n int) // lines dropped because the queue was full
}

// Queue appends lines to a file through a File. Lines a failed write could not place
// stay queued, in order, behind which new lines wait; they are tried again at every
// Append and every RetryEvery until the file takes them. Beyond MaxQueued, new lines
// are dropped and counted. It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	f       *File
	pending []string
	outage  Outage
	report  Report
	retry   *time.Timer // armed while lines wait; nil otherwise
	closed  bool
}

// NewQueue returns a queue writing to f, which must end with a whole line; name is
// what the log calls the file.
func NewQueue(name string, f Backing, r Report) *Queue {
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	return &Queue{f: New(f), report: r, outage: Outage{Name: name, Unit: "lines", Log: r.Log}}
}

// Append queues the lines (newlines added) and writes everything queued, each chunk in
// one write, then fsyncs. A failure is reported, once per outage, and the lines stay
// queued; the error is only for a closed queue.
func (q *Queue) Append(lines ...string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("write %s: file is closed", q.outage.Name)
	}
	q.pending = append(q.pending, lines...)
	q.flush()
	return nil
}

// flush writes the queue out and syncs; on a failure it keeps at most MaxQueued lines
// (the oldest: the file keeps its order), reports, and arms the retry. The caller holds
// q.mu.
func (q *Queue) flush() {
	err := q.write()
	if err == nil {
		// A failed fsync is counted and told, but what was written stays written:
		// writing it again would only duplicate it.
		err = q.f.Sync()
	}
	if err != nil {
		if q.report.Error != nil {
			q.report.Error()
		}
		q.outage.Failed(err, min(len(q.pending), MaxQueued))
	}
	if over := len(q.pending) - MaxQueued; over > 0 {
		q.pending = q.pending[:MaxQueued]
		q.outage.Dropped(over, MaxQueued)
		if q.report.Dropped != nil {
			q.report.Dropped(over)
		}
	}
	if q.report.Queued != nil {
		q.report.Queued(len(q.pending))
	}
	if err == nil {
		q.outage.Recovered()
	} else if len(q.pending) > 0 && q.retry == nil {
		q.retry = time.AfterFunc(RetryEvery, q.retryNow)
	}
}

// write writes the queue in chunks until it is empty or a write fails.
func (q *Queue) write() error {
	for len(q.pending) > 0 {
		n, size := 0, 0
		for n < len(q.pending) && n < chunkLines && (n == 0 || size+len(q.pending[n])+1 <= chunkBytes) {
			size += len(q.pending[n]) + 1
			n++
		}
		buf := make([]byte, 0, size)
		for _, l := range q.pending[:n] {
			buf = append(buf, l...)
			buf = append(buf, '\n')
		}
		if err := q.f.Write(buf); err != nil {
			return err
		}
		q.pending = q.pending[n:]
	}
	q.pending = nil // let the written lines' array go
	return nil
}

func (q *Queue) retryNow() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.retry = nil
	if !q.closed && len(q.pending) > 0 {
		q.flush()
	}
}

// Queued is how many lines wait to be written.
func (q *Queue) Queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Replace swaps in the file open returns (a rewritten copy renamed over the old one),
// with no write in between, and closes the old file; open returns nil when it left the
// file as it was. The queue carries over.
func (q *Queue) Replace(open func() (Backing, error)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("rewrite %s: file is closed", q.outage.Name)
	}
	nf, err := open()
	if err != nil || nf == nil {
		return err
	}
	q.f.Close()
	q.f = New(nf)
	return nil
}

// Inherit takes over the lines old could not write, ahead of any of q's, and old's
// outage, so that a file reopened (rotated by logrotate, moved by a reload) loses none
// of them and tells the outage's end once they are written.
func (q *Queue) Inherit(old *Queue) {
	old.mu.Lock()
	lines, outage := old.pending, old.outage
	old.pending, old.outage.since = nil, time.Time{}
	old.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(lines, q.pending...)
	q.outage.since, q.outage.dropped = outage.since, outage.dropped
	q.flush()
}

// Close tries the queue a last time and closes the file; lines that could still not
// be written are logged as lost.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if q.retry != nil {
		q.retry.Stop()
		q.retry = nil
	}
	var err error
	if len(q.pending) > 0 {
		if err = q.write(); err != nil {
			q.report.Log.Error(fmt.Sprintf("adminalert: ERROR: %s: %d lines lost at shutdown: %v", q.outage.Name, len(q.pending), err))
		}
	}
	return errors.Join(err, q.f.Sync(), q.f.Close())
}

package daemon

import (
	"log/slog"

	"github.com/portsentry-go/portsentry/internal/batch"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// maxBatch bounds how many lines one write (and one fsync) carries.
const maxBatch = 4096

// recorder writes history and blocked lines on its own goroutine, in batches: every
// line queued while the previous batch was being written and synced goes out in the
// next single write and fsync. A scan writes one line at a time as before; a flood of
// spoofed sources no longer costs an fsync per host (which made the workers, not the
// capture, the bottleneck). A crash can lose the lines of the batch in flight, never
// tear one.
type recorder struct {
	files *files
	log   *slog.Logger
	lines chan entry
	done  chan struct{}
}

type entry struct {
	mode probe.Mode
	line string
}

func newRecorder(f *files, log *slog.Logger) *recorder {
	r := &recorder{files: f, log: log, lines: make(chan entry, maxBatch), done: make(chan struct{})}
	go r.run()
	return r
}

// record queues a line for the mode's blocked file and the history file. It blocks
// only while the queue is full, which slows the workers down rather than losing lines.
func (r *recorder) record(m probe.Mode, line string) {
	r.lines <- entry{m, line}
}

// close writes what is queued and stops.
func (r *recorder) close() {
	close(r.lines)
	<-r.done
}

func (r *recorder) run() {
	defer close(r.done)
	for e := range r.lines {
		lines := batch.Take(r.lines, e, maxBatch)
		if err := r.files.append(lines); err != nil {
			r.log.Error("adminalert: ERROR: " + err.Error())
		}
	}
}

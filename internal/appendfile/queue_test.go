package appendfile

import (
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testlog"
)

// lockedDisk is a disk whose room can be changed while the queue's retry timer runs.
type lockedDisk struct {
	mu sync.Mutex
	d  *disk
}

func (l *lockedDisk) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.Write(p)
}
func (l *lockedDisk) Seek(off int64, whence int) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.Seek(off, whence)
}
func (l *lockedDisk) Truncate(size int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.Truncate(size)
}
func (l *lockedDisk) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.syncErr
}
func (l *lockedDisk) Close() error { return nil }

func (l *lockedDisk) setRoom(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d.room = n
}

func (l *lockedDisk) contents() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.d.data)
}

type counts struct {
	mu                    sync.Mutex
	errors, queued, drops int
}

func (c *counts) report(log *testlog.Buffer) Report {
	return Report{
		Log:     slog.New(slog.NewTextHandler(log, nil)),
		Error:   func() { c.mu.Lock(); c.errors++; c.mu.Unlock() },
		Queued:  func(n int) { c.mu.Lock(); c.queued = n; c.mu.Unlock() },
		Dropped: func(n int) { c.mu.Lock(); c.drops += n; c.mu.Unlock() },
	}
}

func (c *counts) get() (errors, queued, drops int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errors, c.queued, c.drops
}

func TestQueueKeepsLinesUntilThereIsRoom(t *testing.T) {
	ld := &lockedDisk{d: newDisk(10)}
	var log testlog.Buffer
	var c counts
	q := NewQueue("history", ld, c.report(&log))
	q.Append("one")
	q.Append("the second line")
	q.Append("third")
	if got := ld.contents(); got != "one\n" {
		t.Fatalf("file %q, want only the line that fit", got)
	}
	if n := q.Queued(); n != 2 {
		t.Fatalf("%d queued, want 2", n)
	}
	if n := log.Count("history: no space left on device: 1 lines queued, retrying every 1s"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, log.String())
	}
	if errs, queued, _ := c.get(); errs != 2 || queued != 2 {
		t.Errorf("reported %d errors and %d queued, want 2 and 2", errs, queued)
	}
	// Space returns: the timer writes the queue without another Append.
	ld.setRoom(-1)
	deadline := time.Now().Add(5 * RetryEvery)
	for q.Queued() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := ld.contents(); got != "one\nthe second line\nthird\n" {
		t.Fatalf("file %q after the retry", got)
	}
	if log.Count("history written again after") != 1 {
		t.Errorf("no recovery line:\n%s", log.String())
	}
	if _, queued, _ := c.get(); queued != 0 {
		t.Errorf("queued gauge %d after the retry", queued)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Append("late"); err == nil {
		t.Error("append after close succeeded")
	}
}

func TestQueueDropsBeyondItsBound(t *testing.T) {
	ld := &lockedDisk{d: newDisk(0)}
	var log testlog.Buffer
	var c counts
	q := NewQueue("json", ld, c.report(&log))
	lines := make([]string, MaxQueued+5)
	for i := range lines {
		lines[i] = "x"
	}
	q.Append(lines...)
	q.Append("y", "z")
	if n := q.Queued(); n != MaxQueued {
		t.Fatalf("%d queued, want %d", n, MaxQueued)
	}
	if _, _, drops := c.get(); drops != 7 {
		t.Errorf("%d drops reported, want 7", drops)
	}
	if log.Count("newer ones are dropped and counted") != 1 {
		t.Errorf("the first drop is not logged once:\n%s", log.String())
	}
	ld.setRoom(-1)
	q.Append("after")
	if n := strings.Count(ld.contents(), "\n"); n != MaxQueued+1 {
		t.Errorf("%d lines written, want %d", n, MaxQueued+1)
	}
	if log.Count("; 7 lines were dropped") != 1 {
		t.Errorf("the recovery does not count the drops:\n%s", log.String())
	}
	q.Close()
}

func TestQueueCloseTellsWhatIsLost(t *testing.T) {
	ld := &lockedDisk{d: newDisk(0)}
	var log testlog.Buffer
	var c counts
	q := NewQueue("history", ld, c.report(&log))
	q.Append("a", "b")
	if err := q.Close(); err == nil {
		t.Error("close with unwritable lines reported no error")
	}
	if log.Count("history: 2 lines lost at shutdown") != 1 {
		t.Errorf("loss not logged:\n%s", log.String())
	}
}

func TestQueueCountsFailedSync(t *testing.T) {
	ld := &lockedDisk{d: newDisk(-1)}
	ld.d.syncErr = syscall.EIO
	var log testlog.Buffer
	var c counts
	q := NewQueue("history", ld, c.report(&log))
	q.Append("a")
	q.Append("b")
	if got := ld.contents(); got != "a\nb\n" {
		t.Fatalf("file %q: a failed fsync must not make lines be written twice", got)
	}
	if errs, queued, _ := c.get(); errs != 2 || queued != 0 {
		t.Errorf("%d errors, %d queued; want 2, 0", errs, queued)
	}
	if log.Count("history: input/output error") != 1 {
		t.Errorf("fsync failure not logged once:\n%s", log.String())
	}
	q.Close()
}

// TestInheritCarriesTheQueue: a file reopened during an outage (rotated, say) writes
// the old one's queued lines first, and tells the outage's end.
func TestInheritCarriesTheQueue(t *testing.T) {
	var log testlog.Buffer
	var c counts
	oldDisk := &lockedDisk{d: newDisk(0)}
	old := NewQueue("history", oldDisk, c.report(&log))
	old.Append("a", "b")
	fresh := &lockedDisk{d: newDisk(-1)}
	q := NewQueue("history", fresh, c.report(&log))
	q.Inherit(old)
	q.Append("c")
	if got := fresh.contents(); got != "a\nb\nc\n" {
		t.Fatalf("new file %q", got)
	}
	if err := old.Close(); err != nil || log.Count("lost") != 0 {
		t.Errorf("closing the old queue: %v\n%s", err, log.String())
	}
	if log.Count("history written again after") != 1 {
		t.Errorf("no recovery line:\n%s", log.String())
	}
	q.Close()
}

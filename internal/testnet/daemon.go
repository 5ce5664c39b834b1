package testnet

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const StopTimeout = 5 * time.Second

// pollInterval is how often WaitFor looks at the log again.
const pollInterval = 20 * time.Millisecond

// Log is a thread-safe, line-oriented record of a process's output (or of syslog
// messages). Tests wait for lines to appear with WaitFor / WaitForSince.
type Log struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	closed  bool   // no more lines will come
	why     string // why closed
}

// Write implements io.Writer, splitting the stream into lines.
func (l *Log) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, strings.TrimRight(string(l.partial[:i]), "\r"))
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

// Add appends one complete line.
func (l *Log) Add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

// close records that the source has ended; a trailing partial line becomes a line.
func (l *Log) close(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.lines = append(l.lines, string(l.partial))
		l.partial = nil
	}
	l.closed, l.why = true, why
}

// WaitClosed waits until the source has ended (the process exited and its output was
// read) and reports whether it did within timeout.
func (l *Log) WaitClosed(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

// Lines returns a copy of all complete lines so far.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// String returns all output so far, one line per line.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	if len(l.partial) > 0 {
		s += "\n" + string(l.partial)
	}
	return s
}

// Mark returns the current number of lines; pass it to WaitForSince or Since to look only
// at lines that come later.
func (l *Log) Mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// Since returns the lines from mark on.
func (l *Log) Since(mark int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mark > len(l.lines) {
		return nil
	}
	return append([]string(nil), l.lines[mark:]...)
}

// Matching returns the lines (from mark on) that match pattern (see WaitFor).
func (l *Log) Matching(mark int, pattern any) []string {
	m := matcher(pattern)
	var out []string
	for _, line := range l.Since(mark) {
		if m(line) {
			out = append(out, line)
		}
	}
	return out
}

// WaitFor waits until some line matches pattern, a substring (string) or a
// *regexp.Regexp, and returns the first such line. It fails the test, showing the whole
// log, when timeout passes or the source ends first.
func (l *Log) WaitFor(t testing.TB, pattern any, timeout time.Duration) string {
	t.Helper()
	return l.WaitForSince(t, 0, pattern, timeout)
}

// WaitForSince is WaitFor looking only at lines from mark on.
func (l *Log) WaitForSince(t testing.TB, mark int, pattern any, timeout time.Duration) string {
	t.Helper()
	line, err := l.Await(mark, pattern, timeout)
	if err != nil {
		t.Fatalf("%v; output so far:\n%s", err, l.String())
	}
	return line
}

// Await is WaitForSince returning an error instead of failing the test.
func (l *Log) Await(mark int, pattern any, timeout time.Duration) (string, error) {
	m := matcher(pattern)
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		lines, closed, why := l.lines, l.closed, l.why
		l.mu.Unlock()
		for i := mark; i < len(lines); i++ {
			if m(lines[i]) {
				return lines[i], nil
			}
		}
		if closed {
			return "", fmt.Errorf("waiting for %s: output ended (%s)", describe(pattern), why)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("waiting for %s: timed out after %v", describe(pattern), timeout)
		}
		time.Sleep(pollInterval)
	}
}

func matcher(pattern any) func(string) bool {
	switch p := pattern.(type) {
	case string:
		return func(s string) bool { return strings.Contains(s, p) }
	case *regexp.Regexp:
		return p.MatchString
	case func(string) bool:
		return p
	}
	panic(fmt.Sprintf("testnet: pattern must be string, *regexp.Regexp or func(string) bool, not %T", pattern))
}

func describe(pattern any) string {
	switch p := pattern.(type) {
	case string:
		return fmt.Sprintf("%q", p)
	case *regexp.Regexp:
		return "/" + p.String() + "/"
	}
	return "matching line"
}

// Daemon is a long-running process started inside a namespace, its stdout and stderr
// captured into Log.
type Daemon struct {
	*Log
	Cmd  *exec.Cmd
	Name string

	done    chan struct{}
	waitErr error
	stopped bool
	mu      sync.Mutex
}

// Start runs name inside ns as a daemon (it must stay in the foreground). Cleanup stops
// it and, if the test failed, logs its output.
func (p *Pair) Start(t testing.TB, ns, name string, args ...string) *Daemon {
	t.Helper()
	return StartDaemon(t, p.Exec(ns, name, args...))
}

// StartDaemon starts cmd (not yet started) with output captured, see Pair.Start.
func StartDaemon(t testing.TB, cmd *exec.Cmd) *Daemon {
	t.Helper()
	d := &Daemon{Log: &Log{}, Cmd: cmd, Name: strings.Join(cmd.Args, " "), done: make(chan struct{})}
	cmd.Stdout = d.Log
	cmd.Stderr = d.Log
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("testnet: start %s: %v", d.Name, err)
	}
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		d.Log.close(fmt.Sprintf("process exited: %v", cmdStatus(cmd, err)))
		close(d.done)
	}()
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Logf("testnet: stopping %s: %v", d.Name, err)
		}
		if t.Failed() {
			t.Logf("testnet: output of %s (pid %d):\n%s", d.Name, cmd.Process.Pid, d.String())
		}
	})
	return d
}

func cmdStatus(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return fmt.Sprint(err)
}

// Pid is the process id (ip netns exec execs the program, so it is the daemon's own).
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Err is the Wait error once the process has exited.
func (d *Daemon) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitErr
}

// Signal sends sig to the process.
func (d *Daemon) Signal(sig syscall.Signal) error {
	if d.Exited() {
		return fmt.Errorf("testnet: %s already exited", d.Name)
	}
	return d.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to StopTimeout, then sends SIGKILL. It returns an error
// if SIGKILL was needed. Calling it again is harmless.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	already := d.stopped
	d.stopped = true
	d.mu.Unlock()
	if already || d.Exited() {
		<-d.done
		return nil
	}
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(StopTimeout):
	}
	_ = d.Cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("did not exit within %v of SIGTERM; killed", StopTimeout)
}

// Eventually polls cond every 20ms until it returns true or timeout passes; then it fails
// the test with the message from the last call.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, msg)
		}
		time.Sleep(pollInterval)
	}
}

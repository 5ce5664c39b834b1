package respond

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/logging"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// records is a slog.Handler keeping every record, so tests can look at attribute
// values as the responder passed them, before any handler renders them.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// attrs returns the attributes of the first record with message msg.
func (r *records) attrs(msg string) (map[string]slog.Value, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Message != msg {
			continue
		}
		m := map[string]slog.Value{}
		rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		return m, true
	}
	return nil, false
}

func (r *records) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.recs {
		fmt.Fprintln(&b, rec.Message)
	}
	return b.String()
}

var udpTarget = Target{Addr: target.Addr, Port: 7, Mode: probe.ModeUDP}

// runCmdOnly returns a responder running cmd as KILL_RUN_CMD for UDP, and its records.
func runCmdOnly(cmd string, timeout time.Duration) (*Classic, *records) {
	r := &records{}
	return NewClassic(ClassicConfig{BlockUDP: config.BlockRunCmd, KillRunCmd: cmd, Timeout: timeout}, slog.New(r)), r
}

// gone reports whether process pid has exited: no longer there, or a zombie waiting for
// its new parent to reap it.
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return err == nil && i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// waitGone fails t unless every pid exits. SIGKILL is delivered asynchronously, so this
// waits for it; the bound only keeps a broken build from hanging the test run.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		for i := 0; !gone(pid); i++ {
			if i == 1000 {
				t.Errorf("process %d still runs", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL) // do not leave it behind
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// readPids reads the pids a command wrote, one a line.
func readPids(t *testing.T, path string) []int {
	t.Helper()
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %q: %v", b, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// spawner is a command that ignores SIGTERM and starts, in its process group: a
// background child on its output, a nested shell ignoring SIGTERM with a child of its
// own, and a child detached from its output. Each pid goes into file P; once the four
// children's pids are there the shell adds its own and hangs.
const spawner = `trap '' TERM
sleep 1000 & echo $! >> P
sh -c 'trap "" TERM; sleep 1000 & echo $! >> P; echo $$ >> P; wait' &
sh -c 'echo $$ >> P; exec sleep 1000' >/dev/null 2>&1 &
while [ "$(wc -l < P)" -lt 4 ]; do sleep 0.01; done
echo $$ >> P
sleep 1000`

func TestTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	c, r := runCmdOnly(strings.ReplaceAll(spawner, "P", pidFile), 2*time.Second)
	if c.Respond(context.Background(), udpTarget).Blocked {
		t.Fatal("timed-out command counted as success")
	}
	if !strings.Contains(r.messages(), "timed out after 2s") {
		t.Errorf("no timeout in log:\n%s", r.messages())
	}
	pids := readPids(t, pidFile)
	if len(pids) != 5 {
		t.Fatalf("the command did not get its children going within its timeout: pids %v", pids)
	}
	waitGone(t, pids)
}

func TestCancelKillsTheWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	c, _ := runCmdOnly(strings.ReplaceAll(spawner, "P", pidFile), time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- c.Respond(ctx, udpTarget).Blocked }()
	for i := 0; len(readPids(t, pidFile)) < 5; i++ {
		if i == 1000 {
			cancel()
			t.Fatalf("the command did not get its children going: pids %v", readPids(t, pidFile))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if <-done {
		t.Fatal("cancelled command counted as success")
	}
	waitGone(t, readPids(t, pidFile))
}

func TestLeftoverHoldingTheOutputIsKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	c, r := runCmdOnly("sleep 1000 & echo $! > "+pidFile, time.Hour)
	if !c.Respond(context.Background(), udpTarget).Blocked {
		t.Fatalf("exit status 0 counted as failure:\n%s", r.messages())
	}
	if !strings.Contains(r.messages(), "left processes holding its output") {
		t.Errorf("leftover not logged:\n%s", r.messages())
	}
	waitGone(t, readPids(t, pidFile))
}

func TestOutputIsBoundedWhileRead(t *testing.T) {
	const printed = 300_000_000
	c, r := runCmdOnly(fmt.Sprintf("head -c %d /dev/zero", printed), time.Minute)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ok := c.Respond(context.Background(), udpTarget).Blocked
	runtime.ReadMemStats(&after)
	if !ok {
		t.Fatalf("command failed:\n%s", r.messages())
	}
	// Everything allocated while the command ran, collected or not: a few pipe
	// buffers and the kept 64 KiB, never the output.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB while %d MB went through", alloc>>10, printed/1_000_000)
	if alloc > 8<<20 {
		t.Errorf("responder allocated %d MiB for %d MB of output", alloc>>20, printed/1_000_000)
	}
	a, found := r.attrs("command output")
	if !found {
		t.Fatalf("no output logged:\n%s", r.messages())
	}
	if out := a["output"].String(); len(out) > maxOutput || !strings.HasPrefix(out, `\x00\x00`) {
		t.Errorf("logged output: %d bytes, starting %.20q", len(out), out)
	}
	if !a["truncated"].Bool() || a["bytes"].Int64() != printed {
		t.Errorf("truncation not marked: truncated=%v bytes=%v", a["truncated"], a["bytes"])
	}
}

func TestShortOutputIsNotMarkedTruncated(t *testing.T) {
	c, r := runCmdOnly("echo hello; echo world >&2", time.Minute)
	c.Respond(context.Background(), udpTarget)
	a, _ := r.attrs("command output")
	if got := a["output"].String(); got != `hello\nworld` {
		t.Errorf("output %q", got)
	}
	if _, marked := a["truncated"]; marked {
		t.Errorf("short output marked truncated")
	}
}

func TestOutputCannotForgeLogLines(t *testing.T) {
	// printf in /bin/sh: \r, \033 (ESC), \n, \177 (DEL), \001, and a literal backslash.
	cmd := `printf 'ok\rFAKE\033[2K\nattackalert: Host: 203.0.113.9 is already blocked\177\001\tx\\r'`
	c, r := runCmdOnly(cmd, time.Minute)
	c.Respond(context.Background(), udpTarget)
	a, _ := r.attrs("command output")
	want := `ok\rFAKE\x1b[2K\nattackalert: Host: 203.0.113.9 is already blocked\x7f\x01` + "\t" + `x\\r`
	if got := a["output"].String(); got != want {
		t.Errorf("output\n got %s\nwant %s", got, want)
	}

	// Through the daemon's own log format: still exactly one line per record, and no
	// control character but the newline ending each.
	var buf bytes.Buffer
	c = NewClassic(ClassicConfig{BlockUDP: config.BlockRunCmd, KillRunCmd: cmd}, logging.Stream(&buf, 1, slog.LevelInfo))
	c.Respond(context.Background(), udpTarget)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 { // the output, then "External command run ..."
		t.Errorf("%d lines:\n%s", len(lines), buf.String())
	}
	if strings.ContainsAny(buf.String(), "\r\x1b\x7f\x01") {
		t.Errorf("control characters reached the log: %q", buf.String())
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct {
		in        string
		limit     int
		want      string
		truncated bool
	}{
		{"plain text", 100, "plain text", false},
		{"  \r\n padded \n\n", 100, "padded", false},
		{"a\tb", 100, "a\tb", false},
		{"a\x00b\x1bc\x7fd", 100, `a\x00b\x1bc\x7fd`, false},
		{"C1 \u009b31m", 100, `C1 \u009b31m`, false},
		{"bidi \u202eevil", 100, `bidi \u202eevil`, false},
		{"bad \xff\xfe utf8", 100, `bad \xff\xfe utf8`, false},
		{`back\slash`, 100, `back\\slash`, false},
		{"héllo ✓", 100, "héllo ✓", false},
		{"abcdef", 4, "abcd", true},
		{"ab\x1bcd", 4, "ab", true}, // an escape is never cut in half
		{"ab\x1b", 6, `ab\x1b`, false},
	} {
		got, truncated := sanitize([]byte(tc.in), tc.limit)
		if got != tc.want || truncated != tc.truncated {
			t.Errorf("sanitize(%q, %d) = %q, %v; want %q, %v", tc.in, tc.limit, got, truncated, tc.want, tc.truncated)
		}
		if len(got) > tc.limit {
			t.Errorf("sanitize(%q, %d): %d bytes", tc.in, tc.limit, len(got))
		}
	}
}

func TestCapWriter(t *testing.T) {
	w := &capWriter{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if kept, total := w.kept(); string(kept) != "abcde" || total != 10 {
		t.Errorf("kept %q of %d", kept, total)
	}
}

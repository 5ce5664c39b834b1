package history

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

func TestLineMatchesClassicExample(t *testing.T) {
	// The example line from Debian's binary (SPEC §6), rendered in UTC.
	tm := time.Unix(1795535595, 0).In(time.FixedZone("X", 0))
	got := Line(tm, "10.99.0.2", netip.MustParseAddr("10.99.0.2"), 143, probe.TCP)
	want := "1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestLineParsedByFail2banPattern(t *testing.T) {
	// fail2ban's stock portsentry filter: /<HOST> Port: N (TCP|UDP) Blocked$ after an epoch.
	re := regexp.MustCompile(`^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: ([^/ ]+)/([0-9a-f.:]+) Port: (\d+) (TCP|UDP) Blocked$`)
	tm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	for _, a := range []string{"198.18.0.2", "2001:db8::2"} {
		l := Line(tm, "scanner.example", netip.MustParseAddr(a), 7, probe.UDP)
		m := re.FindStringSubmatch(l)
		if m == nil || m[3] != a || m[4] != "7" || m[5] != "UDP" {
			t.Errorf("line %q does not parse as classic: %v", l, m)
		}
	}
}

func TestAppendCreatesDirsAndKeepsLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "history")
	f, err := Open(path, false, appendfile.Report{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const writers, each = 8, 200
	long := strings.Repeat("x", 3000) // longer than a pipe buffer's atomic size
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := f.Append("begin "+long+" end", "second"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2*writers*each {
		t.Fatalf("got %d lines, want %d", len(lines), 2*writers*each)
	}
	for i, l := range lines {
		if l != "second" && l != "begin "+long+" end" {
			t.Fatalf("line %d torn: %.40q", i+1, l)
		}
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != fileMode {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), os.FileMode(fileMode))
	}
	if err := f.Append("late"); err == nil {
		t.Error("append after close succeeded")
	}
}

func TestOpenTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.tcp")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, true, appendfile.Report{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Append("new"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Fatalf("got %q", b)
	}
}

func TestRewriteKeepsAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.tcp")
	f, err := Open(path, false, appendfile.Report{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Append("a 1", "b 2", "a 3")
	if err := f.Rewrite(func(l string) bool { return !strings.HasPrefix(l, "a ") }); err != nil {
		t.Fatal(err)
	}
	f.Append("c 4")
	if got, _ := os.ReadFile(path); string(got) != "b 2\nc 4\n" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Error("temporary file left behind")
	}
}

func TestOpenCutsTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history")
	long := strings.Repeat("y", 5000) // the cut is found across read blocks
	for _, c := range []struct{ before, after string }{
		{"a\nb\n", "a\nb\n"},
		{"a\nb\n16:08:47 Ho", "a\nb\n"},
		{"a\n" + long, "a\n"},
		{"no newline at all", ""},
	} {
		if err := os.WriteFile(path, []byte(c.before), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path, false, appendfile.Report{})
		if err != nil {
			t.Fatal(err)
		}
		f.Append("next")
		f.Close()
		if got, _ := os.ReadFile(path); string(got) != c.after+"next\n" {
			t.Errorf("%.20q: got %.20q, want %.20q", c.before, got, c.after+"next\n")
		}
	}
}

// TestOpenRefusesSpecialFiles: a history or blocked file that is a FIFO (which nobody
// reads) or /dev/null is refused at once, naming the path, truncating or not.
func TestOpenRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "history")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/null"} {
		for _, truncate := range []bool{false, true} {
			done := make(chan struct{})
			go func() {
				defer close(done)
				f, err := Open(path, truncate, appendfile.Report{})
				if f != nil {
					f.Close()
				}
				if !errors.Is(err, regfile.ErrNotRegular) || !strings.HasPrefix(err.Error(), "open "+path+": is a ") {
					t.Errorf("Open(%s, %v): err = %v, want ErrNotRegular naming the path", path, truncate, err)
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Open(%s) blocked", path)
			}
		}
	}
}

package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/testlog"
)

// specialDaemonConf writes a config in dir naming dir's ignore, history and blocked
// files, with extra lines, and returns its path.
func specialDaemonConf(t *testing.T, dir, extra string) string {
	t.Helper()
	conf := filepath.Join(dir, "portsentry.conf")
	body := "TCP_PORTS=\"31337\"\nBLOCK_TCP=\"0\"\n" +
		"IGNORE_FILE=\"" + filepath.Join(dir, "ignore") + "\"\n" +
		"HISTORY_FILE=\"" + filepath.Join(dir, "history") + "\"\n" +
		"BLOCKED_FILE=\"" + filepath.Join(dir, "blocked") + "\"\n" + extra
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// newWithin runs New, failing the test if it blocks.
func newWithin(t *testing.T, opts Options) (*Daemon, error) {
	t.Helper()
	type result struct {
		d   *Daemon
		err error
	}
	ch := make(chan result, 1)
	go func() {
		d, err := New(opts)
		ch <- result{d, err}
	}()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("New blocked")
		return nil, nil
	}
}

// TestNewRefusesSpecialFiles: an ignore file, a history file or a blocked file that is
// a FIFO or a device stops the start at once, with an error at the key's line.
func TestNewRefusesSpecialFiles(t *testing.T) {
	for _, tt := range []struct {
		name, file, key string
		line            int
	}{
		{"ignore FIFO", "ignore", "IGNORE_FILE", 3},
		{"ignore.static FIFO", "ignore.static", "IGNORE_FILE", 3},
		{"history FIFO", "history", "HISTORY_FILE", 4},
		{"blocked FIFO", "blocked.tcp", "BLOCKED_FILE", 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := specialDaemonConf(t, dir, "")
			path := filepath.Join(dir, tt.file)
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			var log testlog.Buffer
			_, err := newWithin(t, Options{ConfigPath: conf, Modes: []probe.Mode{probe.ModeTCP},
				Log: slog.New(slog.NewTextHandler(&log, nil))})
			want := conf + ":" + strconv.Itoa(tt.line) + ": error: " + tt.key + ": open " + path + ": is a FIFO, not a regular file"
			if err == nil || err.Error() != want {
				t.Errorf("New: err = %v\nwant %s", err, want)
			}
		})
	}
	t.Run("ignore /dev/zero", func(t *testing.T) {
		dir := t.TempDir()
		conf := specialDaemonConf(t, dir, "")
		if err := os.WriteFile(conf, bytes.Replace(must(os.ReadFile(conf)), []byte(filepath.Join(dir, "ignore")), []byte("/dev/zero"), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		var log testlog.Buffer
		_, err := newWithin(t, Options{ConfigPath: conf, Modes: []probe.Mode{probe.ModeTCP},
			Log: slog.New(slog.NewTextHandler(&log, nil))})
		if err == nil || !strings.Contains(err.Error(), "IGNORE_FILE: open /dev/zero: is a character device, not a regular file") {
			t.Errorf("New: err = %v", err)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestReloadKeepsIgnoreSetOnSpecialFile: an ignore file replaced by a FIFO makes the
// reload fail at once, logged; the ignore set (and config) in force stay.
func TestReloadKeepsIgnoreSetOnSpecialFile(t *testing.T) {
	dir := t.TempDir()
	conf := specialDaemonConf(t, dir, "")
	ignore := filepath.Join(dir, "ignore")
	if err := os.WriteFile(ignore, []byte("10.9.8.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log testlog.Buffer
	d, err := newWithin(t, Options{ConfigPath: conf, Modes: []probe.Mode{probe.ModeTCP},
		Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	before := d.state.Load()
	if err := os.Remove(ignore); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(ignore, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.reload() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("reload blocked on a FIFO ignore file")
	}
	if d.state.Load() != before {
		t.Error("the state was replaced by a failed reload")
	}
	if !d.state.Load().ignore.Contains(netip.MustParseAddr("10.9.8.7")) {
		t.Error("the old ignore set was lost")
	}
	out := log.String()
	for _, want := range []string{"IGNORE_FILE: open " + ignore + ": is a FIFO, not a regular file",
		"reload rejected, the running configuration stays in force"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

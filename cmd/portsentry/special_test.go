package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs the command line, failing the test if it does not return promptly.
func runWithin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	type result struct {
		code     int
		out, err string
	}
	ch := make(chan result, 1)
	go func() {
		code, out, errs := runCmd(args...)
		ch <- result{code, out, errs}
	}()
	select {
	case r := <-ch:
		return r.code, r.out, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("%v blocked", args)
		return 0, "", ""
	}
}

// TestCheckConfigSpecialFiles: a config, an ignore file or a written file that is a
// FIFO or a device is a configuration error (exit 3) naming the file (and the key),
// found at once.
func TestCheckConfigSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(lines ...string) string {
		path := filepath.Join(t.TempDir(), "portsentry.conf")
		base := []string{`TCP_PORTS="1"`, `IGNORE_FILE="` + filepath.Join(dir, "ignore") + `"`,
			`HISTORY_FILE="` + filepath.Join(dir, "history") + `"`, `BLOCKED_FILE="` + filepath.Join(dir, "blocked") + `"`,
			`HOSTS_DENY_FILE="` + filepath.Join(dir, "hosts.deny") + `"`}
		// The first setting of a key wins: the test's come first, on line 1.
		if err := os.WriteFile(path, []byte(strings.Join(append(lines, base...), "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tt := range []struct {
		name string
		conf string
		want string
	}{
		{"config FIFO", fifo, "config: open " + fifo + ": is a FIFO, not a regular file"},
		{"config /dev/zero", "/dev/zero", "config: open /dev/zero: is a character device, not a regular file"},
		{"IGNORE_FILE /dev/zero", conf(`IGNORE_FILE="/dev/zero"`), ":1: error: IGNORE_FILE: open /dev/zero: is a character device, not a regular file"},
		{"IGNORE_FILE FIFO", conf(`IGNORE_FILE="` + fifo + `"`), ":1: error: IGNORE_FILE: open " + fifo + ": is a FIFO, not a regular file"},
		{"HISTORY_FILE FIFO", conf(`HISTORY_FILE="` + fifo + `"`), ":1: error: HISTORY_FILE: open " + fifo + ": is a FIFO, not a regular file"},
		{"JSON_LOG /dev/null", conf(`JSON_LOG="/dev/null"`), ":1: error: JSON_LOG: open /dev/null: is a character device, not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runWithin(t, "check-config", "-c", tt.conf, "-tcp")
			if code != exitConfig {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitConfig, errs)
			}
			if !strings.Contains(errs, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errs)
			}
		})
	}
	// The same files, all fine: exit 0 (the ignore file may be missing).
	if code, _, errs := runWithin(t, "check-config", "-c", conf(), "-tcp"); code != exitOK {
		t.Errorf("good config: exit %d\n%s", code, errs)
	}
}

// TestReportConfigHistoryFIFO: "report -c" refuses a HISTORY_FILE that is a FIFO at
// once instead of waiting for a writer.
func TestReportConfigHistoryFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "history")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "portsentry.conf")
	if err := os.WriteFile(conf, []byte(`HISTORY_FILE="`+fifo+`"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runWithin(t, "report", "-c", conf, "-o", filepath.Join(dir, "out.html"))
	if code != exitError || !strings.Contains(errs, fifo+": is a FIFO, not a regular file") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}

func TestPidfileSpecialFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- writePidfile(fifo) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "-pidfile: open "+fifo+": is a FIFO") {
			t.Errorf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writePidfile blocked on a FIFO")
	}
}

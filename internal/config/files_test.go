package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// TestLoadSpecialFiles: a config that is a FIFO, a device or too big is refused at
// once, with an error naming it, and never parsed.
func TestLoadSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.conf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(big, []byte(strings.Repeat("# comment\n", MaxFileSize/10+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want error
		msg  string
	}{
		{fifo, regfile.ErrNotRegular, "is a FIFO, not a regular file"},
		{"/dev/zero", regfile.ErrNotRegular, "is a character device, not a regular file"},
		{"/dev/null", regfile.ErrNotRegular, "is a character device, not a regular file"},
		{big, regfile.ErrTooLarge, "larger than 1048576 bytes"},
	} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, diags, err := Load(tt.path)
			if c != nil || diags != nil || !errors.Is(err, tt.want) {
				t.Errorf("Load(%s) = %v, %v, %v; want %v", tt.path, c, diags, err, tt.want)
			}
			if err == nil || !strings.Contains(err.Error(), tt.path+": "+tt.msg) {
				t.Errorf("Load(%s) error %q does not say %q", tt.path, err, tt.path+": "+tt.msg)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) blocked", tt.path)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "history")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(dir, "blocked")
	if err := syscall.Mkfifo(blocked+".udp", 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := empty("p.conf")
	c.lines = map[string]int{"HISTORY_FILE": 3, "JSON_LOG": 9}
	c.HistoryFile = fifo
	c.BlockedFile = blocked
	c.JSONLog = "/dev/null"
	c.HostsDenyFile = regular
	c.BanJournal = filepath.Join(dir, "absent", "bans") // absent: created at start
	c.DashboardTokenFile = dir                          // not checked without DASHBOARD
	got := diagStrings(c.CheckFiles([]probe.Mode{probe.ModeTCP, probe.ModeUDP}))
	want := []string{
		"p.conf:3: error: HISTORY_FILE: open " + fifo + ": is a FIFO, not a regular file",
		"p.conf: error: BLOCKED_FILE: open " + blocked + ".udp: is a FIFO, not a regular file",
		"p.conf:9: error: JSON_LOG: open /dev/null: is a character device, not a regular file",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("CheckFiles:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := c.CheckFiles([]probe.Mode{probe.ModeTCP}); len(got) != 2 {
		t.Errorf("-tcp only: %v, want the blocked file of -udp left alone", got)
	}
	c.Dashboard = "127.0.0.1:9117"
	if got := c.CheckFiles([]probe.Mode{probe.ModeTCP}); len(got) != 3 || !strings.Contains(got[2].Msg, "DASHBOARD_TOKEN_FILE: open "+dir+": is a directory") {
		t.Errorf("with DASHBOARD: %v", got)
	}
	c.DashboardTokenFile = "-"
	if got := c.CheckFiles([]probe.Mode{probe.ModeTCP}); len(got) != 2 {
		t.Errorf("DASHBOARD_TOKEN_FILE \"-\": %v", got)
	}
}

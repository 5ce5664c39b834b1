package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// refuseTimeout bounds how long a daemon may take to refuse a file that is not a
// regular file: it has nothing to wait for.
const refuseTimeout = 5 * time.Second

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSpecialFilesRefusedAtStart: a HISTORY_FILE that is a FIFO nobody reads, an
// IGNORE_FILE that is /dev/zero, and a config file that is a FIFO each make the daemon
// exit at once with the configuration error status (3) and a line naming the file
// (and the key), where it used to block for ever or eat memory; check-config says the
// same and exits 3 as well.
func TestSpecialFilesRefusedAtStart(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, f files) (conf string)
		want  func(f files) string
	}{
		{"HISTORY_FILE FIFO", func(t *testing.T, f files) string {
			f.write(t, nil)
			mkfifo(t, f.History)
			return f.Conf
		}, func(f files) string { return "HISTORY_FILE: open " + f.History + ": is a FIFO, not a regular file" }},
		{"IGNORE_FILE /dev/zero", func(t *testing.T, f files) string {
			f.write(t, nil, testnet.Setting{Key: "IGNORE_FILE", Value: "/dev/zero"})
			return f.Conf
		}, func(f files) string { return "IGNORE_FILE: open /dev/zero: is a character device, not a regular file" }},
		{"config FIFO", func(t *testing.T, f files) string {
			mkfifo(t, f.Conf)
			return f.Conf
		}, func(f files) string { return "config: open " + f.Conf + ": is a FIFO, not a regular file" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFiles(t)
			conf := tt.setup(t, f)
			want := tt.want(f)

			start := time.Now()
			d := p.Start(t, p.Defended, daemonBin, "-c", conf, "-tcp")
			select {
			case <-d.Done():
			case <-time.After(refuseTimeout):
				t.Fatalf("the daemon still runs %v after start", refuseTimeout)
			}
			t.Logf("daemon exited after %v: %v", time.Since(start).Round(time.Millisecond), d.Err())
			if code := exitCode(d.Err()); code != 3 {
				t.Errorf("exit status %d (%v), want 3", code, d.Err())
			}
			if len(d.Matching(0, want)) == 0 {
				t.Errorf("no line says %q:\n%s", want, d.String())
			}
			if hasMsg(d.Log, 0, Ready) {
				t.Errorf("said %q", Ready)
			}

			ctx, cancel := context.WithTimeout(context.Background(), refuseTimeout)
			defer cancel()
			out, err := exec.CommandContext(ctx, daemonBin, "check-config", "-c", conf, "-tcp").CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("check-config still runs after %v", refuseTimeout)
			}
			if code := exitCode(err); code != 3 {
				t.Errorf("check-config: exit status %d (%v), want 3", code, err)
			}
			if !strings.Contains(string(out), want) {
				t.Errorf("check-config does not say %q:\n%s", want, out)
			}
		})
	}
}

// TestSpecialIgnoreReload: IGNORE_FILE replaced by a FIFO (which nobody writes), then
// SIGHUP: the reload is rejected at once with an error naming the key and the file,
// the daemon keeps running with the old ignore set in force, and SIGTERM stops it
// promptly (the reload used to wait on the FIFO for ever, and SIGTERM with it).
func TestSpecialIgnoreReload(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, []string{p.ScanV4.String()}, testnet.Setting{Key: "TCP_PORTS", Value: "143"})
	d := startOurs(t, p, f, "tcp")

	mkfifo(t, f.Ignore)
	mark := d.Mark()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := "IGNORE_FILE: open " + f.Ignore + ": is a FIFO, not a regular file"
	t.Logf("reload error logged: %s", d.WaitForSince(t, mark, want, eventTimeout))
	d.WaitForSince(t, mark, "reload rejected, the running configuration stays in force", eventTimeout)
	if d.Exited() {
		t.Fatal("daemon exited on a FIFO ignore file")
	}

	// The old ignore set is in force: the ignored scanner leaves no trace, a sentinel
	// sent after it does.
	sentinel, _ := p.ExtraScanner(t, 3)
	mark = d.Mark()
	hit(t, p, p.ScanV4, p.DefV4, 143)
	hit(t, p, sentinel, p.DefV4, 143)
	waitMsg(t, d.Log, mark, connectMsg(sentinel, "TCP", 143))
	time.Sleep(200 * time.Millisecond)
	if hasMsg(d.Log, mark, connectMsg(p.ScanV4, "TCP", 143)) {
		t.Errorf("the ignored host was acted on after the rejected reload")
	}

	start := time.Now()
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(refuseTimeout):
		t.Fatalf("still running %v after SIGTERM", refuseTimeout)
	}
	t.Logf("exited %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), d.Err())
	if err := d.Err(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestSystemdNotify: started as systemd starts a Type=notify service, the daemon says
// READY=1 only once it is listening, RELOADING=1 and READY=1 around a SIGHUP reload,
// STOPPING=1 on SIGTERM, and feeds the watchdog from its main loop.
func TestSystemdNotify(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil)
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q", want)
				}
				if strings.HasPrefix(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q from the daemon", want)
			}
		}
	}
	cmd := p.Exec(p.Defended, daemonBin, "-c", f.Conf, "-tcp")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000")
	d := testnet.StartDaemon(t, cmd)
	ready := next("READY=1")
	// The daemon writes the line before it sends READY=1; the line reaches the test
	// through a pipe, the datagram directly, so it may trail by a moment.
	d.WaitFor(t, Ready, 2*time.Second)
	if !strings.Contains(ready, "STATUS=") {
		t.Errorf("no STATUS with READY: %q", ready)
	}
	next("WATCHDOG=1") // every second with a 2 s watchdog
	d.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	d.WaitFor(t, "adminalert: Configuration reloaded.", 5*time.Second)
	d.Signal(syscall.SIGTERM)
	next("STOPPING=1")
}

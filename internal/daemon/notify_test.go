package daemon

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listenNotify is a stand-in for systemd's notification socket.
func listenNotify(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifier(t *testing.T) {
	c, path := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	n := newNotifier()
	defer n.close()
	if n.watchdog != 15*time.Second {
		t.Errorf("watchdog keep-alive every %v, want half of WATCHDOG_USEC", n.watchdog)
	}
	n.ready("2 detections")
	if got := readNotify(t, c); got != "READY=1\nSTATUS=2 detections" {
		t.Errorf("ready sent %q", got)
	}
	n.reloading()
	if got := readNotify(t, c); len(got) < 28 || got[:27] != "RELOADING=1\nMONOTONIC_USEC=" {
		t.Errorf("reloading sent %q", got)
	}
	n.alive()
	if got := readNotify(t, c); got != "WATCHDOG=1" {
		t.Errorf("alive sent %q", got)
	}
}

func TestNotifierOffWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier()
	n.ready("x") // must not panic or block
	if n.conn != nil || n.watchdog != 0 {
		t.Fatal("a notifier without NOTIFY_SOCKET is active")
	}
	// A watchdog meant for another process is not ours to feed.
	_, path := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(1))
	if n := newNotifier(); n.watchdog != 0 {
		t.Errorf("fed the watchdog of pid 1")
	}
}

package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's readiness protocol: one datagram per state change to the
// socket in $NOTIFY_SOCKET (READY=1 once the sensors are up, RELOADING=1 and READY=1
// around a reload, STOPPING=1, STATUS= lines, WATCHDOG=1 keep-alives). Without
// $NOTIFY_SOCKET (not started by systemd with Type=notify) it does nothing. A failed
// send is ignored: the protocol is advisory and detection must not depend on it.
type notifier struct {
	conn *net.UnixConn
	// watchdog is how often to send WATCHDOG=1 (half of $WATCHDOG_USEC); 0: never.
	watchdog time.Duration
}

func newNotifier() *notifier {
	n := &notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return n
	}
	// An abstract socket is given with a leading '@', which Go's net package reads the
	// same way.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return n
	}
	n.conn = conn
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond / 2
		}
	}
	return n
}

func (n *notifier) send(state string) {
	if n.conn != nil {
		n.conn.Write([]byte(state))
	}
}

func (n *notifier) ready(status string)  { n.send("READY=1\nSTATUS=" + status) }
func (n *notifier) status(status string) { n.send("STATUS=" + status) }
func (n *notifier) stopping()            { n.send("STOPPING=1") }

// reloading says a reload began; MONOTONIC_USEC lets newer systemd versions match it
// with the READY=1 that ends it.
func (n *notifier) reloading() {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
}

func (n *notifier) alive() { n.send("WATCHDOG=1") }

func (n *notifier) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}

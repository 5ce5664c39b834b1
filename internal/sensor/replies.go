package sensor

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/fifo"
)

// A local UDP client on a watched port (ntpdate from port 123, a resolver bound to a
// low port) may close its socket a few microseconds after the answer arrives, before
// the sensor has looked at the listening sockets: the socket check alone would report
// the server as a scanner. So the sensor also sees the datagrams this host sends from
// watched UDP ports, and a datagram coming back from the same remote address and port
// to the same local one within replyWindow is an answer, not a probe, as for a
// stateful firewall.
const (
	// replyWindow is how long after a datagram was sent its answers are expected:
	// the Linux conntrack default for UDP (nf_conntrack_udp_timeout).
	replyWindow = 30 * time.Second
	// replyFlows bounds the memory of sent datagrams; the oldest flow is forgotten.
	replyFlows = 4096
	// replySkew tolerates answers stamped slightly before their question (timestamps
	// of outgoing and incoming packets are taken at different points in the kernel).
	replySkew = time.Second
)

type flow struct{ local, remote netip.AddrPort }

// replies remembers recently sent UDP datagrams. It is safe for concurrent use (one
// capture goroutine per interface).
type replies struct {
	any   atomic.Bool // set once a datagram was sent: until then, no locking per packet
	mu    sync.Mutex
	flows *fifo.Map[flow, int64] // → unix nanoseconds of the last datagram sent
}

func newReplies() *replies {
	return &replies{flows: fifo.New[flow, int64](replyFlows)}
}

// sent records a datagram from local to remote at time at.
func (r *replies) sent(local, remote netip.AddrPort, at time.Time) {
	r.mu.Lock()
	r.flows.Set(flow{local, remote}, at.UnixNano())
	r.mu.Unlock()
	r.any.Store(true)
}

// answers reports whether a datagram from remote to local at time at answers one
// sent within replyWindow before it.
func (r *replies) answers(local, remote netip.AddrPort, at time.Time) bool {
	if !r.any.Load() {
		return false
	}
	r.mu.Lock()
	t, ok := r.flows.Get(flow{local, remote})
	r.mu.Unlock()
	d := at.UnixNano() - t
	return ok && d >= -int64(replySkew) && d <= int64(replyWindow)
}

package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestFleetDebianServer runs the fleet against the nats-server an admin gets from
// Debian's own package (2.9 on bookworm: no per-message TTL, single filter subjects),
// on loopback: a ban, its unblock, and a host cut off catching up.
func TestFleetDebianServer(t *testing.T) {
	testnet.Require(t, "nats-server")
	port := freePort(t)
	cmd := exec.Command("nats-server", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	eventually(t, within, "nats-server did not start", func() bool {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	px := newProxy(t, fmt.Sprintf("127.0.0.1:%d", port))
	a, b := newHost(t, "a", []string{url}), newHost(t, "b", []string{px.url()})
	eventually(t, within, "not every host linked", all([]*host{a, b}, func(h *host) bool { return h.caughtUp.Load() >= 1 }))

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	str, err := js.Stream(context.Background(), "PORTSENTRY_BANS")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server %s, stream per-message TTL %v", nc.ConnectedServerVersion(), str.CachedInfo().Config.AllowMsgTTL)

	x, y := netip.MustParsePrefix("203.0.113.70/32"), netip.MustParsePrefix("203.0.113.71/32")
	a.block(t, x, time.Hour)
	eventually(t, within, "the ban did not reach b", func() bool { return b.holds(x, "a") })
	px.cut()
	eventually(t, within, "b did not notice the cut", func() bool { return !b.a.streamOK.Load() })
	if _, err := a.m.Unblock(x); err != nil {
		t.Fatal(err)
	}
	a.block(t, y, time.Hour)
	px.restore()
	eventually(t, within, "b did not catch up", func() bool { return b.holds(y, "a") && !b.has(x) })
}

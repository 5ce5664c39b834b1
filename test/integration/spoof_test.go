package integration

import (
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestGatewayIsNeverActedOn: a spoofed stealth probe "from" the defended host's default
// gateway (IPv4 and IPv6) must not get it recorded or blocked, however it is sent, and
// the gateway is followed live: a gateway configured after the daemon started is
// protected too (SPEC §8).
func TestGatewayIsNeverActedOn(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	f.write(t, nil, f.blocking()...)
	gw4, gw6 := at.addr(t, 61, false), at.addr(t, 61, true)
	p.Run(t, p.Defended, "ip", "route", "add", "default", "via", gw4.String())
	d := startOurs(t, p, f, "stcp")
	// The IPv6 default route appears only now; the daemon re-reads routes every 10 s.
	p.Run(t, p.Defended, "ip", "-6", "route", "add", "default", "via", gw6.String())
	time.Sleep(11 * time.Second)

	for _, gw := range []struct {
		a  netip.Addr
		v6 bool
	}{{gw4, false}, {gw6, true}} {
		def, _ := family(p, gw.v6)
		injectTCP(t, p, gw.a, def, 143, testnet.TCPSyn)
		// A probe from an ordinary address right after shows the daemon was listening.
		other := at.addr(t, 62, gw.v6)
		injectTCP(t, p, other, def, 143, testnet.TCPSyn)
		waitMsg(t, d.Log, 0, stealthMsg(scanSYN, other, 143))
	}
	time.Sleep(settle)
	noMentions(t, d.Log, 0, "a spoofed probe from the gateway", gw4, gw6)
	for _, route := range blackholes(t, p) {
		if route == gw4.String() || route == gw6.String() {
			t.Errorf("gateway blackholed: %s", route)
		}
	}
}

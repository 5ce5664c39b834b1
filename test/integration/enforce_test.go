package integration

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// repairWithin is how long a ban lifted behind the daemon's back may stay lifted: the
// manager reconciles every 5 s.
const repairWithin = 8 * time.Second

// TestKernelRepaired is the admin restarting nftables.service (`nft flush ruleset`), or
// deleting the table or one element by hand, and someone adding an element to the
// daemon's set: each time, with no new probe, the kernel is back to what the journal
// says within seconds, the repair is logged, and the banned scanner stays refused.
func TestKernelRepaired(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings()...)
	testnet.Serve(p.Listen(t, p.Defended, "tcp", ":8080"), "hello")
	d := startOurs(t, p, f, "tcp")
	hit(t, p, p.ScanV4, p.DefV4, 143)
	banned := func() (bool, string) {
		e := nftElements(t, p)
		return containsElem(e, p.ScanV4), fmt.Sprint(e)
	}
	testnet.Eventually(t, 5*time.Second, banned)
	other, _ := p.ExtraScanner(t, 42)

	for _, c := range []struct {
		what string
		cmd  []string
	}{
		{"nft flush ruleset", []string{"nft", "flush", "ruleset"}},
		{"nft delete table", []string{"nft", "delete", "table", "inet", "portsentry"}},
		{"nft delete element", []string{"nft", "delete", "element", "inet", "portsentry", "ban4", "{ " + p.ScanV4.String() + " }"}},
	} {
		mark := d.Mark()
		p.Run(t, p.Defended, c.cmd[0], c.cmd[1:]...)
		if ok, e := banned(); ok {
			t.Fatalf("%s: the ban is still there: %v", c.what, e)
		}
		testnet.Eventually(t, repairWithin, banned)
		d.WaitForSince(t, mark, "1 bans of the journal were missing from the system and have been restored", eventTimeout)
		if _, err := testnet.Connect(p.Scanner, p.ScanV4, netip.AddrPortFrom(p.DefV4, 8080), time.Second); err == nil {
			t.Errorf("%s: the banned scanner connects after the repair", c.what)
		}
	}

	mark := d.Mark()
	p.Run(t, p.Defended, "nft", "add", "element", "inet", "portsentry", "ban4", "{ "+other.String()+" }")
	testnet.Eventually(t, repairWithin, func() (bool, string) {
		e := nftElements(t, p)
		return !containsElem(e, other), fmt.Sprint(e)
	})
	d.WaitForSince(t, mark, "1 entries the journal does not hold were removed", eventTimeout)
	if _, err := testnet.Connect(p.Scanner, other, netip.AddrPortFrom(p.DefV4, 8080), 3*time.Second); err != nil {
		t.Errorf("a host the journal does not hold is still blocked: %v", err)
	}
	ctl := exec.Command(daemonBin, "status", "-json", "-socket", filepath.Join(f.Dir, "control.sock"))
	if out, err := ctl.CombinedOutput(); err != nil || !strings.Contains(string(out), `"backend_restored": 3`) ||
		!strings.Contains(string(out), `"backend_removed": 1`) {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// TestTwoProcessesKeepTheirBans is Debian's layout: -tcp and -udp as two daemons on one
// host. Each has its own journal and its own table; both ban the same host; an unblock
// in one lifts only its own ban, and the other's keeps the host out.
func TestTwoProcessesKeepTheirBans(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings()...)
	testnet.Serve(p.Listen(t, p.Defended, "tcp", ":8080"), "hello")
	startOurs(t, p, f, "tcp")
	second := startOurs(t, p, f, "udp")
	second.WaitFor(t, "using "+filepath.Join(f.Dir, "portsentry.bans.udp"), 5*time.Second)
	sock := filepath.Join(f.Dir, "control.sock")
	ctl := func(socket string, args ...string) string {
		t.Helper()
		out, err := exec.Command(daemonBin, append(args, "-socket", socket)...).CombinedOutput()
		if err != nil {
			t.Fatalf("portsentry %s -socket %s: %v\n%s", strings.Join(args, " "), socket, err, out)
		}
		return string(out)
	}
	host, _ := p.ExtraScanner(t, 43)
	ctl(sock, "block", host.String(), "2h")
	ctl(sock+".udp", "block", host.String(), "1h")
	for _, table := range []string{"portsentry", "portsentry_udp"} {
		if e := nftTableElements(t, p, table); !containsElem(e, host) {
			t.Fatalf("table %s lacks %s: %v", table, host, e)
		}
	}
	ctl(sock, "unblock", host.String())
	time.Sleep(6 * time.Second) // a reconciliation of each process
	if e := nftTableElements(t, p, "portsentry"); containsElem(e, host) {
		t.Errorf("unblocked %s is still in table portsentry: %v", host, e)
	}
	if e := nftTableElements(t, p, "portsentry_udp"); !containsElem(e, host) {
		t.Errorf("the -udp process's ban on %s was lifted by the -tcp process: %v", host, e)
	}
	if out := ctl(sock+".udp", "list"); !strings.Contains(out, host.String()) {
		t.Errorf("the -udp process no longer lists %s:\n%s", host, out)
	}
	if _, err := testnet.Connect(p.Scanner, host, netip.AddrPortFrom(p.DefV4, 8080), time.Second); err == nil {
		t.Errorf("%s connects while the -udp process bans it", host)
	}
}

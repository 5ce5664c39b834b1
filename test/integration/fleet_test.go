package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestFleetAcrossHosts: two defended hosts and Debian's nats-server in a third
// namespace both reach; a scan of host A gets the scanner into host B's nftables set,
// with A as its origin in `portsentry list`; an unblock made on A while B is cut off
// from NATS reaches B when its link returns.
func TestFleetAcrossHosts(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "nats-server")
	pa, pb := testnet.NewPair(t), testnet.NewPair(t)
	hub, _ := testnet.NewNS(t, "psn")
	pid := os.Getpid() % 10000
	link := func(p *testnet.Pair, i int) (hubAddr, ifName string) {
		ifName, peer := fmt.Sprintf("psf%dh%d", pid, i), fmt.Sprintf("psf%dn%d", pid, i)
		for _, args := range [][]string{
			{"link", "add", ifName, "netns", p.Defended, "type", "veth", "peer", "name", peer, "netns", hub},
			{"-n", p.Defended, "addr", "add", fmt.Sprintf("198.19.%d.2/24", i), "dev", ifName},
			{"-n", hub, "addr", "add", fmt.Sprintf("198.19.%d.1/24", i), "dev", peer},
			{"-n", p.Defended, "link", "set", ifName, "up"},
			{"-n", hub, "link", "set", peer, "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
		return fmt.Sprintf("198.19.%d.1", i), ifName
	}
	hubA, _ := link(pa, 1)
	hubB, ifB := link(pb, 2)
	exec.Command("ip", "-n", hub, "link", "set", "lo", "up").Run()
	nats := exec.Command("ip", "netns", "exec", hub, "nats-server", "-js", "-p", "4222", "-sd", t.TempDir())
	if err := nats.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nats.Process.Kill(); nats.Wait() })

	start := func(p *testnet.Pair, name, server string) (files, *testnet.Daemon) {
		f := newFiles(t)
		f.write(t, nil, nftSettings(testnet.Setting{Key: "FLEET_NATS", Value: "nats://" + server + ":4222"},
			testnet.Setting{Key: "FLEET_NAME", Value: name})...)
		d := startOurs(t, p, f, "tcp")
		d.WaitFor(t, func(s string) bool { return strings.Contains(s, "fleet: connected to NATS") }, 30*time.Second)
		return f, d
	}
	fa, _ := start(pa, "hosta", hubA)
	fb, db := start(pb, "hostb", hubB)

	hit(t, pa, pa.ScanV4, pa.DefV4, 143)
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		e := nftElements(t, pa)
		return containsElem(e, pa.ScanV4), fmt.Sprint(e)
	})
	inA := time.Now()
	testnet.Eventually(t, 10*time.Second, func() (bool, string) {
		e := nftElements(t, pb)
		return containsElem(e, pa.ScanV4), fmt.Sprint(e)
	})
	t.Logf("in host B's set %v after host A's (polling with nft included)", time.Since(inA).Round(time.Millisecond))
	if out := ctl(t, "list", filepath.Join(fb.Dir, "control.sock")); !strings.Contains(out, "from hosta") {
		t.Errorf("host B's list does not name the origin:\n%s", out)
	}

	mark := db.Mark()
	pb.Run(t, pb.Defended, "ip", "link", "set", ifB, "down")
	ctl(t, "unblock", filepath.Join(fa.Dir, "control.sock"), pa.ScanV4.String())
	time.Sleep(time.Second) // the unblock is in the stream; B cannot have it
	if !containsElem(nftElements(t, pb), pa.ScanV4) {
		t.Fatal("host B lifted the ban while cut off")
	}
	pb.Run(t, pb.Defended, "ip", "link", "set", ifB, "up")
	testnet.Eventually(t, 60*time.Second, func() (bool, string) {
		e := nftElements(t, pb)
		return !containsElem(e, pa.ScanV4), fmt.Sprint(e)
	})
	t.Logf("host B's log since the cut:\n%s", strings.Join(db.Since(mark), "\n"))
}

// ctl runs an operator command against a daemon's control socket.
func ctl(t *testing.T, cmd, socket string, args ...string) string {
	t.Helper()
	out, err := exec.Command(daemonBin, append([]string{cmd, "-socket", socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("portsentry %s: %v: %s", cmd, err, out)
	}
	return string(out)
}

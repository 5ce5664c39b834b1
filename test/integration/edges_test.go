package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestRouteBanNotEnforcedSaysSo: with BLOCK_BACKEND="route" and a route that is not
// ours already holding the scanner's address (a unicast host route), the daemon leaves
// that route alone and says the truth: the ban is recorded but not enforced and the
// host not blocked, never "has been banned via route"; `portsentry list` and
// `portsentry -json status` (the flag before the subcommand) say the same, and the
// scanner still gets through.
func TestRouteBanNotEnforcedSaysSo(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143"}, testnet.Setting{Key: "BLOCK_TCP", Value: "1"},
		testnet.Setting{Key: "BLOCK_BACKEND", Value: "route"},
		testnet.Setting{Key: "KILL_ROUTE", Value: ""}, testnet.Setting{Key: "KILL_HOSTS_DENY", Value: ""})
	p.Run(t, p.Defended, "ip", "route", "add", p.ScanV4.String(), "dev", p.DefIf, "proto", "static")
	svc := p.Listen(t, p.Defended, "tcp", ":8080")
	testnet.Serve(svc, "hello")
	d := startOurs(t, p, f, "tcp")

	hit(t, p, p.ScanV4, p.DefV4, 143)
	why := "a unicast route that is not ours (proto static, metric 0) holds the prefix and is left alone: the host is not blocked"
	want := fmt.Sprintf("attackalert: Host %s/32: ban recorded for 1h0m0s (offence 1) but not enforced by route: %s", p.ScanV4, why)
	waitMsg(t, d.Log, 0, want)
	if got := d.Matching(0, "has been banned via"); len(got) > 0 {
		t.Errorf("an unenforced ban logged as enforced: %q", got)
	}
	if got := p.Run(t, p.Defended, "ip", "route", "show", p.ScanV4.String()); !strings.Contains(got, "proto static") || strings.Contains(got, "blackhole") {
		t.Errorf("the route not ours was changed: %q", got)
	}
	if _, err := testnet.Connect(p.Scanner, p.ScanV4, netip.AddrPortFrom(p.DefV4, 8080), dialTimeout); err != nil {
		t.Errorf("the scanner no longer gets through, though nothing blocks it: %v", err)
	}

	sock := filepath.Join(f.Dir, "control.sock")
	out, err := exec.Command(daemonBin, "list", "-socket", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("not enforced: %s: %s\n", p.ScanV4, why)) {
		t.Errorf("portsentry list: %v\n%s", err, out)
	}
	out, err = exec.Command(daemonBin, "-json", "status", "-socket", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"not_enforced_bans": 1`) || !strings.Contains(string(out), `"backend": "route"`) {
		t.Errorf("portsentry -json status: %v\n%s", err, out)
	}
}

// TestBuildIsVersioned: the daemon the tests built carries the version make build
// stamps (scripts/version.sh: the changelog's, plus the commit), not "dev".
func TestBuildIsVersioned(t *testing.T) {
	needDaemon(t)
	if os.Getenv("PORTSENTRY_BIN") != "" {
		t.Skip("PORTSENTRY_BIN: a binary built elsewhere")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/version.sh: %v", err)
	}
	out, err := exec.Command(daemonBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "portsentry "+strings.TrimSpace(string(want))+" ") {
		t.Errorf("portsentry version: %v %q, want version %q", err, out, want)
	}
}

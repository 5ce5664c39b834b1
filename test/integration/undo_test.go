package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// stockUndo are Debian's stock KILL_ROUTE and KILL_HOSTS_DENY (left as Debian's file
// has them) with nftables, a KILL_RUN_CMD, and the undo keys of the packaged config.
func stockUndo(f files, extra ...testnet.Setting) []testnet.Setting {
	return append([]testnet.Setting{
		{Key: "BLOCK_TCP", Value: "1"},
		{Key: "BLOCK_UDP", Value: "1"},
		{Key: "BLOCK_BACKEND", Value: "nftables"},
		{Key: "KILL_RUN_CMD", Value: "/bin/echo run $TARGET$ $PORT$ $MODE$ >> " + f.CmdOut},
		{Key: "KILL_ROUTE_UNDO", Value: "/sbin/route del -host $TARGET$ reject"},
		{Key: "KILL_RUN_CMD_UNDO", Value: "/bin/echo undo $TARGET$ $PORT$ $MODE$ >> " + f.CmdOut},
	}, extra...)
}

// routesTo lists the defended namespace's routes to exactly a (any type: route's
// "reject" makes an unreachable one).
func routesTo(t *testing.T, p *testnet.Pair, a netip.Addr) string {
	t.Helper()
	fam := "-4"
	if a.Is6() {
		fam = "-6"
	}
	return strings.TrimSpace(p.Run(t, p.Defended, "ip", fam, "route", "show", "to", "exact", netip.PrefixFrom(a, a.BitLen()).String()))
}

// waitNoted waits until the ban journal records that the classic commands ran for a:
// the record follows them by a moment.
func waitNoted(t *testing.T, f files, a netip.Addr) {
	t.Helper()
	testnet.Eventually(t, eventTimeout, func() (bool, string) {
		data, _ := os.ReadFile(filepath.Join(f.Dir, "portsentry.bans"))
		return strings.Contains(string(data), `"classic":[{"addr":"`+a.String()+`"`), string(data)
	})
}

// TestLiftUndoesClassic: with Debian's stock KILL_ROUTE and KILL_HOSTS_DENY, the undo
// keys and nftables (or the classic backend), a ban's end (an operator's unblock after a daemon restart, or
// BAN_TIME) removes the nft element, the route and our hosts.deny line, runs
// KILL_RUN_CMD_UNDO, and the scanner connects again. The admin's own lines stay, the
// identical-looking one for a host the admin denied before included, and it is not
// written a second time.
func TestLiftUndoesClassic(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "/sbin/route")
	for _, c := range []struct{ how, backend string }{{"unblock", "nftables"}, {"expiry", "nftables"}, {"unblock", "classic"}} {
		how := c.how
		t.Run(how+"/"+c.backend, func(t *testing.T) {
			t.Parallel()
			p := testnet.NewPair(t)
			f := newFiles(t)
			denied, _ := p.ExtraScanner(t, 43) // the admin's own line names it
			admin := fmt.Sprintf("# the admin's\nsshd: 192.0.2.1\nALL: %s : DENY\n", denied)
			writeFile(t, f.HostsDeny, admin)
			banTime := "3600"
			if how == "expiry" {
				banTime = "4"
			}
			f.write(t, nil, stockUndo(f, testnet.Setting{Key: "BAN_TIME", Value: banTime}, testnet.Setting{Key: "BLOCK_BACKEND", Value: c.backend})...)
			svc := p.Listen(t, p.Defended, "tcp4", ":8080")
			testnet.Serve(svc, "hello")
			d := startOurs(t, p, f, "tcp")
			s := p.ScanV4
			for _, a := range []netip.Addr{s, denied} {
				hit(t, p, a, p.DefV4, 143)
				waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "/sbin/route add -host %s reject"`, a, a))
			}
			want := admin + fmt.Sprintf("ALL: %s : DENY\n", s)
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				got, _ := os.ReadFile(f.HostsDeny)
				return string(got) == want, fmt.Sprintf("hosts.deny:\n%s\nwant:\n%s", got, want)
			})
			waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: Host %s is already denied in %s with string: "ALL: %s : DENY"; not added again`, denied, f.HostsDeny, denied))
			if r := routesTo(t, p, s); !strings.HasPrefix(r, "unreachable "+s.String()) {
				t.Fatalf("no reject route for %s: %q", s, r)
			}
			if e := nftElements(t, p); containsElem(e, s) != (c.backend == "nftables") {
				t.Fatalf("nft elements with the %s backend: %v", c.backend, e)
			}
			if _, err := testnet.Connect(p.Scanner, s, netip.AddrPortFrom(p.DefV4, 8080), blockedDial); err == nil {
				t.Fatal("the banned scanner still connects")
			}

			waitNoted(t, f, s)
			switch how {
			case "unblock":
				// What was done is in the journal: a restarted daemon undoes it.
				if err := d.Stop(); err != nil {
					t.Fatal(err)
				}
				d = startOurs(t, p, f, "tcp")
				out, err := exec.Command(daemonBin, "unblock", "-socket", filepath.Join(f.Dir, "control.sock"), s.String()).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "unblocked "+s.String()) || strings.Contains(string(out), "stays") {
					t.Fatalf("unblock: %v\n%s", err, out)
				}
			case "expiry":
				d.WaitFor(t, "attackalert: Ban on "+s.String()+"/32 expired", 15*time.Second)
			}
			waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: Dropped route for host %s lifted using command: "/sbin/route del -host %s reject"`, s, s))
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				got, _ := os.ReadFile(f.HostsDeny)
				return routesTo(t, p, s) == "" && string(got) == admin,
					fmt.Sprintf("route %q; hosts.deny:\n%s\nwant the admin's file:\n%s", routesTo(t, p, s), got, admin)
			})
			if e := nftElements(t, p); containsElem(e, s) {
				t.Errorf("nft element for %s left: %v", s, e)
			}
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				cmds := testnet.ReadLines(f.CmdOut)
				return slices.Contains(cmds, fmt.Sprintf("undo %s 143 tcp", s)), strings.Join(cmds, "\n")
			})
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				_, err := testnet.Connect(p.Scanner, s, netip.AddrPortFrom(p.DefV4, 8080), time.Second)
				return err == nil, fmt.Sprint(err)
			})
			// Caught again: everything is done again, and is ours again to undo.
			mark := d.Mark()
			hit(t, p, s, p.DefV4, 143)
			waitMsg(t, d.Log, mark, fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: %s : DENY"`, s, s))
			waitMsg(t, d.Log, mark, fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "/sbin/route add -host %s reject"`, s, s))
			if got, _ := os.ReadFile(f.HostsDeny); string(got) != want {
				t.Errorf("hosts.deny after the second ban:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestLiftWithoutUndoSaysWhatStays: without KILL_ROUTE_UNDO the unblock answer and the
// log say that the route stays and which key would lift it, and check-config warns.
func TestLiftWithoutUndoSaysWhatStays(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings(testnet.Setting{Key: "KILL_ROUTE", Value: killRoute})...)
	if out, _ := exec.Command(daemonBin, "check-config", "-c", f.Conf, "-tcp").CombinedOutput(); !strings.Contains(string(out),
		"warning: the routes KILL_ROUTE adds stay when a ban ends (BAN_TIME, portsentry unblock): set KILL_ROUTE_UNDO to lift them") {
		t.Errorf("check-config:\n%s", out)
	}
	d := startOurs(t, p, f, "tcp")
	s := p.ScanV4
	hit(t, p, s, p.DefV4, 143)
	waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "/sbin/ip route add blackhole %s"`, s, s))
	stays := fmt.Sprintf("the KILL_ROUTE route for %s stays: set KILL_ROUTE_UNDO to lift it", s)
	waitNoted(t, f, s)
	out, err := exec.Command(daemonBin, "unblock", "-socket", filepath.Join(f.Dir, "control.sock"), s.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unblocked "+s.String()+" ") || !strings.Contains(string(out), "\n  "+stays+"\n") {
		t.Errorf("unblock: %v\n%s", err, out)
	}
	waitMsg(t, d.Log, 0, fmt.Sprintf("attackalert: Ban on %s/32 ended; %s", s, stays))
	if got := blackholes(t, p); !slices.Equal(got, []string{s.String()}) {
		t.Errorf("routes %q: the route without an undo must stay", got)
	}
}

// TestIPv6StockClassic: an IPv6 scanner against Debian's stock KILL_ROUTE (which cannot
// take IPv6) and KILL_HOSTS_DENY with nftables: the nft ban, the history line and one
// bracketed hosts.deny line that tcp_wrappers really denies; the route's failure is
// reported once, with a hint; later hits from the banned host run no command again and
// add no line.
func TestIPv6StockClassic(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "/sbin/route", "tcpdmatch")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, testnet.Setting{Key: "BLOCK_TCP", Value: "1"}, testnet.Setting{Key: "BLOCK_BACKEND", Value: "nftables"},
		testnet.Setting{Key: "KILL_RUN_CMD", Value: "/bin/echo run $TARGET$ $PORT$ $MODE$ >> " + f.CmdOut},
		testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"})
	d := startOurs(t, p, f, "stcp")
	s := p.ScanV6
	injectTCP(t, p, s, p.DefV6, 143, testnet.TCPSyn)
	waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: [%s] : DENY"`, s, s))
	d.WaitFor(t, "attackalert: ERROR: dropped route command failed for IPv6 host "+s.String(), eventTimeout)
	waitLines(t, f.CmdOut, 1)
	testnet.Eventually(t, eventTimeout, func() (bool, string) {
		e := nftElements(t, p)
		return containsElem(e, s), fmt.Sprint(e)
	})
	if got := parseRecords(t, waitLines(t, f.History, 1)); len(got) != 1 || got[0].Addr != s.String() {
		t.Errorf("history %+v", got)
	}
	// Later hits: already blocked, nothing runs again.
	for _, port := range []int{1080, 31337} {
		injectTCP(t, p, s, p.DefV6, port, testnet.TCPSyn)
	}
	waitMsg(t, d.Log, 0, stealthBlockedMsg(s))
	time.Sleep(settle)
	if got := testnet.ReadLines(f.HostsDeny); !slices.Equal(got, []string{"ALL: [" + s.String() + "] : DENY"}) {
		t.Errorf("hosts.deny %q", got)
	}
	if got := testnet.ReadLines(f.CmdOut); len(got) != 1 {
		t.Errorf("KILL_RUN_CMD ran %d times: %q", len(got), got)
	}
	if n := len(d.Matching(0, "dropped route command failed")); n != 1 {
		t.Errorf("the IPv6 route failure was reported %d times", n)
	}
	if len(d.Matching(0, `"ip route add blackhole $TARGET$" takes both families`)) != 1 {
		t.Errorf("no hint with the IPv6 route failure:\n%s", strings.Join(d.Matching(0, "route"), "\n"))
	}
	// tcp_wrappers reads the line as denying the scanner, and only it.
	for a, want := range map[netip.Addr]string{s: "denied", p.DefV6: "granted"} {
		out := p.Run(t, p.Defended, "sh", "-c", fmt.Sprintf("cd %s && touch hosts.allow && tcpdmatch -d sshd %s", f.Dir, a))
		if !strings.Contains(out, "access:   "+want) {
			t.Errorf("tcpdmatch %s:\n%s", a, out)
		}
	}
}

package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// startClassic writes nothing: f must already hold portsentry.conf (and the ignore
// file). It starts Debian's binary with f.Dir as /etc/portsentry.
func startClassic(t *testing.T, p *testnet.Pair, f files, mode string) *testnet.Classic {
	t.Helper()
	return testnet.RunClassic(t, p, f.Dir, mode)
}

// TestClassicOracle pins what Debian's PortSentry 1.2 actually does in the situations
// our daemon is compared against, so that a change of the oracle (or of the harness) is
// noticed, and documents the behaviour the SPEC's KEEP and FIX items refer to. It needs
// only the classic binary, not our daemon.
func TestClassicOracle(t *testing.T) {
	testnet.Require(t, testnet.ClassicBinary)

	// BLOCK_TCP="0": the first hit is recorded in history and blocked file (SPEC §4.6
	// KEEP) with "Ignoring TCP response", and the host then counts as blocked.
	t.Run("LogOnly", func(t *testing.T) {
		t.Parallel()
		p := testnet.NewPair(t)
		f := newFiles(t)
		f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080"})
		c := startClassic(t, p, f, "tcp")
		s := p.ScanV4
		hit(t, p, netip.Addr{}, p.DefV4, 143)
		hit(t, p, netip.Addr{}, p.DefV4, 1080)
		waitMsg(t, c.Log, 0, "attackalert: Host: "+s.String()+" is already blocked. Ignoring")
		want := []string{
			connectMsg(s, "TCP", 143),
			"attackalert: Ignoring TCP response per configuration file setting.",
			connectMsg(s, "TCP", 1080),
			"attackalert: Host: " + s.String() + " is already blocked. Ignoring",
		}
		if d := cmp.Diff(want, attackLines(c.Lines())); d != "" {
			t.Errorf("classic attackalert lines (-want +got):\n%s", d)
		}
		rec := []record{{s.String(), s.String(), 143, "TCP"}}
		if got := parseRecords(t, waitLines(t, f.History, 1)); !slices.Equal(got, rec) {
			t.Errorf("history %+v", got)
		}
		if got := parseRecords(t, waitLines(t, f.Blocked+".tcp", 1)); !slices.Equal(got, rec) {
			t.Errorf("blocked.tcp %+v", got)
		}
	})

	// BLOCK_TCP="1": hosts.deny, then KILL_ROUTE, then KILL_RUN_CMD (SPEC §4.5); every
	// macro replaced, in KILL_HOSTS_DENY too; KILL_RUN_CMD_FIRST="1" moves the command
	// first. Exit statuses are not looked at: /bin/false "has blocked" (SPEC §4 FIX).
	t.Run("Block", func(t *testing.T) {
		for _, first := range []bool{false, true} {
			t.Run(fmt.Sprintf("RunCmdFirst=%v", first), func(t *testing.T) {
				t.Parallel()
				p := testnet.NewPair(t)
				f := newFiles(t)
				settings := append(f.blocking(),
					testnet.Setting{Key: "TCP_PORTS", Value: "143"},
					testnet.Setting{Key: "KILL_HOSTS_DENY", Value: "ALL: $TARGET$ : $PORT$ $MODE$ : DENY"})
				if first {
					settings = append(settings, testnet.Setting{Key: "KILL_RUN_CMD_FIRST", Value: "1"},
						testnet.Setting{Key: "KILL_ROUTE", Value: "/bin/false $TARGET$"})
				}
				f.write(t, nil, settings...)
				c := startClassic(t, p, f, "tcp")
				s := p.ScanV4.String()
				hit(t, p, netip.Addr{}, p.DefV4, 143)
				run := fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s 143 tcp >> %s"`, s, s, f.CmdOut)
				waitMsg(t, c.Log, 0, run)
				route := strings.ReplaceAll(killRoute, "$TARGET$", s)
				if first {
					route = "/bin/false " + s
				}
				want := []string{
					connectMsg(p.ScanV4, "TCP", 143),
					fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: %s : 143 tcp : DENY"`, s, s),
					fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "%s"`, s, route),
					run,
				}
				if first {
					want = []string{want[0], want[3], want[1], want[2]}
				}
				testnet.Eventually(t, eventTimeout, func() (bool, string) {
					got := attackLines(c.Lines())
					return cmp.Equal(want, got), cmp.Diff(want, got)
				})
				if got := waitLines(t, c.HostsDeny, 1); !slices.Equal(got, []string{"ALL: " + s + " : 143 tcp : DENY"}) {
					t.Errorf("hosts.deny %q", got)
				}
				wantRoutes := []string{s}
				if first {
					wantRoutes = nil
				}
				if got := blackholes(t, p); !slices.Equal(got, wantRoutes) {
					t.Errorf("routes %q, want %q", got, wantRoutes)
				}
				waitLines(t, f.History, 1)
			})
		}
	})

	// SCAN_TRIGGER="3": hits 1 and 2 leave no trace at all; the third acts.
	t.Run("Trigger", func(t *testing.T) {
		t.Parallel()
		p := testnet.NewPair(t)
		f := newFiles(t)
		f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"}, testnet.Setting{Key: "SCAN_TRIGGER", Value: "3"})
		c := startClassic(t, p, f, "tcp")
		for _, port := range []int{143, 1080, 31337} {
			hit(t, p, netip.Addr{}, p.DefV4, port)
		}
		waitMsg(t, c.Log, 0, connectMsg(p.ScanV4, "TCP", 31337))
		want := []string{connectMsg(p.ScanV4, "TCP", 31337), "attackalert: Ignoring TCP response per configuration file setting."}
		testnet.Eventually(t, eventTimeout, func() (bool, string) {
			got := attackLines(c.Lines())
			return cmp.Equal(want, got), cmp.Diff(want, got)
		})
	})

	// An ignored host leaves no trace: no log line of any kind, no history.
	t.Run("Ignore", func(t *testing.T) {
		t.Parallel()
		p := testnet.NewPair(t)
		f := newFiles(t)
		sentinel, _ := p.ExtraScanner(t, 3)
		f.write(t, []string{p.ScanV4.String()}, testnet.Setting{Key: "TCP_PORTS", Value: "143"})
		c := startClassic(t, p, f, "tcp")
		mark := c.Mark()
		hit(t, p, netip.Addr{}, p.DefV4, 143)
		hit(t, p, sentinel, p.DefV4, 143)
		waitMsg(t, c.Log, 0, connectMsg(sentinel, "TCP", 143))
		waitMsg(t, c.Log, 0, "attackalert: Ignoring TCP response per configuration file setting.")
		// The sentinel's lines prove classic was listening; the ignored host has none.
		for _, l := range c.Since(mark) {
			if strings.Contains(l, p.ScanV4.String()+"/") || strings.Contains(l, " "+p.ScanV4.String()+" ") {
				t.Errorf("classic logged for the ignored host: %q", l)
			}
		}
	})

	// A port bound by another process: classic logs "Going into listen mode" for it and
	// then a bind error, and reports hits on later ports under the skipped port's number
	// (SPEC §3 FIX). It only listens on IPv4 (SPEC §3 FIX).
	t.Run("PortInUse", func(t *testing.T) {
		t.Parallel()
		p := testnet.NewPair(t)
		busy := p.Listen(t, p.Defended, "tcp4", ":1080")
		testnet.Serve(busy, "busy\n")
		f := newFiles(t)
		f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"})
		c := startClassic(t, p, f, "tcp")
		want := []string{
			"adminalert: Going into listen mode on TCP port: 143",
			"adminalert: Going into listen mode on TCP port: 1080",
			"adminalert: ERROR: could not bind TCP socket: 1080. Attempting to continue",
			"adminalert: Going into listen mode on TCP port: 31337",
			testnet.ClassicReady,
		}
		if got := c.Lines()[1:6]; !slices.Equal(got, want) {
			t.Errorf("classic start-up with a busy port:\n%s", cmp.Diff(want, got))
		}
		hit(t, p, netip.Addr{}, p.DefV4, 31337)
		waitMsg(t, c.Log, 0, connectMsg(p.ScanV4, "TCP", 1080)) // sic: the port is 31337
		if got := parseRecords(t, waitLines(t, f.History, 1)); len(got) != 1 || got[0].Port != 1080 {
			t.Errorf("history %+v: classic's wrong-port defect not reproduced", got)
		}
		if _, err := testnet.Connect(p.Scanner, netip.Addr{}, netip.AddrPortFrom(p.DefV6, 143), dialTimeout); !isRefused(err) {
			t.Errorf("IPv6 connect to classic: %v, want connection refused (classic is IPv4 only)", err)
		}
	})

	// How classic reads TCP_PORTS lines (SPEC §2): the first of two lines wins, a tab
	// ends the value, an indented key is not seen, a missing closing quote is accepted,
	// a missing opening quote loses the value without any "Quotes missing" message, and
	// a longer key with the same prefix is not taken for it.
	t.Run("ConfigQuirks", func(t *testing.T) {
		const abort = "adminalert: ERROR: No TCP ports supplied in config file. Aborting"
		for _, tc := range []struct {
			name, lines string
			want        []string // listen lines, or the abort message
		}{
			{"FirstWins", "TCP_PORTS=\"143\"\nTCP_PORTS=\"1080\"", []string{"adminalert: Going into listen mode on TCP port: 143"}},
			{"TabEndsValue", "TCP_PORTS=\"143,\t1080\"", []string{"adminalert: Going into listen mode on TCP port: 143"}},
			{"Indented", "  TCP_PORTS=\"143\"", []string{"adminalert: ERROR: Could not read TCP_PORTS option from config file"}},
			{"NoClosingQuote", "TCP_PORTS=\"143", []string{"adminalert: Going into listen mode on TCP port: 143"}},
			{"NoOpeningQuote", "TCP_PORTS=143\"", []string{abort}},
			{"LongerKey", "TCP_PORTSX=\"1080\"\nTCP_PORTS=\"143\"", []string{"adminalert: Going into listen mode on TCP port: 143"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				p := testnet.NewPair(t)
				f := newFiles(t)
				conf := f.write(t, nil)
				lines := strings.Split(conf, "\n")
				for i, l := range lines {
					if strings.HasPrefix(l, "TCP_PORTS=") {
						lines[i] = tc.lines
					}
				}
				writeFile(t, f.Conf, strings.Join(lines, "\n"))
				c := testnet.StartClassic(t, p, f.Dir, "tcp")
				for _, w := range tc.want {
					waitMsg(t, c.Log, 0, w)
				}
				var got []string
				for _, m := range messages(c.Lines()) {
					if strings.Contains(m, "listen mode") || strings.Contains(m, "ERROR") {
						got = append(got, m)
					}
				}
				if !slices.Equal(got[:len(tc.want)], tc.want) || (len(got) > len(tc.want) && !strings.Contains(got[len(tc.want)], "could not go into PortSentry mode")) {
					t.Errorf("classic with %q:\n%s", tc.lines, strings.Join(got, "\n"))
				}
			})
		}
	})

	// SIGHUP is ignored: no reload, no log line, still running (SPEC §7).
	t.Run("SIGHUP", func(t *testing.T) {
		t.Parallel()
		p := testnet.NewPair(t)
		f := newFiles(t)
		f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143"})
		c := startClassic(t, p, f, "tcp")
		mark := c.Mark()
		if err := c.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		hit(t, p, netip.Addr{}, p.DefV4, 143)
		waitMsg(t, c.Log, mark, connectMsg(p.ScanV4, "TCP", 143))
		if !c.Running() {
			t.Fatal("classic died on SIGHUP")
		}
		if got := c.Since(mark); !strings.HasPrefix(got[0], "attackalert: Connect") {
			t.Errorf("classic logged something on SIGHUP: %q", got)
		}
		c.Stop()
		c.WaitFor(t, "adminalert: PortSentry is shutting down", eventTimeout)
	})
}

// attackLines returns the attackalert messages among lines, in order.
func attackLines(lines []string) []string {
	var out []string
	for _, m := range messages(lines) {
		if strings.HasPrefix(m, "attackalert:") {
			out = append(out, m)
		}
	}
	return out
}

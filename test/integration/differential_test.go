package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// diffIndex is the subnet both worlds of the differential test use: the two pairs are
// isolated from each other, so both daemons see exactly the same addresses.
const diffIndex = 250

// outcome is what one step does to one daemon.
type outcome int

const (
	nothing  outcome = iota // no detection (blackholed connect, or no listener)
	acts                    // detection and the full response
	repeated                // detection of a host that is already blocked
)

// step is one scan action of the fixed script, with the outcome expected from classic
// and from ours. The script is the same for both; where the expectations differ, the
// difference must be listed in intendedDiffs.
type step struct {
	from    string // scanner address key, see world.addr
	port    int
	classic outcome
	ours    outcome
}

// artefacts is everything compared after a run.
type artefacts struct {
	History, Blocked, HostsDeny, CmdOut []string // file lines (history-format ones without time)
	Attack                              []string // attackalert messages, sorted, unique
	Listen                              []string // "Going into listen mode" messages, sorted, unique
	Routes                              []string // blackhole routes in the defended namespace, sorted
}

// intended is a difference from classic that the SPEC asks for. Each one must show up
// exactly as listed; it is then removed before the rest is compared.
type intended struct {
	spec     string              // SPEC reference and reason
	onlyOurs map[string][]string // artefact name → lines only ours produces
}

// TestDifferentialClassic runs Debian's PortSentry 1.2 and ours with the same config
// (Debian's shipped file, paths in temp dirs, BLOCK_x=1 with a blackhole KILL_ROUTE,
// KILL_HOSTS_DENY and a KILL_RUN_CMD echo) against the same fixed list of connects and
// datagrams, in -tcp and in -udp mode, and compares history and blocked files (without
// the time fields), hosts.deny, the command output, the blackhole routes and the sets of
// attackalert and listen-mode log lines.
func TestDifferentialClassic(t *testing.T) {
	testnet.Require(t, testnet.ClassicBinary)
	needDaemon(t)
	v6 := func(host int) string { return fmt.Sprintf("2001:db8:%x::%x", diffIndex, host) }

	t.Run("tcp", func(t *testing.T) {
		t.Parallel()
		script := []step{
			{"a", 143, acts, acts},
			{"b", 1080, acts, acts},
			{"a", 31337, nothing, nothing}, // a is blackholed: the handshake cannot complete
			{"c", 12345, acts, acts},
			{"a6", 143, nothing, acts}, // classic does not listen on IPv6
		}
		a6 := v6(2)
		diffs := []intended{{
			spec: "SPEC §3 FIX: classic is IPv4 only; every mode must work for IPv6",
			onlyOurs: map[string][]string{
				"Attack": {
					connectMsg(netip.MustParseAddr(a6), "TCP", 143),
					fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: [%s] : DENY"`, a6, a6),
					fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "%s"`, a6, strings.ReplaceAll(killRoute, "$TARGET$", a6)),
					fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s 143 tcp >> $DIR/cmd.out"`, a6, a6),
				},
				"History":   {fmt.Sprintf("Host: %s/%s Port: 143 TCP Blocked", a6, a6)},
				"Blocked":   {fmt.Sprintf("Host: %s/%s Port: 143 TCP Blocked", a6, a6)},
				"HostsDeny": {fmt.Sprintf("ALL: [%s] : DENY", a6)},
				"CmdOut":    {a6 + " 143 tcp"},
				"Routes":    {a6},
			},
		}}
		differential(t, "tcp", script, diffs)
	})

	t.Run("udp", func(t *testing.T) {
		t.Parallel()
		script := []step{
			{"a", 513, acts, acts},
			{"a", 635, repeated, repeated}, // a blackhole route does not stop datagrams coming in
			{"b", 31337, acts, acts},
			{"u", 513, acts, acts}, // 198.18.250.21: not taken for .2 (nor the other way round)
			{"a6", 513, nothing, acts},
		}
		a6 := v6(2)
		diffs := []intended{{
			spec: "SPEC §3 FIX: classic is IPv4 only; every mode must work for IPv6",
			onlyOurs: map[string][]string{
				"Attack": {
					connectMsg(netip.MustParseAddr(a6), "UDP", 513),
					fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: [%s] : DENY"`, a6, a6),
					fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "%s"`, a6, strings.ReplaceAll(killRoute, "$TARGET$", a6)),
					fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s 513 udp >> $DIR/cmd.out"`, a6, a6),
				},
				"History":   {fmt.Sprintf("Host: %s/%s Port: 513 UDP Blocked", a6, a6)},
				"Blocked":   {fmt.Sprintf("Host: %s/%s Port: 513 UDP Blocked", a6, a6)},
				"HostsDeny": {fmt.Sprintf("ALL: [%s] : DENY", a6)},
				"CmdOut":    {a6 + " 513 udp"},
				"Routes":    {a6},
			},
		}}
		differential(t, "udp", script, diffs)
	})
}

// differential runs both daemons (in parallel, in two identical worlds) and compares.
func differential(t *testing.T, mode string, script []step, diffs []intended) {
	var classic, ours artefacts
	t.Run("run", func(t *testing.T) {
		t.Run("classic", func(t *testing.T) {
			t.Parallel()
			classic = runScript(t, "classic", mode, script)
		})
		t.Run("ours", func(t *testing.T) {
			t.Parallel()
			ours = runScript(t, "ours", mode, script)
		})
	})
	if t.Failed() {
		return
	}
	t.Logf("classic:\n%s", dump(classic))
	t.Logf("ours:\n%s", dump(ours))
	compareArtefacts(t, classic, ours, diffs)
}

// runScript sets up one world, runs one daemon in it, plays the script and collects the
// artefacts. which is "classic" or "ours".
func runScript(t *testing.T, which, mode string, script []step) artefacts {
	p := testnet.NewPair(t, testnet.WithIndex(diffIndex))
	addrs := map[string]netip.Addr{"a": p.ScanV4, "a6": p.ScanV6}
	addrs["b"], _ = p.ExtraScanner(t, 3)
	addrs["c"], _ = p.ExtraScanner(t, 4)
	addrs["u"], _ = p.ExtraScanner(t, 21)

	f := newFiles(t)
	// Debian's shipped file, paths in the temp dir, blocking with real actions.
	f.write(t, nil, f.blocking()...)

	var log *testnet.Log
	var stop func()
	hostsDeny := f.HostsDeny
	if which == "classic" {
		c := startClassic(t, p, f, mode)
		log, hostsDeny, stop = c.Log, c.HostsDeny, c.Stop
	} else {
		d := startOurs(t, p, f, mode)
		log, stop = d.Log, func() { d.Stop() }
	}
	acted := 0

	for i, s := range script {
		from := addrs[s.from]
		to := p.DefV4
		if from.Is6() {
			to = p.DefV6
		}
		want := s.ours
		if which == "classic" {
			want = s.classic
		}
		mark := log.Mark()
		proto := strings.ToUpper(mode)
		if mode == "tcp" {
			_, err := testnet.Connect(p.Scanner, from, netip.AddrPortFrom(to, uint16(s.port)), blockedDial)
			if (err == nil) != (want != nothing) {
				t.Logf("%s step %d (%s -> %d): connect error %v", which, i, from, s.port, err)
			}
		} else {
			sendUDP(t, p, from, to, s.port)
		}
		// Wait for the last line the expected outcome produces, so that blocks are in
		// place before the next step. A daemon that differs is not failed here: the
		// comparison below shows how.
		var last string
		switch want {
		case acts:
			acted++
			last = fmt.Sprintf("attackalert: External command run for host: %s using command:", from)
		case repeated:
			last = fmt.Sprintf("attackalert: Host: %s is already blocked. Ignoring", from)
		default:
			continue
		}
		if _, err := log.Await(mark, func(l string) bool { return strings.Contains(l, last) }, eventTimeout); err != nil {
			t.Logf("%s step %d (%s -> %s port %d): %v", which, i, from, proto, s.port, err)
		}
	}

	return collectArtefacts(t, p, f, mode, hostsDeny, which, acted, 0, log, stop,
		"adminalert: Going into listen mode")
}

// collectArtefacts gathers what a run left. Files are written after the log lines,
// so it first gives them (boundedly) time to hold `acted` records, then waits linger
// for anything reported that should not be, and stops the daemon so that its log is
// complete. Listen keeps the log messages starting with one of listen; attack and
// listen lines are compared as sets (in ours, lines of different hosts may interleave:
// one worker per host).
func collectArtefacts(t *testing.T, p *testnet.Pair, f files, mode, hostsDeny, which string, acted int,
	linger time.Duration, log *testnet.Log, stop func(), listen ...string) artefacts {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for time.Now().Before(deadline) {
		if len(testnet.ReadLines(f.History)) >= acted && len(testnet.ReadLines(f.Blocked+"."+mode)) >= acted &&
			len(testnet.ReadLines(f.CmdOut)) >= acted && len(testnet.ReadLines(hostsDeny)) >= acted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(linger)
	stop()
	if !log.WaitClosed(eventTimeout) {
		t.Logf("%s: log still open after stop", which)
	}
	var a artefacts
	a.Routes = blackholes(t, p)
	slices.Sort(a.Routes)
	a.History = stripTime(testnet.ReadLines(f.History))
	a.Blocked = stripTime(testnet.ReadLines(f.Blocked + "." + mode))
	a.HostsDeny = testnet.ReadLines(hostsDeny)
	a.CmdOut = testnet.ReadLines(f.CmdOut)
	for _, m := range messages(log.Lines()) {
		// The temp dir differs between the two runs; it is not behaviour.
		m = strings.ReplaceAll(m, f.Dir, "$DIR")
		switch {
		case strings.HasPrefix(m, "attackalert:"):
			a.Attack = append(a.Attack, m)
		case slices.ContainsFunc(listen, func(pre string) bool { return strings.HasPrefix(m, pre) }):
			a.Listen = append(a.Listen, m)
		}
	}
	slices.Sort(a.Attack)
	a.Attack = slices.Compact(a.Attack)
	slices.Sort(a.Listen)
	a.Listen = slices.Compact(a.Listen)
	return a
}

// fields lists the artefacts by name, for intended differences and reporting.
func (a *artefacts) fields() map[string]*[]string {
	return map[string]*[]string{
		"History": &a.History, "Blocked": &a.Blocked, "HostsDeny": &a.HostsDeny, "CmdOut": &a.CmdOut,
		"Attack": &a.Attack, "Listen": &a.Listen, "Routes": &a.Routes,
	}
}

func compareArtefacts(t *testing.T, classic, ours artefacts, diffs []intended) {
	t.Helper()
	of := ours.fields()
	for _, d := range diffs {
		for name, lines := range d.onlyOurs {
			f := of[name]
			for _, l := range lines {
				i := slices.Index(*f, l)
				if i < 0 {
					t.Errorf("intended difference (%s) not observed in %s: ours lacks %q", d.spec, name, l)
					continue
				}
				*f = slices.Delete(*f, i, i+1)
			}
		}
	}
	cf := classic.fields()
	for _, name := range []string{"History", "Blocked", "HostsDeny", "CmdOut", "Routes", "Attack", "Listen"} {
		if d := cmp.Diff(*cf[name], *of[name]); d != "" {
			t.Errorf("%s differs from classic (-classic +ours), beyond the intended differences:\n%s", name, d)
		}
	}
	if len(classic.History) == 0 {
		t.Error("classic recorded nothing: the harness is broken")
	}
}

func dump(a artefacts) string {
	var b strings.Builder
	f := a.fields()
	for _, name := range []string{"History", "Blocked", "HostsDeny", "CmdOut", "Routes", "Attack", "Listen"} {
		fmt.Fprintf(&b, "  %s:\n", name)
		for _, l := range *f[name] {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return b.String()
}

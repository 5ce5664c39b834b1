package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// startFlood starts a random-source flood from the scanner namespace to port on the
// defended host: count packets at one every interval µs (hping3 -i uN), so bounded in
// packets and, at the stated rate, in seconds; kind is hping3's packet option ("-S" for
// SYNs, "--udp"). The returned function waits for it.
func startFlood(t *testing.T, p *testnet.Pair, kind string, port, count, interval int) (wait func()) {
	t.Helper()
	testnet.Require(t, "hping3")
	cmd := p.Exec(p.Scanner, "hping3", "-q", "-n", "-c", strconv.Itoa(count), "-i", "u"+strconv.Itoa(interval),
		"--rand-source", kind, "-p", strconv.Itoa(port), p.DefV4.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestFloodHidesNoScanner: three real scanners sending FIN probes to five watched
// ports each, in the middle of a random-source SYN flood, are each logged and recorded
// and, when blocking, banned; the flood is reported while it lasts. With Debian's
// defaults (BAN_RATE 60, SCAN_TRIGGER 0) the flood spends the budget for single
// probes within milliseconds; a scanner's second probe ranks higher and is answered.
func TestFloodHidesNoScanner(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "hping3")
	for _, blocking := range []bool{false, true} {
		t.Run(map[bool]string{false: "log-only", true: "nftables"}[blocking], func(t *testing.T) {
			p := testnet.NewPair(t)
			at := newAttackers(p)
			f := newFiles(t)
			jsonLog := filepath.Join(f.Dir, "events.json")
			settings := []testnet.Setting{{Key: "JSON_LOG", Value: jsonLog}}
			if blocking {
				settings = nftSettings(settings...)
			}
			f.write(t, nil, settings...)
			d := startOurs(t, p, f, "stcp")
			wait := startFlood(t, p, "-S", 31337, 20000, 200)
			d.WaitFor(t, "attackalert: Possible spoofed flood started", 10*time.Second)
			var scanners []netip.Addr
			for n := 31; n <= 33; n++ {
				scanners = append(scanners, at.addr(t, n, false))
			}
			for _, port := range []int{1, 11, 15, 79, 111} {
				for _, s := range scanners {
					injectTCP(t, p, s, p.DefV4, port, testnet.TCPFin)
				}
			}
			for _, s := range scanners {
				testnet.Eventually(t, 5*time.Second, func() (bool, string) {
					return len(mentions(d.Log, 0, s)) > 0, "no detection of " + s.String()
				})
				if blocking {
					testnet.Eventually(t, 5*time.Second, func() (bool, string) {
						e := nftElements(t, p)
						return containsElem(e, s), fmt.Sprintf("%s not banned; %d elements", s, len(e))
					})
				}
			}
			testnet.Eventually(t, 5*time.Second, func() (bool, string) {
				hist := strings.Join(testnet.ReadLines(f.History), "\n")
				for _, s := range scanners {
					if !strings.Contains(hist, "/"+s.String()+" Port:") {
						return false, s.String() + " not in the history"
					}
				}
				return true, ""
			})
			wait()
			d.WaitFor(t, regexp.MustCompile(`Possible spoofed flood (continues|ended)`), 25*time.Second)
			data, _ := os.ReadFile(jsonLog)
			if !strings.Contains(string(data), `"kind":"flood"`) {
				t.Errorf("no flood event in JSON_LOG")
			}
		})
	}
}

// TestIPv6NeighbourIsBannedAlone: an IPv6 scanner on the defended host's own /64, with
// an IPv6 gateway and an ignored neighbour on it, is banned; the ban covers neither
// the host, nor the gateway, nor the neighbour, and a forged probe from the link-local
// network bans no /64 there either.
func TestIPv6NeighbourIsBannedAlone(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	gw := at.addr(t, 254, true)
	friend := at.addr(t, 200, true)
	p.Run(t, p.Defended, "ip", "-6", "route", "add", "default", "via", gw.String())
	f.write(t, []string{friend.String()}, nftSettings()...)
	d := startOurs(t, p, f, "stcp")
	scanner := at.addr(t, 40, true)
	injectTCP(t, p, scanner, p.DefV6, 143, testnet.TCPSyn)
	linkLocal := netip.MustParseAddr("fe80::1234")
	injectTCP(t, p, linkLocal, p.DefV6, 143, testnet.TCPSyn)
	var elems []string
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		elems = nftElements(t, p)
		return containsElem(elems, scanner) && containsElem(elems, linkLocal), fmt.Sprint(elems)
	})
	for _, a := range []netip.Addr{p.DefV6, gw, friend, netip.MustParseAddr("::1")} {
		if containsElem(elems, a) {
			t.Errorf("a ban covers protected %s: %v", a, elems)
		}
	}
	// The host's own link-local address is on fe80::/64 too.
	out := p.Run(t, p.Defended, "ip", "-6", "addr", "show", "dev", p.DefIf, "scope", "link")
	if m := regexp.MustCompile(`inet6 (fe80::[0-9a-f:]+)/64`).FindStringSubmatch(out); m != nil {
		if containsElem(elems, netip.MustParseAddr(m[1])) {
			t.Errorf("a ban covers the host's link-local address %s: %v", m[1], elems)
		}
	}
	if _, err := testnet.Connect(p.Scanner, friend, netip.AddrPortFrom(p.DefV6, 22), 2*time.Second); err != nil && !isRefused(err) {
		t.Errorf("the ignored neighbour cannot reach the host: %v", err)
	}
	_ = d
}

// TestImpossibleSourcesAreNeverActedOn: forged probes from broadcast, network,
// multicast, reserved and link-local sources are counted and nothing else: no log
// line, no route, and the host still sends multicast and broadcast.
func TestImpossibleSourcesAreNeverActedOn(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, testnet.Setting{Key: "BLOCK_TCP", Value: "1"}, testnet.Setting{Key: "BLOCK_BACKEND", Value: "route"},
		testnet.Setting{Key: "KILL_ROUTE", Value: ""}, testnet.Setting{Key: "KILL_HOSTS_DENY", Value: ""})
	d := startOurs(t, p, f, "stcp")
	net4 := fmt.Sprintf("198.18.%d.", p.Index)
	forged := []string{"255.255.255.255", net4 + "255", net4 + "0", "224.0.0.251", "239.255.255.250",
		"240.0.0.1", "169.254.7.7", "0.1.2.3", "ff02::1", "ff05::fb", "::2"}
	for _, s := range forged {
		a := netip.MustParseAddr(s)
		def := p.DefV4
		if a.Is6() {
			def = p.DefV6
		}
		injectTCP(t, p, a, def, 143, testnet.TCPSyn)
	}
	control := p.ScanV4
	injectTCP(t, p, control, p.DefV4, 143, testnet.TCPSyn)
	waitMsg(t, d.Log, 0, stealthMsg(scanSYN, control, 143))
	time.Sleep(settle)
	for _, s := range forged {
		noMentions(t, d.Log, 0, "a forged impossible source", netip.MustParseAddr(s))
	}
	if got := blackholes(t, p); len(got) != 1 || got[0] != control.String() {
		t.Errorf("routes: %v, want only the real scanner's", got)
	}
	for _, dst := range []string{"224.0.0.251", "255.255.255.255", net4 + "255", "ff02::1"} {
		if out, err := p.Try(p.Defended, 5*time.Second, "ip", "route", "get", dst, "oif", p.DefIf); err != nil ||
			strings.Contains(out, "unreachable") || strings.Contains(out, "blackhole") || strings.Contains(out, "prohibit") {
			t.Errorf("the host can no longer send to %s: %v %s", dst, err, out)
		}
	}
	d.Stop()
	m := regexp.MustCompile(`totals: .*impossible=(\d+)`).FindStringSubmatch(d.Log.String())
	if n := 0; m == nil || func() bool { n, _ = strconv.Atoi(m[1]); return n < len(forged) }() {
		t.Errorf("impossible sources not all counted (%d sent): %v", len(forged), d.Log.Matching(0, "totals"))
	}
}

// TestHangingCommandStallsNobody: a KILL_RUN_CMD that hangs holds up neither the log
// lines nor the bans of ten scanners, and after KILL_CMD_TIMEOUT no child is left.
func TestHangingCommandStallsNobody(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	f.write(t, nil, nftSettings(
		testnet.Setting{Key: "KILL_RUN_CMD", Value: "sleep 600 & sleep 601"},
		testnet.Setting{Key: "KILL_CMD_TIMEOUT", Value: "3"})...)
	d := startOurs(t, p, f, "tcp")
	start := time.Now()
	var scanners []netip.Addr
	for n := 50; n < 60; n++ {
		s := at.addr(t, n, false)
		scanners = append(scanners, s)
		hit(t, p, s, p.DefV4, 143)
	}
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		e := nftElements(t, p)
		for _, s := range scanners {
			if !containsElem(e, s) || !hasMsg(d.Log, 0, connectMsg(s, "TCP", 143)) {
				return false, s.String() + " not yet logged and banned"
			}
		}
		return true, ""
	})
	t.Logf("ten scanners logged and banned in %v", time.Since(start).Round(time.Millisecond))
	testnet.Eventually(t, 15*time.Second, func() (bool, string) {
		pids, _ := testnet.NSPids(p.Defended)
		var left []string
		for _, pid := range pids {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
				left = append(left, strconv.Itoa(pid))
			}
		}
		return len(left) == 0, "sleep processes left: " + strings.Join(left, " ")
	})
}

// TestUnspoofableOnlyUnderFlood: with UNSPOOFABLE_ONLY=1 a flood of forged UDP probes
// does not spend the budget of real connections, which are still acted on.
func TestUnspoofableOnlyUnderFlood(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "hping3")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	f.write(t, nil, nftSettings(testnet.Setting{Key: "UNSPOOFABLE_ONLY", Value: "1"},
		testnet.Setting{Key: "UDP_PORTS", Value: "31337"})...)
	d := startOurs(t, p, f, "tcp", "sudp")
	startFlood(t, p, "--udp", 31337, 20000, 200)
	d.WaitFor(t, "attackalert: Possible spoofed flood started", 10*time.Second)
	for n := 80; n < 83; n++ {
		s := at.addr(t, n, false)
		hit(t, p, s, p.DefV4, 143)
		testnet.Eventually(t, 5*time.Second, func() (bool, string) {
			return containsElem(nftElements(t, p), s), s.String() + " not banned"
		})
	}
}

// TestBannedHostFloodIsSummarised: a flood from one banned address writes a bounded
// number of lines, and a new scanner during it is still seen.
func TestBannedHostFloodIsSummarised(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "hping3")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	f.write(t, nil, nftSettings()...)
	d := startOurs(t, p, f, "stcp")
	injectTCP(t, p, p.ScanV4, p.DefV4, 143, testnet.TCPSyn)
	d.WaitFor(t, "Host "+p.ScanV4.String()+"/32 has been banned", 5*time.Second)
	out, _ := p.Try(p.Scanner, 30*time.Second, "hping3", "-q", "-n", "-c", "5000", "-i", "u100", "-S", "-p", "143", p.DefV4.String())
	t.Log(strings.TrimSpace(out))
	fresh := at.addr(t, 90, false)
	injectTCP(t, p, fresh, p.DefV4, 143, testnet.TCPSyn)
	waitMsg(t, d.Log, 0, stealthMsg(scanSYN, fresh, 143))
	if n := len(d.Log.Matching(0, "is already blocked")); n > 10 {
		t.Errorf("%d already-blocked lines for one flooding host, want a handful", n)
	}
}

package integration

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// TestConnectTCPBlock: nmap -sT against TCP_PORTS of a fully blocking -tcp daemon. The
// first port hit gives a history line, blocked.tcp line, hosts.deny line, a real
// blackhole route and a KILL_RUN_CMD run; after that the scanner cannot reach an open
// service on the defended host any more.
func TestConnectTCPBlock(t *testing.T) {
	needDaemon(t)
	for _, v6 := range []bool{false, true} {
		t.Run(famName(v6), func(t *testing.T) {
			t.Parallel()
			p := testnet.NewPair(t)
			def, scan := family(p, v6)
			f := newFiles(t)
			f.write(t, nil, append(f.blocking(), testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"})...)

			service := p.Listen(t, p.Defended, "tcp", ":8080")
			testnet.Serve(service, "service\n")
			if got := hit(t, p, netip.Addr{}, def, 8080); got != "service\n" {
				t.Fatalf("service before the scan answered %q", got)
			}

			d := startOurs(t, p, f, "tcp")
			args := []string{"-sT", "-r", "--max-parallelism", "1", "-p", "143,1080,31337"}
			if v6 {
				args = append(args, "-6")
			}
			out := nmap(t, p, append(args, def.String())...)
			t.Logf("nmap:\n%s", out)

			// nmap may complete several handshakes before the daemon accepts any, and the
			// daemon may take them in any order: whichever it handles first acts, the block
			// (or the "already blocked" check) stops the rest.
			first := actingPort(t, f.History, scan, 143, 1080, 31337)
			s := scan.String()
			for _, want := range []string{
				fmt.Sprintf(`attackalert: Host %s has been blocked via wrappers with string: "ALL: %s : DENY"`, s, denyHost(scan)),
				fmt.Sprintf(`attackalert: Host %s has been blocked via dropped route using command: "%s"`, s, strings.ReplaceAll(killRoute, "$TARGET$", s)),
				fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s %d tcp >> %s"`, s, s, first, f.CmdOut),
			} {
				waitMsg(t, d.Log, 0, want)
			}
			checkLogOrder(t, d.Lines(), scan)

			hist := waitLines(t, f.History, 1)
			want := []record{{Name: s, Addr: s, Port: first, Proto: "TCP"}}
			if got := parseRecords(t, hist); !slices.Equal(got, want) {
				t.Errorf("history: got %+v, want %+v", got, want)
			}
			blocked := waitLines(t, f.Blocked+".tcp", 1)
			if got := parseRecords(t, blocked); !slices.Equal(got, want) {
				t.Errorf("blocked.tcp: got %+v, want %+v", got, want)
			}
			if got := waitLines(t, f.HostsDeny, 1); !slices.Equal(got, []string{"ALL: " + denyHost(scan) + " : DENY"}) {
				t.Errorf("hosts.deny: got %q", got)
			}
			if got := waitLines(t, f.CmdOut, 1); !slices.Equal(got, []string{fmt.Sprintf("%s %d tcp", s, first)}) {
				t.Errorf("KILL_RUN_CMD output: got %q", got)
			}
			if got := blackholes(t, p); !slices.Equal(got, []string{s}) {
				t.Errorf("blackhole routes in the defended namespace: got %q, want [%s]", got, s)
			}
			if _, err := testnet.Connect(p.Scanner, netip.Addr{}, netip.AddrPortFrom(def, 8080), blockedDial); err == nil {
				t.Errorf("the blocked scanner still reaches the service on port 8080")
			}
			// Nobody else is affected: another scanner address still gets through.
			other4, other6 := p.ExtraScanner(t, 9)
			other := other4
			if v6 {
				other = other6
			}
			if got := hit(t, p, other, def, 8080); got != "service\n" {
				t.Errorf("an unblocked host got %q from the service", got)
			}
		})
	}
}

// TestConnectTCPLogOnly: with BLOCK_TCP="0" every connect is logged, the first one per
// host is recorded (history and blocked file, like classic) with "Ignoring TCP response",
// later ones are "already blocked", and nothing is blocked.
func TestConnectTCPLogOnly(t *testing.T) {
	needDaemon(t)
	for _, v6 := range []bool{false, true} {
		t.Run(famName(v6), func(t *testing.T) {
			t.Parallel()
			p := testnet.NewPair(t)
			def, scan := family(p, v6)
			f := newFiles(t)
			f.write(t, nil,
				testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"},
				testnet.Setting{Key: "KILL_ROUTE", Value: killRoute},
				testnet.Setting{Key: "KILL_RUN_CMD", Value: "/bin/echo $TARGET$ >> " + f.CmdOut})
			d := startOurs(t, p, f, "tcp")
			args := []string{"-sT", "-r", "--max-parallelism", "1", "-p", "143,1080,31337"}
			if v6 {
				args = append(args, "-6")
			}
			out := nmap(t, p, append(args, def.String())...)
			first := actingPort(t, f.History, scan, 143, 1080, 31337)
			for _, port := range []int{143, 1080, 31337} {
				if !regexp.MustCompile(`(?m)^` + strconv.Itoa(port) + `/tcp\s+open`).MatchString(out) {
					t.Errorf("nmap did not find %d/tcp open:\n%s", port, out)
				}
				waitMsg(t, d.Log, 0, connectMsg(scan, "TCP", port))
			}
			waitMsg(t, d.Log, 0, "attackalert: Ignoring TCP response per configuration file setting.")
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				n := len(d.Matching(0, func(s string) bool {
					return strings.HasSuffix(s, "attackalert: Host: "+scan.String()+" is already blocked. Ignoring")
				}))
				return n == 2, fmt.Sprintf("%d already-blocked lines, want 2", n)
			})
			checkLogOrder(t, d.Lines(), scan)
			s := scan.String()
			want := []record{{Name: s, Addr: s, Port: first, Proto: "TCP"}}
			if got := parseRecords(t, waitLines(t, f.History, 1)); !slices.Equal(got, want) {
				t.Errorf("history: got %+v, want %+v", got, want)
			}
			if got := parseRecords(t, waitLines(t, f.Blocked+".tcp", 1)); !slices.Equal(got, want) {
				t.Errorf("blocked.tcp: got %+v, want %+v", got, want)
			}
			if got := testnet.ReadLines(f.HostsDeny); len(got) != 0 {
				t.Errorf("hosts.deny written with BLOCK_TCP=0: %q", got)
			}
			if got := testnet.ReadLines(f.CmdOut); len(got) != 0 {
				t.Errorf("KILL_RUN_CMD ran with BLOCK_TCP=0: %q", got)
			}
			if got := blackholes(t, p); len(got) != 0 {
				t.Errorf("routes added with BLOCK_TCP=0: %q", got)
			}
			for _, m := range messages(d.Lines()) {
				if strings.Contains(m, "has been blocked") || strings.Contains(m, "External command") {
					t.Errorf("action logged with BLOCK_TCP=0: %q", m)
				}
			}
		})
	}
}

// TestConnectUDP: nmap -sU and plain datagrams (IPv4 and IPv6) against a blocking -udp
// daemon. A blackhole route does not stop incoming datagrams, so a second datagram from
// a blocked host is seen and reported as already blocked.
func TestConnectUDP(t *testing.T) {
	needDaemon(t)
	for _, v6 := range []bool{false, true} {
		t.Run(famName(v6), func(t *testing.T) {
			t.Parallel()
			p := testnet.NewPair(t)
			def, scan := family(p, v6)
			f := newFiles(t)
			f.write(t, nil, append(f.blocking(), testnet.Setting{Key: "UDP_PORTS", Value: "513,635,31337"})...)
			d := startOurs(t, p, f, "udp")

			args := []string{"-sU", "-p", "513"}
			if v6 {
				args = append(args, "-6")
			}
			t.Logf("nmap:\n%s", nmap(t, p, append(args, def.String())...))
			// Added only now: nmap would pick it as its source address.
			other4, other6 := p.ExtraScanner(t, 3)
			other := other4
			if v6 {
				other = other6
			}
			s, o := scan.String(), other.String()
			waitMsg(t, d.Log, 0, connectMsg(scan, "UDP", 513))
			waitMsg(t, d.Log, 0, fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s 513 udp >> %s"`, s, s, f.CmdOut))

			mark := d.Mark()
			sendUDP(t, p, scan, def, 635)
			waitMsg(t, d.Log, mark, connectMsg(scan, "UDP", 635))
			waitMsg(t, d.Log, mark, "attackalert: Host: "+s+" is already blocked. Ignoring")

			sendUDP(t, p, other, def, 31337)
			waitMsg(t, d.Log, mark, connectMsg(other, "UDP", 31337))
			waitMsg(t, d.Log, mark, fmt.Sprintf(`attackalert: External command run for host: %s using command: "/bin/echo %s 31337 udp >> %s"`, o, o, f.CmdOut))

			want := []record{{s, s, 513, "UDP"}, {o, o, 31337, "UDP"}}
			if got := parseRecords(t, waitLines(t, f.History, 2)); !slices.Equal(got, want) {
				t.Errorf("history: got %+v, want %+v", got, want)
			}
			if got := parseRecords(t, waitLines(t, f.Blocked+".udp", 2)); !slices.Equal(got, want) {
				t.Errorf("blocked.udp: got %+v, want %+v", got, want)
			}
			if got := waitLines(t, f.HostsDeny, 2); !slices.Equal(got, []string{"ALL: " + denyHost(scan) + " : DENY", "ALL: " + denyHost(other) + " : DENY"}) {
				t.Errorf("hosts.deny: %q", got)
			}
			if got := waitLines(t, f.CmdOut, 2); !slices.Equal(got, []string{s + " 513 udp", o + " 31337 udp"}) {
				t.Errorf("KILL_RUN_CMD output: %q", got)
			}
			got := blackholes(t, p)
			slices.Sort(got)
			wantRoutes := []string{s, o}
			slices.Sort(wantRoutes)
			if !slices.Equal(got, wantRoutes) {
				t.Errorf("blackhole routes: got %q, want %q", got, wantRoutes)
			}
		})
	}
}

// TestScanTrigger: SCAN_TRIGGER="3": the first two hits from a host do nothing at all,
// the third is logged and recorded, and so is every later one.
func TestScanTrigger(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil,
		testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337,12345"},
		testnet.Setting{Key: "SCAN_TRIGGER", Value: "3"})
	d := startOurs(t, p, f, "tcp")

	o, _ := p.ExtraScanner(t, 3)
	for _, host := range []netip.Addr{p.ScanV4, o} {
		// Each connect returns once the daemon has accepted and closed it.
		hit(t, p, host, p.DefV4, 143)
		hit(t, p, host, p.DefV4, 1080)
		hit(t, p, host, p.DefV4, 31337)
		port := firstHitPort(t, d.Log, host, "TCP", 143, 1080, 31337)
		if port != 31337 {
			// Possible only if the daemon handles a later connection before an earlier
			// one that it has already closed; the count is what matters here.
			t.Logf("the third hit was counted on port %d, not 31337", port)
		}
		// The fourth hit fires too; the host is already recorded (blocked file), as
		// classic. Once it is seen, the three before it have been handled.
		hit(t, p, host, p.DefV4, 12345)
		waitMsg(t, d.Log, 0, connectMsg(host, "TCP", 12345))
		waitMsg(t, d.Log, 0, "attackalert: Host: "+host.String()+" is already blocked. Ignoring")
		var below []string
		for _, port := range []int{143, 1080, 31337} {
			if hasMsg(d.Log, 0, connectMsg(host, "TCP", port)) {
				below = append(below, strconv.Itoa(port))
			}
		}
		if len(below) != 1 {
			t.Errorf("%s: three hits with SCAN_TRIGGER=3 gave detections on ports %v, want exactly one (the third hit)", host, below)
		}
	}
	want := []record{{p.ScanV4.String(), p.ScanV4.String(), 0, "TCP"}, {o.String(), o.String(), 0, "TCP"}}
	got := parseRecords(t, waitLines(t, f.History, 2))
	for i := range got {
		got[i].Port = 0
	}
	if !slices.Equal(got, want) {
		t.Errorf("history (ports left out): got %+v, want %+v", got, want)
	}
}

// TestIgnoreFile: hosts in the ignore file (an IPv4 address, an IPv6 /64) are never
// acted on and leave no trace; other hosts right next to them still are.
func TestIgnoreFile(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	// A second IPv6 /64 for a sentinel scanner outside the ignored /64.
	sub := func(host int) netip.Addr {
		return netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:1::%x", p.Index, host))
	}
	p.AddAddr(t, p.Defended, netip.PrefixFrom(sub(1), 64))
	p.AddAddr(t, p.Scanner, netip.PrefixFrom(sub(2), 64))
	sent4, _ := p.ExtraScanner(t, 3)
	sent6 := sub(2)
	f.write(t, []string{p.ScanV4.String(), p.V6Net.String(), "# a comment", ""},
		testnet.Setting{Key: "TCP_PORTS", Value: "143,1080"},
		testnet.Setting{Key: "UDP_PORTS", Value: "513"})
	d := startOurs(t, p, f, "tcp", "udp")

	hit(t, p, p.ScanV4, p.DefV4, 143)
	hit(t, p, p.ScanV6, p.DefV6, 143)
	hit(t, p, p.ScanV6, p.DefV6, 1080)
	sendUDP(t, p, p.ScanV4, p.DefV4, 513)
	sendUDP(t, p, p.ScanV6, p.DefV6, 513)
	// Sentinels on the same ports, sent after the ignored ones.
	hit(t, p, sent4, p.DefV4, 143)
	hit(t, p, sent6, sub(1), 143)
	sendUDP(t, p, sent4, p.DefV4, 513)
	for _, m := range []string{connectMsg(sent4, "TCP", 143), connectMsg(sent6, "TCP", 143), connectMsg(sent4, "UDP", 513)} {
		waitMsg(t, d.Log, 0, m)
	}
	waitLines(t, f.History, 2)
	// Give any straggling (wrong) handling of the earlier hits a moment to show.
	time.Sleep(200 * time.Millisecond)
	for _, l := range d.Lines() {
		if strings.Contains(l, "attackalert") && (strings.Contains(l, p.ScanV4.String()+"/") || strings.Contains(l, p.ScanV6.String()+"/") ||
			strings.Contains(l, " "+p.ScanV4.String()+" ") || strings.Contains(l, " "+p.ScanV6.String()+" ")) {
			t.Errorf("ignored host acted on: %q", l)
		}
	}
	for _, r := range parseRecords(t, testnet.ReadLines(f.History)) {
		if r.Addr != sent4.String() && r.Addr != sent6.String() {
			t.Errorf("history line for %s", r.Addr)
		}
	}
}

// TestReload: SIGHUP applies a changed TCP_PORTS (new port listens, removed port is
// closed, unchanged ones keep working); a broken config is rejected with FILE:LINE
// errors and the running configuration stays in force.
func TestReload(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	conf := f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"})
	d := startOurs(t, p, f, "tcp")
	for _, port := range []int{143, 1080, 31337} {
		if st := portState(p, netip.Addr{}, p.DefV4, port); st != "open" {
			t.Fatalf("port %d before reload: %s", port, st)
		}
	}
	if st := portState(p, netip.Addr{}, p.DefV4, 12345); st != "refused" {
		t.Fatalf("port 12345 before reload: %s", st)
	}

	conf = testnet.ApplySettings(conf, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,12345"})
	writeFile(t, f.Conf, conf)
	mark := d.Mark()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMsg(t, d.Log, mark, "adminalert: Going into listen mode on TCP port: 12345")
	for _, fam := range []netip.Addr{p.DefV4, p.DefV6} {
		testnet.Eventually(t, eventTimeout, func() (bool, string) {
			got := map[int]string{}
			for _, port := range []int{143, 1080, 12345, 31337} {
				got[port] = portState(p, netip.Addr{}, fam, port)
			}
			ok := got[143] == "open" && got[1080] == "open" && got[12345] == "open" && got[31337] == "refused"
			return ok, fmt.Sprintf("after reload, to %s: %v", fam, got)
		})
	}
	// The new port is a sensor, not just a socket; unchanged ones still detect.
	o, _ := p.ExtraScanner(t, 3)
	mark = d.Mark()
	hit(t, p, o, p.DefV4, 12345)
	waitMsg(t, d.Log, mark, connectMsg(o, "TCP", 12345))
	hit(t, p, o, p.DefV4, 1080)
	waitMsg(t, d.Log, mark, connectMsg(o, "TCP", 1080))

	// A broken config: TCP_PORTS without quotes.
	lines := strings.Split(conf, "\n")
	lineNo := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "TCP_PORTS=") {
			lines[i] = "TCP_PORTS=143,1080"
			lineNo = i + 1
		}
	}
	writeFile(t, f.Conf, strings.Join(lines, "\n"))
	mark = d.Mark()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	errLine := d.WaitForSince(t, mark, f.Conf+":"+strconv.Itoa(lineNo)+":", eventTimeout)
	t.Logf("reload error logged: %s", errLine)
	if d.Exited() {
		t.Fatal("daemon exited on a broken config")
	}
	for _, port := range []int{143, 1080, 12345} {
		if st := portState(p, netip.Addr{}, p.DefV4, port); st != "open" {
			t.Errorf("port %d after rejected reload: %s", port, st)
		}
	}
	if st := portState(p, netip.Addr{}, p.DefV4, 31337); st != "refused" {
		t.Errorf("port 31337 after rejected reload: %s", st)
	}
	o2, _ := p.ExtraScanner(t, 4)
	mark = d.Mark()
	hit(t, p, o2, p.DefV4, 12345)
	waitMsg(t, d.Log, mark, connectMsg(o2, "TCP", 12345))
}

// TestPortBanner: PORT_BANNER is sent, without a newline, to a TCP client and as the
// reply to a UDP datagram, over IPv4 and IPv6.
func TestPortBanner(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	const banner = "** UNAUTHORIZED ACCESS PROHIBITED *** YOUR CONNECTION ATTEMPT HAS BEEN LOGGED. GO AWAY."
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil,
		testnet.Setting{Key: "TCP_PORTS", Value: "143"},
		testnet.Setting{Key: "UDP_PORTS", Value: "513"},
		testnet.Setting{Key: "PORT_BANNER", Value: banner})
	startOurs(t, p, f, "tcp", "udp")
	for _, dst := range []netip.Addr{p.DefV4, p.DefV6} {
		if got := hit(t, p, netip.Addr{}, dst, 143); got != banner {
			t.Errorf("TCP banner from %s: got %q, want %q", dst, got, banner)
		}
		c, err := testnet.Dial(p.Scanner, "udp", netip.Addr{}, netip.AddrPortFrom(dst, 513), dialTimeout)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(eventTimeout))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		c.Close()
		if err != nil || string(buf[:n]) != banner {
			t.Errorf("UDP banner from %s: got %q, %v; want %q", dst, buf[:n], err, banner)
		}
	}
}

// TestPortInUse: a port already bound by another process is logged and skipped, the
// others work, and hits on them are reported under their own port numbers (classic
// logs them under the skipped port: SPEC §3 FIX).
func TestPortInUse(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	busy := p.Listen(t, p.Defended, "tcp", ":1080")
	testnet.Serve(busy, "busy\n")
	f := newFiles(t)
	f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,31337"})
	d := startOurs(t, p, f, "tcp")
	skipped := regexp.MustCompile(`(?i)(could not bind|in use|skip).*\b1080\b`)
	d.WaitFor(t, skipped, eventTimeout)
	if got := hit(t, p, netip.Addr{}, p.DefV4, 1080); got != "busy\n" {
		t.Errorf("port 1080 answered %q, want the other process", got)
	}
	o3, _ := p.ExtraScanner(t, 3)
	o4, _ := p.ExtraScanner(t, 4)
	hit(t, p, o3, p.DefV4, 31337)
	hit(t, p, o4, p.DefV4, 143)
	waitMsg(t, d.Log, 0, connectMsg(o3, "TCP", 31337))
	waitMsg(t, d.Log, 0, connectMsg(o4, "TCP", 143))
	// Two hosts: the daemon may record them in either order.
	want := []record{{o4.String(), o4.String(), 143, "TCP"}, {o3.String(), o3.String(), 31337, "TCP"}}
	got := parseRecords(t, waitLines(t, f.History, 2))
	slices.SortFunc(got, func(a, b record) int { return a.Port - b.Port })
	if !slices.Equal(got, want) {
		t.Errorf("history: got %+v, want %+v", got, want)
	}
	for _, l := range d.Lines() {
		if strings.Contains(l, "port: 1080") && strings.Contains(l, "attackalert") {
			t.Errorf("hit logged on the skipped port: %q", l)
		}
	}
}

// TestAllPortsTaken: when another process (Debian's 1.2, say) holds every TCP_PORTS
// port, the daemon does not claim to be listening: it says why and exits with an error,
// so a service manager notices.
func TestAllPortsTaken(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	for _, port := range []string{":143", ":1080"} {
		testnet.Serve(p.Listen(t, p.Defended, "tcp", port), "busy\n")
	}
	f := newFiles(t)
	f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080"})
	d := p.Start(t, p.Defended, daemonBin, "-c", f.Conf, "-tcp")
	select {
	case <-d.Done():
	case <-time.After(readyTimeout):
		t.Fatal("the daemon runs with none of its ports bound")
	}
	if d.Err() == nil {
		t.Error("exit status 0 with none of its ports bound")
	}
	if hasMsg(d.Log, 0, Ready) {
		t.Errorf("said %q with none of its ports bound", Ready)
	}
	d.WaitFor(t, "none of the 2 TCP ports could be bound", time.Second)
}

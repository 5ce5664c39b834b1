package integration

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// The classic scan names of the stealth and advanced TCP modes (SPEC §3), written out
// here rather than taken from internal/packet: these tests are the outside check.
const (
	scanSYN  = "TCP SYN/Normal scan"
	scanFIN  = "TCP FIN scan"
	scanNULL = " TCP NULL scan" // sic: classic's leading space, so the line has two
	scanXMAS = "TCP XMAS scan"
)

// unknownScan is classic's name for any other flag set.
func unknownScan(syn, fin, ack, psh, urg, rst int) string {
	return fmt.Sprintf("Unknown Type: TCP Packet Flags: SYN: %d FIN: %d ACK: %d PSH: %d URG: %d RST: %d", syn, fin, ack, psh, urg, rst)
}

// nmapScans are nmap's stealth scan options and the classic name of what they send.
var nmapScans = []struct{ opt, scan string }{
	{"-sS", scanSYN}, {"-sF", scanFIN}, {"-sN", scanNULL}, {"-sX", scanXMAS},
}

// stealthMsg is the detection line of -stcp/-atcp.
func stealthMsg(scan string, host netip.Addr, port int) string {
	return fmt.Sprintf("attackalert: %s from host: %s/%s to TCP port: %d", scan, host, host, port)
}

// udpScanMsg is the detection line of -sudp/-audp.
func udpScanMsg(host netip.Addr, port int) string {
	return fmt.Sprintf("attackalert: UDP scan from host: %s/%s to UDP port: %d", host, host, port)
}

// optionsMsg is the extra line for a stealth hit with IPv4 options. Classic says "UDP
// port" for UDP (seen with Debian's binary; SPEC §3 only quotes the TCP form).
func optionsMsg(host netip.Addr, proto string, port int) string {
	return fmt.Sprintf("attackalert: Packet from host: %s/%s to %s port: %d has IP options set (detection avoidance technique).", host, host, proto, port)
}

// stealthBlockedMsg is the stealth modes' "already blocked" line (no dot, unlike the
// connect modes').
func stealthBlockedMsg(host netip.Addr) string {
	return fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", host, host)
}

// settle is how long a test waits before it concludes that a probe was not reported:
// the daemon handles packets within milliseconds; this leaves room for a loaded box.
const settle = 500 * time.Millisecond

// trackerSettle is how long a test waits after starting or stopping a service before it
// relies on the daemon knowing (the listening tracker refreshes once a second).
const trackerSettle = 2500 * time.Millisecond

// attackers hands out scanner addresses by number: 2 is the pair's own scanner address,
// 3-254 are added with ExtraScanner on first use (both families at once).
type attackers struct {
	p      *testnet.Pair
	v4, v6 map[int]netip.Addr
}

func newAttackers(p *testnet.Pair) *attackers {
	return &attackers{p: p, v4: map[int]netip.Addr{2: p.ScanV4}, v6: map[int]netip.Addr{2: p.ScanV6}}
}

// addr returns scanner address n of one family.
func (a *attackers) addr(t *testing.T, n int, v6 bool) netip.Addr {
	t.Helper()
	if _, ok := a.v4[n]; !ok {
		a.v4[n], a.v6[n] = a.p.ExtraScanner(t, n)
	}
	if v6 {
		return a.v6[n]
	}
	return a.v4[n]
}

// hping sends hping3 probes (always bounded: -c count, default 1) from the scanner with
// source address from. hping3's exit status says whether replies came, which does not
// matter here; its output is logged.
func hping(t *testing.T, p *testnet.Pair, from, to netip.Addr, args ...string) {
	t.Helper()
	testnet.Require(t, "hping3")
	if !from.Is4() || !to.Is4() {
		t.Fatalf("hping3 speaks IPv4 only (%v -> %v)", from, to)
	}
	full := append([]string{"-c", "1", "-n", "-q", "-I", p.ScanIf, "-a", from.String()}, args...)
	full = append(full, to.String())
	out, err := p.Try(p.Scanner, 15*time.Second, "hping3", full...)
	if err != nil && !strings.Contains(out, "packets transmitted") {
		t.Fatalf("hping3 %s: %v\n%s", strings.Join(full, " "), err, out)
	}
}

// nmapFrom runs nmap (see nmap) from source address from, out of the scanner's veth.
func nmapFrom(t *testing.T, p *testnet.Pair, from, to netip.Addr, args ...string) string {
	t.Helper()
	full := append([]string{"-e", p.ScanIf, "-S", from.String()}, args...)
	if to.Is6() {
		full = append(full, "-6")
	}
	return nmap(t, p, append(full, to.String())...)
}

// injectTCP sends one hand-made TCP segment with flags from `from` (source port 40000+n
// for some variety) to port of to, through the scanner's veth.
func injectTCP(t *testing.T, p *testnet.Pair, from, to netip.Addr, port int, flags uint8) {
	t.Helper()
	src := netip.AddrPortFrom(from, uint16(40000+port%20000))
	p.Inject(t, testnet.BuildTCP(src, netip.AddrPortFrom(to, uint16(port)), flags, nil))
}

// injectUDP sends one hand-made UDP datagram.
func injectUDP(t *testing.T, p *testnet.Pair, from, to netip.Addr, port int) {
	t.Helper()
	src := netip.AddrPortFrom(from, uint16(40000+port%20000))
	p.Inject(t, testnet.BuildUDP(src, netip.AddrPortFrom(to, uint16(port)), []byte("portsentry-test\n")))
}

// mentions returns the attackalert messages (after mark) that name host as the source
// or subject of a detection.
func mentions(l *testnet.Log, mark int, host netip.Addr) []string {
	h := host.String()
	var out []string
	for _, m := range attackLines(l.Since(mark)) {
		if strings.Contains(m, " "+h+"/") || strings.Contains(m, "Host "+h+" ") || strings.Contains(m, "host: "+h+" ") {
			out = append(out, m)
		}
	}
	return out
}

// noMentions fails the test if anything was reported about one of hosts (after mark).
func noMentions(t *testing.T, l *testnet.Log, mark int, why string, hosts ...netip.Addr) {
	t.Helper()
	for _, h := range hosts {
		if got := mentions(l, mark, h); len(got) > 0 {
			t.Errorf("%s: %s was reported:\n%s", why, h, strings.Join(got, "\n"))
		}
	}
}

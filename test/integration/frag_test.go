package integration

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// fragTimeout is the reassembly timeout these tests give the defended namespace's own
// IP stack (net.ipv4.ipfrag_time, net.ipv6.ip6frag_time), which the daemon follows.
const fragTimeout = 2

// TestStealthFragments: scans split into fragments give the same classic lines as the
// whole probes, once each, from a log-only -stcp -sudp daemon, over IPv4 and IPv6.
// Real nmap -sS -f (8-byte fragments), -sS --mtu 16 and -sF -f -f for IPv4 (nmap does
// not fragment IPv6), and forged fragments for both: 8-byte pieces of TCP and UDP probes, the last fragment first, an
// overlapping fragment that rewrites ACK into SYN (reported as the SYN it may be), and
// non-first fragments alone (never reported; they time out). The stats line at exit
// counts all of it.
func TestStealthFragments(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nmap", "sysctl")
	for _, v6 := range []bool{false, true} {
		t.Run(famName(v6), func(t *testing.T) {
			t.Parallel()
			p := testnet.NewPair(t)
			for _, k := range []string{"net.ipv4.ipfrag_time", "net.ipv6.ip6frag_time"} {
				p.Run(t, p.Defended, "sysctl", "-qw", fmt.Sprintf("%s=%d", k, fragTimeout))
			}
			def, _ := family(p, v6)
			at := newAttackers(p)
			f := newFiles(t)
			f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080,12345,31337"},
				testnet.Setting{Key: "UDP_PORTS", Value: "635"})
			d := startOurs(t, p, f, "stcp", "sudp")
			waitMsg(t, d.Log, 0, "adminalert: Going into stealth listen mode on UDP port: 635")

			// Orphans first: they must be gone by the time the daemon stops.
			orphan := at.addr(t, 20, v6)
			whole := testnet.BuildTCP(netip.AddrPortFrom(orphan, 40020), netip.AddrPortFrom(def, 143), testnet.TCPSyn, nil)
			p.Inject(t, testnet.Fragments(whole, 8, 2001)[1:]...)
			orphanAt := time.Now()

			type scan struct {
				host int
				nmap []string // nmap options, or nil for forged frames
				pkts func(from netip.Addr) [][]byte
				msg  func(from netip.Addr) string
			}
			tcp := func(from netip.Addr, port int, flags uint8) []byte {
				return testnet.BuildTCP(netip.AddrPortFrom(from, uint16(41000+port)), netip.AddrPortFrom(def, uint16(port)), flags, nil)
			}
			reverse := func(f [][]byte) [][]byte {
				for i, j := 0, len(f)-1; i < j; i, j = i+1, j-1 {
					f[i], f[j] = f[j], f[i]
				}
				return f
			}
			scans := []scan{
				{host: 10, pkts: func(a netip.Addr) [][]byte { return testnet.Fragments(tcp(a, 143, testnet.TCPSyn), 8, 10) },
					msg: func(a netip.Addr) string { return stealthMsg(scanSYN, a, 143) }},
				{host: 3, pkts: func(a netip.Addr) [][]byte { return testnet.Fragments(tcp(a, 1080, testnet.TCPFin), 8, 3) },
					msg: func(a netip.Addr) string { return stealthMsg(scanFIN, a, 1080) }},
				{host: 4, pkts: func(a netip.Addr) [][]byte {
					return reverse(testnet.Fragments(tcp(a, 12345, testnet.TCPFin|testnet.TCPPsh|testnet.TCPUrg), 8, 4))
				}, msg: func(a netip.Addr) string { return stealthMsg(scanXMAS, a, 12345) }},
				{host: 5, pkts: func(a netip.Addr) [][]byte {
					udp := testnet.BuildUDP(netip.AddrPortFrom(a, 41635), netip.AddrPortFrom(def, 635), make([]byte, 32))
					return testnet.Fragments(udp, 8, 5)
				}, msg: func(a netip.Addr) string { return udpScanMsg(a, 635) }},
				{host: 6, pkts: func(a netip.Addr) [][]byte {
					// ACK in the fragment that arrives first, SYN in an overlapping copy.
					ack, syn := tcp(a, 31337, testnet.TCPAck), tcp(a, 31337, testnet.TCPSyn)
					hl := len(ack) - 20
					return [][]byte{
						testnet.Fragment(ack, 8, ack[hl+8:hl+16], true, 6),
						testnet.Fragment(syn, 8, syn[hl+8:hl+16], true, 6),
						testnet.Fragment(ack, 0, ack[hl:hl+8], true, 6),
						testnet.Fragment(ack, 16, ack[hl+16:], false, 6),
					}
				}, msg: func(a netip.Addr) string { return stealthMsg(scanSYN, a, 31337) }},
			}
			if !v6 {
				scans = append(scans,
					scan{host: 7, nmap: []string{"-sS", "-f", "-p", "143"}, msg: func(a netip.Addr) string { return stealthMsg(scanSYN, a, 143) }},
					scan{host: 8, nmap: []string{"-sS", "--mtu", "16", "-p", "1080"}, msg: func(a netip.Addr) string { return stealthMsg(scanSYN, a, 1080) }},
					scan{host: 9, nmap: []string{"-sF", "-f", "-f", "-p", "31337"}, msg: func(a netip.Addr) string { return stealthMsg(scanFIN, a, 31337) }},
				)
			}
			for _, sc := range scans {
				from := at.addr(t, sc.host, v6)
				mark := d.Mark()
				var out string
				if sc.nmap != nil {
					out = nmapFrom(t, p, from, def, sc.nmap...)
				} else {
					p.Inject(t, sc.pkts(from)...)
				}
				waitMsg(t, d.Log, mark, sc.msg(from))
				if t.Failed() {
					t.Fatalf("host %d (%v): nmap output:\n%s\nlog:\n%s", sc.host, sc.nmap, out, d.Log)
				}
				if sc.nmap == nil {
					time.Sleep(settle) // a second reading would come at once
					if got := mentions(d.Log, mark, from); len(got) != 1 {
						t.Errorf("host %d: %d lines, want 1:\n%s", sc.host, len(got), strings.Join(got, "\n"))
					}
				}
			}
			noMentions(t, d.Log, 0, "non-first fragments alone", orphan)

			// Past the timeout, any fragment makes the table look through its entries.
			time.Sleep(time.Until(orphanAt.Add(fragTimeout*time.Second + 500*time.Millisecond)))
			late := at.addr(t, 21, v6)
			p.Inject(t, testnet.Fragments(tcp(late, 143, testnet.TCPSyn), 8, 21)...)
			waitMsg(t, d.Log, 0, stealthMsg(scanSYN, late, 143))
			if err := d.Stop(); err != nil {
				t.Fatal(err)
			}
			stats := d.Log.WaitFor(t, "adminalert: stealth sensor: ", eventTimeout)
			t.Log(stats[strings.Index(stats, "stealth sensor:"):])
			got := sensorCounters(t, stats)
			nmapRuns := len(scans) - 5
			if got["frag_reassembled"] < uint64(5+nmapRuns+1) || got["frag_timeouts"] != 1 || got["frag_overlaps"] != 1 ||
				got["frag_malformed"] != 0 || got["frag_evicted"] != 0 || got["fragments"] < 2+3+3+3+5+4+2*uint64(nmapRuns)+3 {
				t.Errorf("counters: %s", stats)
			}
			noMentions(t, d.Log, 0, "non-first fragments alone", orphan)
		})
	}
}

var counterRE = regexp.MustCompile(`(\w+)=(\d+)`)

// sensorCounters parses the stealth sensor's key=value stats line.
func sensorCounters(t *testing.T, line string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, m := range counterRE.FindAllStringSubmatch(line[strings.Index(line, "stealth sensor:"):], -1) {
		n, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			t.Fatalf("counter %s in %q: %v", m[1], line, err)
		}
		out[m[1]] = n
	}
	return out
}

// TestAdvancedFragments: the advanced modes (-atcp -audp) see fragmented probes too:
// nmap -sS -f over IPv4 and forged 8-byte fragments over IPv6 give their classic lines;
// a 3000-byte datagram that the scanner's own IP stack fragments is one "UDP scan" to a
// port nobody listens on, and nothing to a port a local service listens on.
func TestAdvancedFragments(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nmap")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	f.write(t, nil)
	for _, a := range []netip.Addr{p.DefV4, p.DefV6} {
		l := p.ListenPacket(t, p.Defended, "udp", netip.AddrPortFrom(a, 641).String())
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, _, err := l.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
	d := startOurs(t, p, f, "atcp", "audp")
	time.Sleep(trackerSettle) // the listener on 641 is known

	a := at.addr(t, 3, false)
	nmapFrom(t, p, a, p.DefV4, "-sS", "-f", "-p", "777")
	waitMsg(t, d.Log, 0, stealthMsg(scanSYN, a, 777))

	b := at.addr(t, 4, true)
	fin := testnet.BuildTCP(netip.AddrPortFrom(b, 40778), netip.AddrPortFrom(p.DefV6, 778), testnet.TCPFin, nil)
	p.Inject(t, testnet.Fragments(fin, 8, 4)...)
	waitMsg(t, d.Log, 0, stealthMsg(scanFIN, b, 778))

	big := make([]byte, 3000)
	for i, v6 := range []bool{false, true} {
		def, _ := family(p, v6)
		quiet, loud := at.addr(t, 5+2*i, v6), at.addr(t, 6+2*i, v6)
		mark := d.Mark()
		for _, c := range []struct {
			from netip.Addr
			port uint16
		}{{quiet, 641}, {loud, 642}} {
			if err := testnet.SendUDP(p.Scanner, c.from, netip.AddrPortFrom(def, c.port), big); err != nil {
				t.Fatal(err)
			}
		}
		waitMsg(t, d.Log, mark, udpScanMsg(loud, 642))
		time.Sleep(settle)
		if got := mentions(d.Log, mark, loud); len(got) != 1 {
			t.Errorf("%s: %d lines for one fragmented datagram:\n%s", famName(v6), len(got), strings.Join(got, "\n"))
		}
		noMentions(t, d.Log, mark, "a fragmented datagram to a listening port", quiet)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	stats := d.Log.WaitFor(t, "adminalert: stealth sensor: ", eventTimeout)
	t.Log(stats[strings.Index(stats, "stealth sensor:"):])
	got := sensorCounters(t, stats)
	if got["frag_reassembled"] < 6 || got["in_use"] < 2 || got["frag_malformed"] != 0 {
		t.Errorf("counters: %v", got)
	}
}

package daemon

import (
	"net/netip"
	"testing"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
)

func TestDetectionLines(t *testing.T) {
	src := netip.AddrPortFrom(netip.MustParseAddr("2001:db8::2"), 5000)
	dst := netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), 143)
	cases := []struct {
		p    probe.Probe
		want string
	}{
		{probe.Probe{Src: src, Dst: dst, Proto: probe.TCP, Mode: probe.ModeTCP},
			"attackalert: Connect from host: n/2001:db8::2 to TCP port: 143"},
		{probe.Probe{Src: src, Dst: dst, Proto: probe.UDP, Mode: probe.ModeUDP},
			"attackalert: Connect from host: n/2001:db8::2 to UDP port: 143"},
		{probe.Probe{Src: src, Dst: dst, Proto: probe.TCP, Mode: probe.ModeSTCP, ScanType: " TCP NULL scan"},
			"attackalert:  TCP NULL scan from host: n/2001:db8::2 to TCP port: 143"},
		{probe.Probe{Src: src, Dst: dst, Proto: probe.UDP, Mode: probe.ModeAUDP},
			"attackalert: UDP scan from host: n/2001:db8::2 to UDP port: 143"},
	}
	for _, c := range cases {
		if got := detectionLine(c.p, "n"); got != c.want {
			t.Errorf("%s: got %q want %q", c.p.Mode, got, c.want)
		}
	}
}

func TestBuildWatch(t *testing.T) {
	cfg := config.Default()
	cfg.TCPPorts = []uint16{80, 31337}
	cfg.AdvancedPortsTCP = 100
	cfg.AdvancedExcludeTCP = []uint16{22}
	w := buildWatch(cfg, []probe.Mode{probe.ModeATCP, probe.ModeSTCP, probe.ModeTCP})
	for port, want := range map[uint16]probe.Mode{
		80: probe.ModeSTCP, 31337: probe.ModeSTCP, 1: probe.ModeATCP, 99: probe.ModeATCP,
		22: "", 100: "", 0: "",
	} {
		if got := w.Mode(probe.TCP, port); got != want {
			t.Errorf("tcp %d: %q want %q", port, got, want)
		}
	}
	if ports := w.Ports(probe.UDP); len(ports) != 0 {
		t.Errorf("udp watched without a udp mode: %v", ports)
	}
}

func TestShardSpreadsAndIsStable(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 64; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
		s := shard(a)
		if s != shard(a) || s < 0 || s >= workers {
			t.Fatalf("shard(%v) = %d", a, s)
		}
		seen[s] = true
	}
	if len(seen) != workers {
		t.Errorf("64 hosts used only %d of %d workers", len(seen), workers)
	}
}

func TestLineAddr(t *testing.T) {
	for line, want := range map[string]string{
		"1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked":     "10.99.0.2",
		"1795535595 - 11/24/2026 15:53:15 Host: a.example/2001:db8::2 Port: 7 UDP Blocked":     "2001:db8::2",
		"1795535595 - 11/24/2026 15:53:15 Host: we/ird.example/198.18.0.9 Port: 1 TCP Blocked": "198.18.0.9",
		"garbage": "",
	} {
		a, ok := lineAddr(line)
		if (want == "") == ok || (ok && a.String() != want) {
			t.Errorf("%q: %v %v, want %q", line, a, ok, want)
		}
	}
}

package sensor

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// freePorts returns n ports that were free a moment ago on both families.
func freePorts(t *testing.T, network string, n int) []uint16 {
	t.Helper()
	var out []uint16
	for len(out) < n {
		var port int
		if network == "tcp" {
			l, err := net.Listen("tcp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		} else {
			c, err := net.ListenPacket("udp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			port = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		}
		out = append(out, uint16(port))
	}
	return out
}

func collect(t *testing.T, mode probe.Mode) (*Connect, chan probe.Probe) {
	ch := make(chan probe.Probe, 16)
	c := NewConnect(mode, slog.New(slog.NewTextHandler(io.Discard, nil)), func(p probe.Probe) { ch <- p })
	t.Cleanup(c.Close)
	return c, ch
}

func next(t *testing.T, ch chan probe.Probe) probe.Probe {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no probe arrived")
	}
	return probe.Probe{}
}

func TestTCPHitsCarryTheirPortAndBanner(t *testing.T) {
	c, ch := collect(t, probe.ModeTCP)
	ports := freePorts(t, "tcp", 2)
	if got := c.Update(ports, "go away"); len(got) != 2 {
		t.Fatalf("listening on %v", got)
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, port := range ports {
			conn, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
			if err != nil {
				t.Fatal(err)
			}
			banner, _ := io.ReadAll(conn)
			conn.Close()
			if string(banner) != "go away" {
				t.Errorf("banner %q", banner)
			}
			p := next(t, ch)
			want := netip.MustParseAddr(host)
			if p.Src.Addr() != want || p.Dst.Port() != port || p.Proto != probe.TCP || p.Mode != probe.ModeTCP || p.Spoofable {
				t.Errorf("probe %+v, want src %v port %d, not spoofable", p, want, port)
			}
		}
	}
}

func TestUDPHitAndUpdate(t *testing.T) {
	c, ch := collect(t, probe.ModeUDP)
	ports := freePorts(t, "udp", 2)
	c.Update(ports[:1], "")
	send := func(port uint16) {
		conn, err := net.Dial("udp", net.JoinHostPort("::1", strconv.Itoa(int(port))))
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("x"))
		conn.Close()
	}
	send(ports[0])
	if p := next(t, ch); p.Dst.Port() != ports[0] || !p.Spoofable || p.Proto != probe.UDP {
		t.Errorf("probe %+v", p)
	}
	// Swap the port set: the old port closes, the new one opens.
	if got := c.Update(ports[1:], ""); len(got) != 1 || got[0] != ports[1] {
		t.Fatalf("after update listening on %v", got)
	}
	send(ports[1])
	if p := next(t, ch); p.Dst.Port() != ports[1] {
		t.Errorf("probe %+v", p)
	}
	l, err := net.ListenPacket("udp", net.JoinHostPort("", strconv.Itoa(int(ports[0]))))
	if err != nil {
		t.Fatalf("old port still bound: %v", err)
	}
	l.Close()
}

func TestBusyPortIsSkipped(t *testing.T) {
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c, _ := collect(t, probe.ModeTCP)
	free := freePorts(t, "tcp", 1)
	got := c.Update([]uint16{uint16(busy.Addr().(*net.TCPAddr).Port), free[0]}, "")
	if len(got) != 1 || got[0] != free[0] {
		t.Fatalf("listening on %v, want only %d", got, free[0])
	}
}

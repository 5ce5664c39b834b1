package testnet

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestApplySettings(t *testing.T) {
	in := "# comment\nTCP_PORTS=\"1,2\"\n#KILL_RUN_CMD=\"x\"\nRESOLVE_HOST = \"0\"\n"
	got := ApplySettings(in,
		Setting{"RESOLVE_HOST", "1"},
		Setting{"KILL_RUN_CMD", "/bin/echo $TARGET$"},
		Setting{"TCP_PORTS", "143"})
	want := "# comment\nTCP_PORTS=\"143\"\n#KILL_RUN_CMD=\"x\"\nRESOLVE_HOST=\"1\"\nKILL_RUN_CMD=\"/bin/echo $TARGET$\"\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestLogWaitFor(t *testing.T) {
	l := &Log{}
	go func() {
		time.Sleep(50 * time.Millisecond)
		l.Write([]byte("first line\nsecond "))
		l.Write([]byte("line\n"))
	}()
	if got := l.WaitFor(t, regexp.MustCompile(`^second`), 2*time.Second); got != "second line" {
		t.Fatalf("got %q", got)
	}
	m := l.Mark()
	if _, err := l.Await(m, "first", 50*time.Millisecond); err == nil {
		t.Fatal("Await found a line before the mark")
	}
	l.close("done")
	if _, err := l.Await(m, "never", time.Minute); err == nil || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("Await on closed log: %v", err)
	}
}

// TestPair checks that a pair is reachable both ways over IPv4 and IPv6, that processes
// run in the right namespace, and that everything is gone after cleanup.
func TestPair(t *testing.T) {
	var names []string
	t.Run("pair", func(t *testing.T) {
		p := NewPair(t)
		names = []string{p.Defended, p.Scanner}
		out := p.Run(t, p.Defended, "ip", "-br", "addr", "show", "dev", p.DefIf)
		for _, a := range []netip.Addr{p.DefV4, p.DefV6} {
			if !strings.Contains(out, a.String()) {
				t.Errorf("defended interface lacks %s:\n%s", a, out)
			}
		}
		l4 := p.Listen(t, p.Defended, "tcp", ":8080")
		Serve(l4, "hello")
		for _, dst := range []netip.Addr{p.DefV4, p.DefV6} {
			got, err := Connect(p.Scanner, netip.Addr{}, netip.AddrPortFrom(dst, 8080), 3*time.Second)
			if err != nil || got != "hello" {
				t.Errorf("connect to %s: %q, %v", dst, got, err)
			}
		}
		// The scanner must not see the defended host's listener on its own loopback.
		if _, err := Connect(p.Scanner, netip.Addr{}, netip.MustParseAddrPort("127.0.0.1:8080"), time.Second); err == nil {
			t.Error("listener leaked into the scanner namespace")
		}
		// An extra scanner address is usable as a source.
		a4, a6 := p.ExtraScanner(t, 7)
		pc := p.ListenPacket(t, p.Defended, "udp", ":9999")
		for _, src := range []netip.Addr{a4, a6} {
			dst := p.DefV4
			if src.Is6() {
				dst = p.DefV6
			}
			if err := SendUDP(p.Scanner, src, netip.AddrPortFrom(dst, 9999), []byte("x")); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 10)
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := netip.MustParseAddrPort(from.String()).Addr().Unmap(); got != src {
				t.Errorf("datagram from %s, want %s", got, src)
			}
		}
		d := p.Start(t, p.Scanner, "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done")
		d.WaitFor(t, "started", 5*time.Second)
		if pids, _ := NSPids(p.Scanner); len(pids) == 0 {
			t.Error("NSPids found no process in the scanner namespace")
		}
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
		if !strings.Contains(d.String(), "bye") {
			t.Errorf("daemon did not see SIGTERM: %q", d.String())
		}
	})
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

// TestClassicRuns checks the oracle harness: Debian's binary starts in the defended
// namespace with the test's config, logs into the test's syslog socket, records a
// connect in the history file and stops on SIGTERM.
func TestClassicRuns(t *testing.T) {
	p := NewPair(t)
	dir := t.TempDir()
	hist := filepath.Join(dir, "history")
	conf := DebianConfig(t,
		Setting{"TCP_PORTS", "143,31337"},
		Setting{"IGNORE_FILE", filepath.Join(dir, "ignore")},
		Setting{"HISTORY_FILE", hist},
		Setting{"BLOCKED_FILE", filepath.Join(dir, "blocked")},
	)
	os.WriteFile(filepath.Join(dir, "ignore"), []byte("127.0.0.1/32\n0.0.0.0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "portsentry.conf"), []byte(conf), 0o644)

	c := RunClassic(t, p, dir, "tcp")
	if _, err := Connect(p.Scanner, netip.Addr{}, netip.AddrPortFrom(p.DefV4, 143), 3*time.Second); err != nil {
		t.Fatal(err)
	}
	want := "attackalert: Connect from host: " + p.ScanV4.String() + "/" + p.ScanV4.String() + " to TCP port: 143"
	c.WaitFor(t, want, 5*time.Second)
	re := regexp.MustCompile(`^\d+ - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: ` + regexp.QuoteMeta(p.ScanV4.String()+"/"+p.ScanV4.String()) + ` Port: 143 TCP Blocked$`)
	Eventually(t, 5*time.Second, func() (bool, string) {
		l := ReadLines(hist)
		return len(l) == 1 && re.MatchString(l[0]), strings.Join(l, "\n")
	})
	pid := c.Pid
	c.Stop()
	if alive(pid) {
		t.Fatal("classic still running after Stop")
	}
	if err := c.Signal(syscall.SIGTERM); err == nil {
		t.Error("Signal after Stop succeeded")
	}
	t.Logf("classic syslog:\n%s", c.Raw.String())
}

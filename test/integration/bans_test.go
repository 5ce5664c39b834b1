package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// nftSettings switch blocking to the nftables backend with no classic commands.
func nftSettings(extra ...testnet.Setting) []testnet.Setting {
	return append([]testnet.Setting{
		{Key: "BLOCK_TCP", Value: "1"},
		{Key: "BLOCK_UDP", Value: "1"},
		{Key: "BLOCK_BACKEND", Value: "nftables"},
		{Key: "KILL_ROUTE", Value: ""},
		{Key: "KILL_HOSTS_DENY", Value: ""},
	}, extra...)
}

// nftElements lists the addresses and networks in the daemon's nftables sets of the
// defended host (ban4, ban6 and the network sets such as ban6_64).
func nftElements(t *testing.T, p *testnet.Pair) []string {
	return nftTableElements(t, p, "portsentry")
}

// nftTableElements lists the elements of every set of table inet <table>.
func nftTableElements(t *testing.T, p *testnet.Pair, table string) []string {
	t.Helper()
	got, err := p.Try(p.Defended, 5*time.Second, "nft", "list", "table", "inet", table)
	if err != nil {
		return nil // no table yet
	}
	var out []string
	for {
		i := strings.Index(got, "elements = {")
		if i < 0 {
			return out
		}
		got = got[i+len("elements = {"):]
		body := got[:strings.Index(got, "}")]
		for _, e := range strings.Split(body, ",") {
			if f := strings.Fields(e); len(f) > 0 {
				out = append(out, f[0])
			}
		}
	}
}

func containsElem(elems []string, a netip.Addr) bool {
	for _, e := range elems {
		if e == a.String() || (strings.Contains(e, "/") && netip.MustParsePrefix(e).Contains(a)) {
			return true
		}
	}
	return false
}

// TestNftBanLifecycle: a connect scan is banned in the kernel within moments, the
// scanner's next connection to a real service fails while another host's succeeds,
// the ban expires by itself and traffic flows again; over IPv4 and IPv6 (a /64 ban).
func TestNftBanLifecycle(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings(testnet.Setting{Key: "BAN_TIME", Value: "4"})...)
	svc := p.Listen(t, p.Defended, "tcp", ":8080")
	testnet.Serve(svc, "hello")
	d := startOurs(t, p, f, "tcp")
	other, other6 := p.ExtraScanner(t, 40)

	for _, v6 := range []bool{false, true} {
		def, scan := family(p, v6)
		hit(t, p, scan, def, 143)
		testnet.Eventually(t, 5*time.Second, func() (bool, string) {
			e := nftElements(t, p)
			return containsElem(e, scan), fmt.Sprint(e)
		})
		if _, err := testnet.Connect(p.Scanner, scan, netip.AddrPortFrom(def, 8080), time.Second); err == nil {
			t.Errorf("%s: banned scanner still connects", famName(v6))
		}
		friend := other
		if v6 {
			friend = other6
		}
		// The IPv6 scanner shares the defended host's own /64, so its ban is narrowed
		// to the widest prefix that leaves the host out (here ::2/127): a neighbour on
		// the same network is not banned with it.
		if _, err := testnet.Connect(p.Scanner, friend, netip.AddrPortFrom(def, 8080), 3*time.Second); err != nil {
			t.Errorf("unbanned %s cannot connect: %v", friend, err)
		}
	}
	d.WaitFor(t, "attackalert: Ban on "+p.ScanV4.String()+"/32 expired", 10*time.Second)
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		_, err := testnet.Connect(p.Scanner, p.ScanV4, netip.AddrPortFrom(p.DefV4, 8080), time.Second)
		return err == nil, fmt.Sprint(err)
	})
	// Once expired, the host is caught again by its next probe.
	hit(t, p, p.ScanV4, p.DefV4, 143)
	d.WaitFor(t, "offence 2", 5*time.Second)
}

// TestNftBansSurviveRestart: bans are journaled; after a restart (even with the kernel
// table gone, as after `nft flush ruleset`) they are put back, and the banned host is
// "already blocked" rather than banned again.
func TestNftBansSurviveRestart(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings()...)
	d := startOurs(t, p, f, "tcp")
	hit(t, p, p.ScanV4, p.DefV4, 143)
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		e := nftElements(t, p)
		return containsElem(e, p.ScanV4), fmt.Sprint(e)
	})
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	p.Run(t, p.Defended, "nft", "delete", "table", "inet", "portsentry")
	d2 := startOurs(t, p, f, "tcp")
	d2.WaitFor(t, "1 active bans", 5*time.Second)
	if e := nftElements(t, p); !containsElem(e, p.ScanV4) {
		t.Fatalf("ban not re-asserted after restart: %v", e)
	}
	blocked, _ := os.ReadFile(f.Blocked + ".tcp")
	if !strings.Contains(string(blocked), "Host: "+p.ScanV4.String()+"/") {
		t.Errorf("blocked.tcp does not list the carried-over ban:\n%s", blocked)
	}
}

// TestSpoofedFloodIsCapped: a bounded random-source SYN flood against a stealth port
// never makes active bans exceed BAN_CAP, is summarised as a possible spoofed flood, and
// leaves the daemon responsive; a probe "from" the gateway in the same flood is never
// banned.
func TestSpoofedFloodIsCapped(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "hping3")
	t.Parallel()
	p := testnet.NewPair(t)
	at := newAttackers(p)
	f := newFiles(t)
	gw := at.addr(t, 70, false)
	ignored := netip.MustParseAddr("198.51.100.77")
	p.Run(t, p.Defended, "ip", "route", "add", "default", "via", gw.String())
	// `ip netns exec` shows /etc/netns/NAME/resolv.conf as /etc/resolv.conf: the
	// daemon's resolver is a test address.
	resolver := netip.MustParseAddr(fmt.Sprintf("198.18.%d.53", p.Index))
	nsEtc := filepath.Join("/etc/netns", p.Defended)
	if err := os.MkdirAll(nsEtc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(nsEtc) })
	writeFile(t, filepath.Join(nsEtc, "resolv.conf"), "nameserver "+resolver.String()+"\n")
	f.write(t, []string{ignored.String()}, nftSettings(
		testnet.Setting{Key: "BAN_CAP", Value: "50"},
		testnet.Setting{Key: "BAN_RATE", Value: "600"},
		testnet.Setting{Key: "TCP_PORTS", Value: "31337"})...)
	d := startOurs(t, p, f, "stcp")
	// Spoofed probes naming the gateway, the resolver and an ignored host, while there
	// is still room for bans: an ordinary source sent last is banned, so theirs were
	// refused for what they are, not for want of room.
	named := []netip.Addr{gw, ignored, resolver}
	for _, a := range named {
		injectTCP(t, p, a, p.DefV4, 31337, testnet.TCPSyn)
	}
	control := at.addr(t, 71, false)
	injectTCP(t, p, control, p.DefV4, 31337, testnet.TCPSyn)
	d.WaitFor(t, "Host "+control.String()+"/32 has been banned", 5*time.Second)
	// 3000 packets at 100 µs intervals: about 0.3 s, bounded in count and time.
	p.Try(p.Scanner, 20*time.Second, "hping3", "-q", "-c", "3000", "-i", "u100", "--rand-source", "-S", "-p", "31337", p.DefV4.String())
	d.WaitFor(t, "Possible spoofed flood", 15*time.Second)
	e := nftElements(t, p)
	if len(e) > 50 {
		t.Errorf("%d bans in the kernel, cap is 50", len(e))
	}
	for _, a := range named {
		if containsElem(e, a) {
			t.Errorf("%s was banned", a)
		}
	}
	noMentions(t, d.Log, 0, "a spoofed probe naming a protected host", named...)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("daemon not responsive: %v", err)
	}
	d.WaitFor(t, "adminalert: Configuration reloaded.", 5*time.Second)
	// The stated bound (docs/configuration.md): the detector's tables are fixed-size, so
	// a flood of distinct sources leaves the daemon well under 64 MiB.
	if kib := peakRSSKiB(t, d.Pid()); kib > 64<<10 {
		t.Errorf("peak RSS %d KiB after the flood, bound is 64 MiB", kib)
	}
}

// peakRSSKiB reads VmHWM of a process.
func peakRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kib int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kib)
			return kib
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestOperatorControl: list, status, block and unblock against the running daemon
// through its control socket, checked against the kernel's set.
func TestOperatorControl(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings()...)
	sock := filepath.Join(f.Dir, "control.sock")
	startOurs(t, p, f, "tcp")
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(daemonBin, append(args, "-socket", sock)...).CombinedOutput()
		return string(out), err
	}
	hit(t, p, p.ScanV4, p.DefV4, 143)
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		out, _ := ctl("list")
		return strings.Contains(out, p.ScanV4.String()) && strings.Contains(out, "tcp 143"), out
	})
	if out, err := ctl("status", "-json"); err != nil || !strings.Contains(out, `"backend": "nftables"`) || !strings.Contains(out, `"active_bans": 1`) {
		t.Errorf("status: %v\n%s", err, out)
	}
	// Lifting it takes effect in the kernel at once.
	if out, err := ctl("unblock", p.ScanV4.String()); err != nil {
		t.Fatalf("unblock: %v\n%s", err, out)
	}
	if e := nftElements(t, p); containsElem(e, p.ScanV4) {
		t.Errorf("still in the kernel after unblock: %v", e)
	}
	// The blocked file is a view of what is blocked now; the history keeps the record.
	if blocked, _ := os.ReadFile(f.Blocked + ".tcp"); strings.Contains(string(blocked), "/"+p.ScanV4.String()+" ") {
		t.Errorf("blocked.tcp still lists %s after unblock:\n%s", p.ScanV4, blocked)
	}
	if history, _ := os.ReadFile(f.History); !strings.Contains(string(history), "/"+p.ScanV4.String()+" ") {
		t.Errorf("the history lost %s", p.ScanV4)
	}
	// A hand-made ban lands in the kernel; one covering this host is refused.
	other, _ := p.ExtraScanner(t, 41)
	if out, err := ctl("block", other.String(), "2h"); err != nil || !strings.Contains(out, "blocked "+other.String()) {
		t.Fatalf("block: %v\n%s", err, out)
	}
	if e := nftElements(t, p); !containsElem(e, other) {
		t.Errorf("operator ban not in the kernel: %v", e)
	}
	if out, err := ctl("block", p.DefV4.String()); err == nil || !strings.Contains(out, "refused") {
		t.Errorf("blocking this host's own address was accepted: %s", out)
	}
	if out, err := ctl("block", "0.0.0.0/0"); err == nil || !strings.Contains(out, "too wide") {
		t.Errorf("blocking everything was accepted: %s", out)
	}
}

// TestKillDuringBanStorm: SIGKILL the daemon while it bans a stream of sources, start
// it again: the journal has no corrupt line, and every ban it holds is in the kernel.
func TestKillDuringBanStorm(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "hping3")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings(
		testnet.Setting{Key: "BAN_CAP", Value: "0"},
		testnet.Setting{Key: "BAN_RATE", Value: "0"},
		testnet.Setting{Key: "TCP_PORTS", Value: "31337"})...)
	d := startOurs(t, p, f, "stcp")
	storm := p.Exec(p.Scanner, "hping3", "-q", "-c", "20000", "-i", "u50", "--rand-source", "-S", "-p", "31337", p.DefV4.String())
	if err := storm.Start(); err != nil {
		t.Fatal(err)
	}
	defer storm.Process.Kill()
	d.WaitFor(t, "has been banned via nftables", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.Done()
	storm.Process.Kill()
	storm.Wait()
	// Start from an empty kernel, so that everything found there after the restart was
	// put back from the journal.
	p.Run(t, p.Defended, "nft", "delete", "table", "inet", "portsentry")

	d2 := startOurs(t, p, f, "stcp")
	line := d2.WaitFor(t, "active bans from", 10*time.Second)
	var n int
	if _, err := fmt.Sscanf(line[strings.Index(line, "; ")+2:], "%d active bans", &n); err != nil || n == 0 {
		t.Fatalf("cannot read the ban count from %q (%v)", line, err)
	}
	for _, l := range d2.Lines() {
		if strings.Contains(l, "unreadable ban journal line") {
			t.Errorf("corrupt journal after SIGKILL: %s", l)
		}
	}
	e := nftElements(t, p)
	t.Logf("after SIGKILL: %d bans in the journal, %d in the kernel", n, len(e))
	if len(e) != n {
		t.Errorf("journal holds %d bans, kernel %d", n, len(e))
	}
}

// TestOtherBackends: routes, ipset and hosts.deny each take a detected scanner's ban,
// lift it on unblock, and lose an operator's short ban when it expires.
func TestOtherBackends(t *testing.T) {
	needDaemon(t)
	for _, c := range []struct {
		backend string
		tools   []string
		holds   func(t *testing.T, p *testnet.Pair, f files, a netip.Addr) bool
	}{
		{"route", nil, func(t *testing.T, p *testnet.Pair, f files, a netip.Addr) bool {
			out, _ := p.Try(p.Defended, 5*time.Second, "ip", "route", "show", "proto", "181")
			return strings.Contains(out, "blackhole "+a.String()+" ") || strings.Contains(out, "blackhole "+a.String()+"\n")
		}},
		{"ipset", []string{"ipset", "iptables"}, func(t *testing.T, p *testnet.Pair, f files, a netip.Addr) bool {
			out, _ := p.Try(p.Defended, 5*time.Second, "ipset", "list", "portsentry4")
			return strings.Contains(out, "\n"+a.String()+" ")
		}},
		{"hostsdeny", nil, func(t *testing.T, p *testnet.Pair, f files, a netip.Addr) bool {
			data, _ := os.ReadFile(f.HostsDeny)
			return strings.Contains(string(data), "ALL: "+a.String()+"\n")
		}},
	} {
		t.Run(c.backend, func(t *testing.T) {
			testnet.Require(t, c.tools...)
			t.Parallel()
			p := testnet.NewPair(t)
			f := newFiles(t)
			f.write(t, nil,
				testnet.Setting{Key: "BLOCK_TCP", Value: "1"},
				testnet.Setting{Key: "BLOCK_BACKEND", Value: c.backend},
				testnet.Setting{Key: "KILL_ROUTE", Value: ""},
				testnet.Setting{Key: "KILL_HOSTS_DENY", Value: ""})
			sock := filepath.Join(f.Dir, "control.sock")
			ctl := func(args ...string) string {
				out, err := exec.Command(daemonBin, append(args, "-socket", sock)...).CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			startOurs(t, p, f, "tcp")
			hit(t, p, p.ScanV4, p.DefV4, 143)
			testnet.Eventually(t, 5*time.Second, func() (bool, string) {
				return c.holds(t, p, f, p.ScanV4), "ban not applied"
			})
			ctl("unblock", p.ScanV4.String())
			if c.holds(t, p, f, p.ScanV4) {
				t.Errorf("still banned after unblock")
			}
			other, _ := p.ExtraScanner(t, 42)
			ctl("block", other.String(), "2s")
			if !c.holds(t, p, f, other) {
				t.Fatalf("operator ban not applied")
			}
			testnet.Eventually(t, 8*time.Second, func() (bool, string) {
				return !c.holds(t, p, f, other), "ban did not expire"
			})
		})
	}
}

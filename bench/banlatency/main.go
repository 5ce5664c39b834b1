// Command banlatency measures how long a stealth probe takes to become a ban in the
// kernel: from the moment a spoofed SYN leaves the scanner namespace until its source
// is an element of the daemon's nftables set, and whether the same source's second SYN,
// sent 20 ms after the first, is dropped by that ban. It builds and removes its own
// namespaces. Run as root from the module root: go run ./bench/banlatency
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/respond/nft"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

func main() {
	n := flag.Int("n", 200, "probes (distinct sources, at most 240)")
	flag.Parse()
	if err := run(min(*n, 240)); err != nil {
		fmt.Fprintln(os.Stderr, "banlatency:", err)
		os.Exit(1)
	}
}

const (
	defAddr = "198.18.201.1"
	port    = 31337
)

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v: %s", args, err, out)
	}
	return nil
}

func run(n int) error {
	pid := os.Getpid()
	def, scan := fmt.Sprintf("pbl%dd", pid), fmt.Sprintf("pbl%ds", pid)
	defer exec.Command("ip", "netns", "del", def).Run()
	defer exec.Command("ip", "netns", "del", scan).Run()
	for _, c := range [][]string{
		{"ip", "netns", "add", def}, {"ip", "netns", "add", scan},
		{"ip", "link", "add", "pblv0", "netns", def, "type", "veth", "peer", "name", "pblv1", "netns", scan},
		{"ip", "-n", def, "addr", "add", defAddr + "/24", "dev", "pblv0"},
		{"ip", "-n", scan, "addr", "add", "198.18.201.2/24", "dev", "pblv1"},
		{"ip", "-n", def, "link", "set", "pblv0", "up"}, {"ip", "-n", scan, "link", "set", "pblv1", "up"},
		{"ip", "-n", def, "link", "set", "lo", "up"},
	} {
		if err := sh(c...); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "banlatency")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "portsentry")
	version, _ := exec.Command("scripts/version.sh").Output() // as make build stamps it
	if err := sh("go", "build", "-ldflags", "-X main.version="+strings.TrimSpace(string(version)), "-o", bin, "./cmd/portsentry"); err != nil {
		return err
	}
	conf := fmt.Sprintf("TCP_PORTS=\"%d\"\nHISTORY_FILE=\"%s/history\"\nBLOCKED_FILE=\"%s/blocked\"\n"+
		"BLOCK_TCP=\"1\"\nBLOCK_BACKEND=\"nftables\"\nBAN_RATE=\"0\"\nCONTROL_SOCKET=\"\"\n", port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	daemon := exec.Command("ip", "netns", "exec", def, bin, "-c", filepath.Join(dir, "conf"), "-stcp")
	out, _ := daemon.StderrPipe()
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() { daemon.Process.Signal(syscall.SIGTERM); daemon.Wait() }()
	if err := waitReady(out); err != nil {
		return err
	}
	h, err := netns.GetFromName(def)
	if err != nil {
		return err
	}
	defer h.Close()
	k, err := nft.New(nft.Options{Netns: h}, nil)
	if err != nil {
		return err
	}
	defer k.Close()
	send, err := rawSender(scan)
	if err != nil {
		return err
	}
	defer unix.Close(send)

	var lat []time.Duration
	dropped := 0
	for i := 0; i < n; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, 201, byte(10 + i)})
		pkt := testnet.BuildTCP(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(netip.MustParseAddr(defAddr), port), testnet.TCPSyn, nil)
		before, _, _ := k.Counters()
		t0 := time.Now()
		if err := sendto(send, pkt); err != nil {
			return err
		}
		d, ok := waitBanned(k, src, t0)
		if ok {
			lat = append(lat, d)
		}
		time.Sleep(time.Until(t0.Add(20 * time.Millisecond)))
		if err := sendto(send, pkt); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		if after, _, _ := k.Counters(); after > before {
			dropped++
		}
	}
	report(n, lat, dropped)
	return nil
}

func waitReady(out interface{ Read([]byte) (int, error) }) error {
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(20*time.Second, func() {})
	defer deadline.Stop()
	for sc.Scan() {
		if strings.Contains(sc.Text(), "now active and listening") {
			go func() {
				for sc.Scan() {
				}
			}()
			return nil
		}
	}
	return fmt.Errorf("daemon did not start")
}

// waitBanned polls the kernel's set until src is in it (at most 1 s).
func waitBanned(k *nft.Backend, src netip.Addr, t0 time.Time) (time.Duration, bool) {
	for time.Since(t0) < time.Second {
		bans, err := k.List()
		if err == nil && slices.ContainsFunc(bans, func(b nft.Element) bool { return b.Prefix.Contains(src) }) {
			return time.Since(t0), true
		}
		time.Sleep(100 * time.Microsecond)
	}
	return 0, false
}

// rawSender opens an IPPROTO_RAW socket inside the scanner namespace.
func rawSender(ns string) (int, error) {
	fd := -1
	err := testnet.Do(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	return fd, err
}

func sendto(fd int, pkt []byte) error {
	var to unix.SockaddrInet4
	copy(to.Addr[:], pkt[16:20])
	return unix.Sendto(fd, pkt, 0, &to)
}

func report(n int, lat []time.Duration, dropped int) {
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	fmt.Printf("probe → ban in the kernel, %d probes from distinct sources (%d banned within 1 s)\n", n, len(lat))
	fmt.Printf("  median %.2f ms   p90 %.2f ms   p99 %.2f ms   max %.2f ms\n",
		ms(pct(0.5)), ms(pct(0.9)), ms(pct(0.99)), ms(pct(1)))
	fmt.Printf("  second probe 20 ms after the first dropped by the ban: %d of %d\n", dropped, n)
	verdict := "MET"
	if ms(pct(0.99)) >= 5 {
		verdict = "NOT met"
	}
	fmt.Printf("  target p99 < 5 ms: %s\n", verdict)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

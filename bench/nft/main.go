// Command nft measures the nftables blocking backend against the classic KILL_ROUTE
// command path, in a throw-away network namespace. Run it as root:
//
//	go run ./bench/nft [-n 100000] [-classic 1000]
//
// In one run it times: Apply of n bans (mixed IPv4/IPv6) into an empty set; `classic`
// bans through respond.Classic with KILL_ROUTE="ip route add blackhole $TARGET$" (one
// /bin/sh -c fork per host, as PortSentry 1.2 does); and a restart: a new Backend,
// Setup and Apply of the same n bans from memory as a journal replay would, once over
// the kernel state left by the previous process and once after a teardown (a reboot).
// It prints bans per second for each, the nft/classic ratio and whether the targets
// (insert under 2 s, re-assert under 3 s) were met; it exits 1 when one was not.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/vishvananda/netns"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/respond/nft"
)

func main() {
	n := flag.Int("n", 100000, "bans to insert into nftables")
	classicN := flag.Int("classic", 1000, "bans to add through the classic KILL_ROUTE command")
	flag.Parse()
	if err := run(*n, *classicN); err != nil {
		fmt.Fprintln(os.Stderr, "bench/nft:", err)
		os.Exit(2)
	}
}

// addrs makes n distinct addresses, every third one IPv6 (in 2001:db8::/32), the rest
// IPv4 from 10.0.0.0/8, with timeouts of one hour.
func bans(n int) []nft.Ban {
	out := make([]nft.Ban, 0, n)
	for i := range n {
		var a netip.Addr
		if i%3 == 2 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			a = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		out = append(out, nft.Ban{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: time.Hour})
	}
	return out
}

func run(n, classicN int) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (creates a network namespace)")
	}
	name := fmt.Sprintf("psnftbench%d", os.Getpid())

	// Create the namespace on a locked thread and keep that thread in it: the classic
	// commands are forked from it and so run inside the namespace, like the daemon's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	defer func() {
		_ = netns.Set(orig)
		ns.Close()
		if derr := netns.DeleteNamed(name); derr != nil && err == nil {
			err = derr
		}
	}()
	log := slog.New(slog.DiscardHandler)
	all := bans(n)
	fmt.Printf("kernel %s, namespace %s, GOMAXPROCS %d\n", kernel(), name, runtime.GOMAXPROCS(0))

	// 1. Insert n bans into an empty set.
	b, err := nft.New(nft.Options{Netns: ns}, log)
	if err != nil {
		return err
	}
	if err := b.Setup(); err != nil {
		return err
	}
	start := time.Now()
	if err := b.Apply(all); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	insert := time.Since(start)
	v4, v6, err := b.Count()
	if err != nil {
		return err
	}
	if v4+v6 != n {
		return fmt.Errorf("kernel holds %d+%d bans after applying %d", v4, v6, n)
	}
	b.Close()
	report("nft insert", n, insert)
	fmt.Printf("  kernel holds %d IPv4 + %d IPv6 = %d (sent %d)\n", v4, v6, v4+v6, n)

	// 2. The classic path: one /bin/sh -c "ip route add blackhole X" per host.
	c := respond.NewClassic(respond.ClassicConfig{
		BlockTCP:  config.BlockKill,
		KillRoute: "ip route add blackhole $TARGET$",
	}, log)
	start = time.Now()
	for i := range classicN {
		a := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		if !c.Respond(context.Background(), respond.Target{Addr: a, Name: a.String(), Port: 1, Mode: probe.ModeTCP}).Blocked {
			return fmt.Errorf("classic KILL_ROUTE failed for %v", a)
		}
	}
	classic := time.Since(start)
	report("classic KILL_ROUTE", classicN, classic)

	// 3a. Restart over the kernel state the previous process left.
	reassertKept, reassertKeptTotal, err := restart(ns, log, all)
	if err != nil {
		return err
	}
	report("restart, table kept (Apply)", n, reassertKept)
	report("restart, table kept (New+Setup+Apply)", n, reassertKeptTotal)

	// 3b. Restart after a reboot: nothing in the kernel.
	if b, err = nft.New(nft.Options{Netns: ns}, log); err != nil {
		return err
	}
	if err := b.Teardown(); err != nil {
		return err
	}
	b.Close()
	_, reassertEmptyTotal, err := restart(ns, log, all)
	if err != nil {
		return err
	}
	report("restart, empty kernel (New+Setup+Apply)", n, reassertEmptyTotal)

	// 4. The same verified: Apply reads the sets back and checks every ban.
	b, err = nft.New(nft.Options{Netns: ns, Verify: true}, log)
	if err != nil {
		return err
	}
	start = time.Now()
	if err := b.Apply(all); err != nil {
		return fmt.Errorf("verified apply: %w", err)
	}
	report("re-apply with Verify (read-back)", n, time.Since(start))
	_ = b.Teardown()
	b.Close()

	nftRate := float64(n) / insert.Seconds()
	classicRate := float64(classicN) / classic.Seconds()
	fmt.Printf("ratio nft/classic: %.0fx\n", nftRate/classicRate)
	ok1 := insert < 2*time.Second
	ok2 := reassertKeptTotal < 3*time.Second && reassertEmptyTotal < 3*time.Second
	fmt.Printf("target insert %d bans < 2s: %v (%.3fs)\n", n, verdict(ok1), insert.Seconds())
	fmt.Printf("target restart re-assert %d bans < 3s: %v (%.3fs kept, %.3fs empty)\n", n, verdict(ok2),
		reassertKeptTotal.Seconds(), reassertEmptyTotal.Seconds())
	if !ok1 || !ok2 {
		return fmt.Errorf("target missed")
	}
	return nil
}

// restart is what the daemon does at start: connect, Setup, replay the journal's bans.
// It returns the time of the Apply alone and of New+Setup+Apply; the count check
// afterwards is not timed.
func restart(ns netns.NsHandle, log *slog.Logger, all []nft.Ban) (apply, total time.Duration, err error) {
	start := time.Now()
	b, err := nft.New(nft.Options{Netns: ns}, log)
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	if err := b.Setup(); err != nil {
		return 0, 0, err
	}
	applyStart := time.Now()
	if err := b.Apply(all); err != nil {
		return 0, 0, fmt.Errorf("restart apply: %w", err)
	}
	apply, total = time.Since(applyStart), time.Since(start)
	v4, v6, err := b.Count()
	if err != nil {
		return 0, 0, err
	}
	if v4+v6 != len(all) {
		return 0, 0, fmt.Errorf("kernel holds %d bans after re-asserting %d", v4+v6, len(all))
	}
	return apply, total, nil
}

func report(what string, n int, d time.Duration) {
	fmt.Printf("%-42s %7d bans in %8.3fs = %10.0f bans/s\n", what, n, d.Seconds(), float64(n)/d.Seconds())
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return string(b[:len(b)-1])
}

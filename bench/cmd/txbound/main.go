// Command txbound runs a packet generator and stops it once an interface has sent a
// given number of packets. bench/flood.sh needs it because hping3 --flood ignores -c.
//
//	txbound -iface IF -max N -- COMMAND [ARG...]
//
// It runs COMMAND, reads /sys/class/net/IF/statistics/tx_packets every 5 ms, and sends
// COMMAND SIGINT (then SIGKILL a second later) once the counter has grown by N, or when
// txbound itself gets SIGINT or SIGTERM. Run it in the sender's network namespace. When COMMAND exits it prints one line to stdout:
//
//	txbound: sent=N capped=true|false seconds=S
//
// The bound is exact to within one polling interval's worth of packets. COMMAND's
// stdout and stderr are passed through; the exit status is 0 unless txbound itself
// failed (a generator stopped by a signal or by timeout(1) is the normal case).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	iface := flag.String("iface", "", "interface whose tx_packets counter is watched")
	limit := flag.Uint64("max", 0, "stop the command after this many packets (0: no bound)")
	flag.Parse()
	if *iface == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: txbound -iface IF -max N -- COMMAND [ARG...]")
		os.Exit(2)
	}
	if err := run(*iface, *limit, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "txbound: %v\n", err)
		os.Exit(1)
	}
}

func run(iface string, limit uint64, argv []string) error {
	path := "/sys/class/net/" + iface + "/statistics/tx_packets"
	start, err := counter(path)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	capped := false
	var kill <-chan time.Time
loop:
	for {
		select {
		case <-done:
			break loop
		case <-sig:
			_ = cmd.Process.Signal(syscall.SIGINT)
			if kill == nil {
				kill = time.After(time.Second)
			}
		case <-kill:
			_ = cmd.Process.Kill()
			kill = nil
		case <-tick.C:
			if capped || limit == 0 {
				continue
			}
			n, err := counter(path)
			if err == nil && n-start >= limit {
				capped = true
				_ = cmd.Process.Signal(syscall.SIGINT)
				kill = time.After(time.Second)
			}
		}
	}
	secs := time.Since(t0).Seconds()
	end, err := counter(path)
	if err != nil {
		return err
	}
	fmt.Printf("txbound: sent=%d capped=%t seconds=%.3f\n", end-start, capped, secs)
	return nil
}

func counter(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

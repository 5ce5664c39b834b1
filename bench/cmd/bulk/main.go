// Command bulk is the bulk TCP transfer of bench/flood.sh's "established" scenario:
// traffic on an established connection, which the stealth sensors' kernel filter must
// drop before it reaches user space.
//
//	bulk recv ADDR:PORT          accept one connection, read and discard until EOF
//	bulk send ADDR:PORT BYTES    connect and write BYTES bytes, then close
//
// The receiver prints "bulk: listening" once it accepts connections. Each side ends
// with one line giving what it moved and the CPU it used itself (getrusage, user+system):
//
//	bulk: role=send bytes=1073741824 seconds=1.234 cpu=0.456
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

const chunk = 256 << 10

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bulk: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "recv":
		return recv(args[1])
	case len(args) == 3 && args[0] == "send":
		n, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad byte count %q", args[2])
		}
		return send(args[1], n)
	}
	return fmt.Errorf("usage: bulk recv ADDR:PORT | bulk send ADDR:PORT BYTES")
}

func recv(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("bulk: listening")
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, conn, make([]byte, chunk))
	report("recv", n, time.Since(start))
	return err
}

func send(addr string, total int64) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	start := time.Now()
	buf := make([]byte, chunk)
	var sent int64
	for sent < total {
		b := buf
		if left := total - sent; left < int64(len(b)) {
			b = b[:left]
		}
		n, err := conn.Write(b)
		sent += int64(n)
		if err != nil {
			conn.Close()
			report("send", sent, time.Since(start))
			return err
		}
	}
	err = conn.Close()
	report("send", sent, time.Since(start))
	return err
}

func report(role string, n int64, d time.Duration) {
	var ru syscall.Rusage
	cpu := -1.0
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = tv(ru.Utime) + tv(ru.Stime)
	}
	fmt.Printf("bulk: role=%s bytes=%d seconds=%.3f cpu=%.3f\n", role, n, d.Seconds(), cpu)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// Command syslogsink stands in for /dev/log while bench/flood.sh runs Debian's
// PortSentry, which can log only through syslog(3).
//
//	syslogsink SOCKET FILE
//
// It listens on the unix datagram socket SOCKET (mode 0666) and appends every message to
// FILE, one per line, with the "<pri>date ident[pid]: " header removed. It runs until
// SIGTERM or SIGINT, then removes SOCKET.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
)

// header matches what glibc's syslog(3) sends: "<29>Nov 24 16:19:00 portsentry[123]: ".
var header = regexp.MustCompile(`^<\d+>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d [^ :\[]+(?:\[\d+\])?: `)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: syslogsink SOCKET FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "syslogsink: %v\n", err)
		os.Exit(1)
	}
}

func run(sock, file string) error {
	out, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	_ = os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o666); err != nil {
		return err
	}
	// A deep receive queue: a flood makes the daemon log in bursts.
	_ = conn.SetReadBuffer(4 << 20)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		conn.Close()
	}()

	w := bufio.NewWriter(out)
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			break // closed on a signal
		}
		msg := strings.TrimRight(string(buf[:n]), "\n\x00")
		fmt.Fprintln(w, header.ReplaceAllString(msg, ""))
		// Flushed at once: the script waits for lines (readiness) while this runs.
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return w.Flush()
}

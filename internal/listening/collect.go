//go:build linux

package listening

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// dumpAttempts bounds the retries of a snapshot interrupted by concurrent socket
// changes (NLM_F_DUMP_INTR); each retry is a fresh dump of all four tables.
const dumpAttempts = 5

// errNoDiag marks a failure to open the sock_diag socket at all (no
// NETLINK_SOCK_DIAG, or a sandbox forbidding it): every dump falls back to /proc.
var errNoDiag = errors.New("sock_diag unavailable")

// source reads the listening sockets: the kernel's sock_diag dumps, and /proc/net for
// any dump the kernel cannot serve. The caller serialises its use.
type source struct {
	ns       netns.NsHandle // closed (-1): the namespace of the calling thread
	procOnly bool           // tests: skip sock_diag
	buf      []byte         // receive buffer, kept between refreshes
	// conn is kept open between refreshes: a refresh is then a few sends and receives,
	// not also a socket, a setsockopt and a close (and, with ns, a namespace switch).
	// A netlink socket answers for the namespace it was created in. Closed on error.
	conn *diagConn
}

// collect takes one consistent reading of the sockets of proto, or of both protocols
// when proto is 0. fallback is the sock_diag error that made any part come from
// /proc/net, nil if none did (the caller logs a change of source).
func (s *source) collect(proto probe.Proto) (ls []listener, fallback, err error) {
	for range dumpAttempts {
		ls, fallback, err = s.gather(proto)
		if !errors.Is(err, errInterrupted) {
			return ls, fallback, err
		}
	}
	return nil, fallback, fmt.Errorf("%w, %d times", err, dumpAttempts)
}

// gather runs the dumps of proto on one sock_diag socket, each falling back to
// /proc/net on its own: udp_diag may be a missing module while inet_diag works.
func (s *source) gather(proto probe.Proto) (ls []listener, fallback, err error) {
	connErr := s.open()
	for _, k := range kinds {
		if proto != 0 && k.proto != proto {
			continue
		}
		var part []listener
		err := connErr
		if s.conn != nil {
			part, err = s.conn.dump(k)
		}
		if unsupported(err) {
			fallback = cmp.Or(fallback, err)
			err = inNetns(s.ns, func() (err error) {
				part, err = readProc(k)
				return err
			})
		}
		if err != nil {
			if !errors.Is(err, errInterrupted) {
				s.close() // its state is unknown: start afresh next time
			}
			return nil, fallback, err
		}
		ls = append(ls, part...)
	}
	return ls, fallback, nil
}

// open makes sure conn is open, or returns an error wrapping errNoDiag.
func (s *source) open() error {
	if s.conn != nil {
		return nil
	}
	if s.procOnly {
		return fmt.Errorf("%w: disabled", errNoDiag)
	}
	if s.buf == nil {
		s.buf = make([]byte, recvBufSize)
	}
	var conn *diagConn
	err := inNetns(s.ns, func() (err error) {
		conn, err = openDiag(s.buf)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errNoDiag, err)
	}
	s.conn = conn
	return nil
}

// close releases conn, if open.
func (s *source) close() {
	if s.conn != nil {
		s.conn.close()
		s.conn = nil
	}
}

// unsupported reports errors that mean "this kernel has no sock_diag for that": no
// NETLINK_SOCK_DIAG at all, or no handler for the family or protocol.
func unsupported(err error) bool {
	for _, e := range []error{errNoDiag, unix.ENOENT, unix.EPROTONOSUPPORT, unix.EAFNOSUPPORT, unix.EOPNOTSUPP} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// inNetns runs fn with the calling OS thread in namespace ns, or directly when ns is
// not open. Namespaces belong to threads, not goroutines, so fn runs on a fresh
// goroutine locked to its thread; if the thread cannot be switched back it stays
// locked and the runtime discards it when the goroutine ends, so no other goroutine
// ever runs in the wrong namespace.
func inNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- runLocked(ns, fn)
	}()
	return <-errc
}

// runLocked is inNetns' body on a locked thread. It unlocks the thread only when the
// thread is back in its original namespace.
func runLocked(ns netns.NsHandle, fn func() error) error {
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread() // setns failed: the thread never left
		return fmt.Errorf("entering network namespace: %w", err)
	}
	err = fn()
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

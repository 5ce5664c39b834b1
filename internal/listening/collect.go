//go:build linux

package listening

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a snapshot interrupted by concurrent socket
// changes (NLM_F_DUMP_INTR); each retry is a fresh dump of all four tables.
const dumpAttempts = 5

// errNoDiag marks a failure to open the sock_diag socket at all (no
// NETLINK_SOCK_DIAG, or a sandbox forbidding it): every dump falls back to /proc.
var errNoDiag = errors.New("sock_diag unavailable")

// source reads the listening sockets: the kernel's sock_diag dumps, and /proc/net for
// any dump the kernel cannot serve.
type source struct {
	ns       netns.NsHandle // closed (-1): the namespace of the calling thread
	procOnly bool           // tests: skip sock_diag
	buf      []byte         // receive buffer, kept between refreshes (the caller serialises them)
}

// collect takes one consistent reading. fallback is the sock_diag error that made any
// part come from /proc/net, nil if none did (the caller logs a change of source).
func (s *source) collect() (ls []listener, fallback, err error) {
	err = inNetns(s.ns, func() error {
		for range dumpAttempts {
			ls, fallback, err = s.gather()
			if !errors.Is(err, errInterrupted) {
				return err
			}
		}
		return fmt.Errorf("%w, %d times", err, dumpAttempts)
	})
	return ls, fallback, err
}

// gather runs the four dumps on one sock_diag socket, each falling back to /proc/net
// on its own: udp_diag may be a missing module while inet_diag works.
func (s *source) gather() (ls []listener, fallback, err error) {
	conn, connErr := s.open()
	if conn != nil {
		defer conn.close()
	}
	for _, k := range kinds {
		var part []listener
		err := connErr
		if conn != nil {
			part, err = conn.dump(k)
		}
		if unsupported(err) {
			fallback = cmp.Or(fallback, err)
			part, err = readProc(k)
		}
		if err != nil {
			return nil, fallback, err
		}
		ls = append(ls, part...)
	}
	return ls, fallback, nil
}

// open returns a sock_diag socket, or an error wrapping errNoDiag.
func (s *source) open() (*diagConn, error) {
	if s.procOnly {
		return nil, fmt.Errorf("%w: disabled", errNoDiag)
	}
	if s.buf == nil {
		s.buf = make([]byte, recvBufSize)
	}
	conn, err := openDiag(s.buf)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoDiag, err)
	}
	return conn, nil
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

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// Capability bit numbers (linux/capability.h).
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capNetRaw         = 13
)

// checkPrivileges refuses to start without root or the capabilities the modes need.
func checkPrivileges(modes []probe.Mode) error {
	if os.Geteuid() == 0 {
		return nil
	}
	need := []int{capNetAdmin}
	for _, m := range modes {
		if m.Connect() {
			need = append(need, capNetBindService)
		} else {
			need = append(need, capNetRaw)
		}
	}
	eff, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("%w (%v)", errNotPrivileged, err)
	}
	for _, c := range need {
		if eff&(1<<c) == 0 {
			return errNotPrivileged
		}
	}
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}

// detachedEnv marks the re-executed background copy of the daemon.
const detachedEnv = "PORTSENTRY_DETACHED"

// detach starts a copy of this process in a new session with no terminal, as classic
// PortSentry's fork did (old init scripts expect the command to return), and returns.
// The copy writes the pidfile itself, once it runs.
// Go cannot fork safely, so the copy is a fresh exec of the same binary.
func detach(stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "portsentry: %v\n", err)
		return exitError
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "portsentry: cannot detach: %v\n", err)
		return exitError
	}
	return exitOK
}

// writePidfile writes the process id to path, a regular file: a FIFO there would block
// the start, and a device (/dev/null) would be removed at exit.
func writePidfile(path string) error {
	f, err := regfile.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("-pidfile: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return errors.Join(err, f.Close())
}

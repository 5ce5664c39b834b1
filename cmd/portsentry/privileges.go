package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/probe"
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

func writePidfile(path string) error {
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

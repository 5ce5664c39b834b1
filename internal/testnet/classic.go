package testnet

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ClassicBinary is Debian's PortSentry 1.2, the reference oracle.
const ClassicBinary = "/usr/sbin/portsentry"

// ClassicReady is the line classic logs once all its listeners are set up.
const ClassicReady = "adminalert: PortSentry is now active and listening."

// Classic is a running Debian PortSentry 1.2 inside a pair's defended namespace.
//
// Classic has no config flag and no log file: it reads the compiled-in
// /etc/portsentry/portsentry.conf, appends to the compiled-in /etc/hosts.deny and logs
// only through syslog(3) to /dev/log. RunClassic therefore starts it in a private mount
// namespace (the one `ip netns exec` creates) in which /etc and /dev are replaced by
// tmpfs copies made of symlinks to the real entries, except that /etc/portsentry points
// to the test's config directory, /etc/hosts.deny to HostsDeny and /dev/log to a
// unixgram socket owned by the test. (Bind-mounting straight onto /etc/hosts.deny and
// /dev/log is not possible: neither exists on a stock machine, and creating them would
// change the host.) Nothing outside that mount namespace changes.
//
// Log holds the syslog messages, each with the "<pri>date portsentry[pid]: " header
// removed: exactly the text after the PID, e.g.
// "attackalert: Connect from host: 198.18.1.2/198.18.1.2 to TCP port: 143".
type Classic struct {
	*Log
	Raw       *Log   // the syslog datagrams as received
	Pid       int    // the daemon (after classic's fork)
	Mode      string // "tcp", "udp", ...
	ConfDir   string // mounted at /etc/portsentry
	HostsDeny string // the file classic sees as /etc/hosts.deny

	runDir  string
	sock    *net.UnixConn
	stopped bool
}

// RunClassic starts Debian's portsentry in mode ("tcp", "-tcp", "udp", ...) inside
// p.Defended with confDir (holding portsentry.conf) as /etc/portsentry, and waits until
// it says it is active. Cleanup kills it. The test is skipped if the binary is missing.
func RunClassic(t testing.TB, p *Pair, confDir string, mode string) *Classic {
	t.Helper()
	c := StartClassic(t, p, confDir, mode)
	c.WaitFor(t, ClassicReady, 10*time.Second)
	return c
}

// StartClassic is RunClassic without waiting for readiness (for a broken config, say);
// it still waits until the daemon process exists or has given up.
func StartClassic(t testing.TB, p *Pair, confDir string, mode string) *Classic {
	t.Helper()
	Require(t, ClassicBinary, "sh", "mount", "ln", "readlink")
	mode = strings.TrimPrefix(mode, "-")
	confDir, err := filepath.Abs(confDir)
	if err != nil {
		t.Fatal(err)
	}
	// A short directory: the socket path must fit in sun_path (108 bytes).
	runDir, err := os.MkdirTemp("", "psclassic")
	if err != nil {
		t.Fatal(err)
	}
	c := &Classic{Log: &Log{}, Raw: &Log{}, Mode: mode, ConfDir: confDir, runDir: runDir,
		HostsDeny: filepath.Join(runDir, "hosts.deny")}
	t.Cleanup(func() {
		c.Stop()
		if c.sock != nil {
			c.sock.Close()
		}
		if t.Failed() {
			t.Logf("testnet: syslog of classic portsentry -%s (pid %d):\n%s", mode, c.Pid, c.Raw.String())
		}
		// Mounts made for classic lived only in its mount namespace, which died with
		// it: here these are plain empty directories.
		if err := os.RemoveAll(runDir); err != nil {
			t.Logf("testnet: remove %s: %v", runDir, err)
		}
	})
	if err := os.WriteFile(c.HostsDeny, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sockPath := filepath.Join(runDir, "log")
	c.sock, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatalf("testnet: syslog socket: %v", err)
	}
	if err := os.Chmod(sockPath, 0o666); err != nil {
		t.Fatal(err)
	}
	go c.readSyslog()

	before, _ := classicPids(p.Defended)
	stdout, err := os.Create(filepath.Join(runDir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd := p.Exec(p.Defended, "sh", "-c", classicScript)
	cmd.Env = append(os.Environ(),
		"PS_RUN="+runDir, "PS_CONF="+confDir, "PS_HOSTS_DENY="+c.HostsDeny,
		"PS_LOG="+sockPath, "PS_MODE="+mode, "PS_BIN="+ClassicBinary)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	// Classic forks and the parent exits at once; the file (not a pipe) keeps Wait
	// from waiting for the daemon, which inherits stdout.
	if err := runWithTimeout(cmd, 45*time.Second); err != nil {
		out, _ := os.ReadFile(stdout.Name())
		t.Fatalf("testnet: starting classic portsentry: %v\n%s\nsyslog:\n%s", err, out, c.Raw.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Pid == 0 {
		now, _ := classicPids(p.Defended)
		for _, pid := range now {
			if !slices.Contains(before, pid) {
				c.Pid = pid
			}
		}
		if c.Pid != 0 {
			break
		}
		// A config classic rejects makes it log "... Shutting down." and exit at once.
		gaveUp := len(c.Log.Matching(0, "hutting down")) > 0
		if gaveUp || time.Now().After(deadline) {
			if gaveUp {
				time.Sleep(100 * time.Millisecond) // the last datagrams
			}
			out, _ := os.ReadFile(stdout.Name())
			c.Log.close("classic portsentry is not running")
			t.Logf("testnet: classic portsentry -%s is not running; its output:\n%s", mode, out)
			return c
		}
		time.Sleep(pollInterval)
	}
	go func() {
		for alive(c.Pid) {
			time.Sleep(50 * time.Millisecond)
		}
		// Let the last datagrams arrive before declaring the log finished.
		time.Sleep(100 * time.Millisecond)
		c.Log.close("classic portsentry exited")
	}()
	return c
}

// classicScript runs under `ip netns exec` (a private mount namespace): it shadows /etc
// and /dev with symlink copies, redirects the three compiled-in paths, and execs classic.
const classicScript = `set -eux
mount --make-rprivate /
for d in etc dev; do
  mkdir -p "$PS_RUN/old-$d" "$PS_RUN/new-$d"
  mount --rbind "/$d" "$PS_RUN/old-$d"
  mount -t tmpfs -o mode=755 pstestnet "$PS_RUN/new-$d"
  for e in /$d/* /$d/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/}
    if [ -L "$e" ]; then
      ln -s "$(readlink "$e")" "$PS_RUN/new-$d/$n"
    else
      ln -s "$PS_RUN/old-$d/$n" "$PS_RUN/new-$d/$n"
    fi
  done
done
rm -f "$PS_RUN/new-etc/hosts.deny" "$PS_RUN/new-etc/portsentry" "$PS_RUN/new-dev/log"
ln -s "$PS_HOSTS_DENY" "$PS_RUN/new-etc/hosts.deny"
ln -s "$PS_CONF" "$PS_RUN/new-etc/portsentry"
ln -s "$PS_LOG" "$PS_RUN/new-dev/log"
mount --bind "$PS_RUN/new-etc" /etc
mount --bind "$PS_RUN/new-dev" /dev
exec "$PS_BIN" "-$PS_MODE"
`

func runWithTimeout(cmd *exec.Cmd, timeout time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("timed out after %v", timeout)
	}
}

// syslogHeader matches what glibc's syslog(3) sends: "<29>Nov 24 16:19:00 portsentry[123]: ".
var syslogHeader = regexp.MustCompile(`^<\d+>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d [^ :\[]+(?:\[\d+\])?: `)

func (c *Classic) readSyslog() {
	buf := make([]byte, 64*1024)
	for {
		n, err := c.sock.Read(buf)
		if err != nil {
			return
		}
		raw := strings.TrimRight(string(buf[:n]), "\n\x00")
		c.Raw.Add(raw)
		c.Log.Add(syslogHeader.ReplaceAllString(raw, ""))
	}
}

// classicPids lists classic daemons (processes running ClassicBinary) in netns ns.
func classicPids(ns string) ([]int, error) {
	pids, err := NSPids(ns)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range pids {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && exe == ClassicBinary {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Running reports whether the daemon is still alive.
func (c *Classic) Running() bool { return c.Pid != 0 && alive(c.Pid) }

// Signal sends sig to the daemon.
func (c *Classic) Signal(sig syscall.Signal) error {
	if !c.Running() {
		return fmt.Errorf("testnet: classic portsentry is not running")
	}
	return syscall.Kill(c.Pid, sig)
}

// Stop sends SIGTERM, waits up to StopTimeout, then SIGKILL; it returns once the daemon
// is gone. Calling it again is harmless.
func (c *Classic) Stop() {
	if c.stopped || c.Pid == 0 {
		return
	}
	c.stopped = true
	if !alive(c.Pid) {
		return
	}
	_ = syscall.Kill(c.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(StopTimeout)
	for alive(c.Pid) && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	if alive(c.Pid) {
		_ = syscall.Kill(c.Pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(c.Pid); i++ {
			time.Sleep(pollInterval)
		}
	}
}

// Setting is one KEY="value" line of a portsentry.conf.
type Setting struct{ Key, Value string }

// DebianConfig returns Debian's shipped /etc/portsentry/portsentry.conf with settings
// applied: an existing uncommented line for the key is replaced in place, other keys are
// appended in the order given. (Classic finds keys by prefix/substring, so give
// KILL_RUN_CMD before KILL_RUN_CMD_FIRST.) The test is skipped if the file is missing.
func DebianConfig(t testing.TB, settings ...Setting) string {
	t.Helper()
	Require(t, "/etc/portsentry/portsentry.conf")
	b, err := os.ReadFile("/etc/portsentry/portsentry.conf")
	if err != nil {
		t.Fatal(err)
	}
	return ApplySettings(string(b), settings...)
}

// keyLine finds the key of an active "KEY = value" line.
var keyLine = regexp.MustCompile(`^([A-Z_]+)\s*=`)

// ApplySettings replaces or appends settings in a config text (see DebianConfig).
func ApplySettings(conf string, settings ...Setting) string {
	lines := strings.Split(strings.TrimRight(conf, "\n"), "\n")
	for _, s := range settings {
		// Written raw: classic knows no escapes.
		newLine := s.Key + `="` + s.Value + `"`
		replaced := false
		for i, l := range lines {
			if m := keyLine.FindStringSubmatch(l); m != nil && m[1] == s.Key {
				lines[i] = newLine
				replaced = true
				break
			}
		}
		if !replaced {
			lines = append(lines, newLine)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// ReadLines returns the lines of a file (none if it does not exist).
func ReadLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

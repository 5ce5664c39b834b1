// Package respond carries out the response to a detection. Classic is the behaviour of
// PortSentry 1.2: the KILL_ROUTE and KILL_RUN_CMD shell commands and the KILL_HOSTS_DENY
// line, chosen by BLOCK_TCP / BLOCK_UDP, in the classic order and with the classic log lines.
package respond

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// ClassicConfig is the part of portsentry.conf the classic responder uses.
type ClassicConfig struct {
	BlockTCP, BlockUDP config.BlockLevel
	KillRoute          string // shell command, $TARGET$ required
	KillHostsDeny      string // line for HostsDenyFile, $TARGET$ required
	KillRunCmd         string // shell command
	KillRunCmdFirst    bool
	// KillRouteUndo and KillRunCmdUndo undo KILL_ROUTE and KILL_RUN_CMD when a ban
	// ends (empty: what they did stays); same macros, same timeout.
	KillRouteUndo, KillRunCmdUndo string
	HostsDenyFile                 string
	Timeout                       time.Duration // per command
	// OnCommand, if set, is told the outcome of every command run (metrics).
	OnCommand func(ok bool)
}

// Target is what a response acts on.
type Target struct {
	Addr netip.Addr // canonical numeric address: the only thing $TARGET$ ever becomes
	Name string     // resolved name or the address, for log lines only
	Port uint16
	Mode probe.Mode
}

// Classic runs the classic KILL_ actions. It is safe for concurrent use.
type Classic struct {
	cfg ClassicConfig
	log *slog.Logger
	// routeV6Failed is set once KILL_ROUTE has failed for an IPv6 host: that is
	// reported once, with a hint, not for every host after it.
	routeV6Failed atomic.Bool
}

// Outcome is what a response did.
type Outcome struct {
	Blocked bool // the host counts as blocked: classic records it
	Done    Done // what it did that lifting the host's ban undoes
}

// NewClassic returns a responder for cfg.
func NewClassic(cfg ClassicConfig, log *slog.Logger) *Classic {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Classic{cfg: cfg, log: log}
}

// Respond acts on t per BLOCK_x and reports whether the host counts as blocked (classic
// then records it in the blocked and history files; with BLOCK_x=0 it always does) and
// what the actions did.
func (c *Classic) Respond(ctx context.Context, t Target) Outcome {
	level, proto := c.cfg.BlockTCP, "TCP"
	if t.Mode.Proto() == probe.UDP {
		level, proto = c.cfg.BlockUDP, "UDP"
	}
	switch level {
	case config.BlockKill:
		return c.block(ctx, t)
	case config.BlockRunCmd:
		out := Outcome{Done: doneFor(t)}
		out.Done.RunCmd = c.runCmd(ctx, t, c.cfg.KillRunCmd, runCmdLines)
		out.Blocked = out.Done.RunCmd || c.cfg.KillRunCmd == ""
		return out
	default:
		c.log.Info(fmt.Sprintf("attackalert: Ignoring %s response per configuration file setting.", proto))
		return Outcome{Blocked: true}
	}
}

func doneFor(t Target) Done {
	return Done{Addr: probe.Canonical(t.Addr), Port: t.Port, Mode: t.Mode}
}

// block runs, each only when configured: KILL_RUN_CMD (if first), KILL_HOSTS_DENY,
// KILL_ROUTE, KILL_RUN_CMD (if not first). The host is blocked when one of the blocking
// actions (hosts.deny, route) took effect, or none is configured; KILL_RUN_CMD's
// outcome is logged but, as in classic, does not decide that. A KILL_ROUTE failing
// for an IPv6 host is left out: most route commands cannot take IPv6 addresses, and
// it would fail again on every later hit.
func (c *Classic) block(ctx context.Context, t Target) Outcome {
	out := Outcome{Done: doneFor(t)}
	tried, held := 0, 0
	if c.cfg.KillRunCmdFirst {
		out.Done.RunCmd = c.runCmd(ctx, t, c.cfg.KillRunCmd, runCmdLines)
	}
	if c.cfg.KillHostsDeny != "" {
		line, ok := c.hostsDeny(t)
		out.Done.HostsDeny = line
		tried++
		if ok {
			held++
		}
	}
	if c.cfg.KillRoute != "" {
		out.Done.Route = c.route(ctx, t)
		if out.Done.Route || !out.Done.Addr.Is6() {
			tried++
		}
		if out.Done.Route {
			held++
		}
	}
	if !c.cfg.KillRunCmdFirst {
		out.Done.RunCmd = c.runCmd(ctx, t, c.cfg.KillRunCmd, runCmdLines)
	}
	out.Blocked = tried == 0 || held > 0
	return out
}

// hostsDeny appends t's KILL_HOSTS_DENY line and returns it when it appended it (the
// line the undo removes), and whether the host is denied. A line already in the file
// is not added again: it is the admin's, or left from an earlier ban, and stays.
func (c *Classic) hostsDeny(t Target) (appended string, ok bool) {
	line := DenyLine(c.cfg.KillHostsDeny, t)
	added, err := addDenyLine(c.cfg.HostsDenyFile, line)
	if added {
		appended = line
	}
	if err != nil {
		c.log.Error(fmt.Sprintf("attackalert: ERROR: could not write %s for host %s: %v", c.cfg.HostsDenyFile, t.Addr, err))
		return appended, false
	}
	if !added {
		c.log.Info(fmt.Sprintf("attackalert: Host %s is already denied in %s with string: \"%s\"; not added again", t.Addr, c.cfg.HostsDenyFile, line))
		return "", true
	}
	c.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via wrappers with string: \"%s\"", t.Addr, line))
	return appended, true
}

// route runs KILL_ROUTE. Its first failure for an IPv6 host is an error with a hint;
// later IPv6 failures are logged at debug level only.
func (c *Classic) route(ctx context.Context, t Target) bool {
	cmd := Expand(c.cfg.KillRoute, t)
	v6 := probe.Canonical(t.Addr).Is6()
	quiet := v6 && c.routeV6Failed.Load()
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelDebug
	}
	if err := c.shell(ctx, cmd, level); err != nil {
		switch {
		case quiet:
			c.log.Debug(fmt.Sprintf("attackalert: dropped route command failed for IPv6 host %s again: %v", t.Addr, err), "command", cmd)
		case v6 && c.routeV6Failed.CompareAndSwap(false, true):
			c.log.Error(fmt.Sprintf("attackalert: ERROR: dropped route command failed for IPv6 host %s: %v; KILL_ROUTE must take IPv6 addresses "+
				"(\"ip route add blackhole $TARGET$\" takes both families, route needs \"-A inet6\"; see portsentry check-config); "+
				"the host still counts as blocked, and later IPv6 failures of KILL_ROUTE are not logged again", t.Addr, err), "command", cmd)
		default:
			c.log.Error(fmt.Sprintf("attackalert: ERROR: dropped route command failed for host %s: %v", t.Addr, err), "command", cmd)
		}
		return false
	}
	c.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via dropped route using command: \"%s\"", t.Addr, cmd))
	return true
}

// cmdLines are the log lines of a command: its failure, then its success (each with
// the host's address, the success line also with the command).
type cmdLines struct{ failed, ran string }

var runCmdLines = cmdLines{
	failed: "attackalert: ERROR: external command failed for host %s: %v",
	ran:    "attackalert: External command run for host: %s using command: \"%s\"",
}

// runCmd runs the command template for t, if one is set, and reports whether it ran
// and succeeded.
func (c *Classic) runCmd(ctx context.Context, t Target, template string, lines cmdLines) bool {
	if template == "" {
		return false
	}
	cmd := Expand(template, t)
	if err := c.shell(ctx, cmd, slog.LevelInfo); err != nil {
		c.log.Error(fmt.Sprintf(lines.failed, t.Addr, err), "command", cmd)
		return false
	}
	c.log.Info(fmt.Sprintf(lines.ran, t.Addr, cmd))
	return true
}

// maxOutput bounds how much of a command's output is kept and logged. The rest is read
// and thrown away as it arrives, so a command printing hundreds of megabytes costs a
// pipe's worth of memory, not its output's.
const maxOutput = 64 << 10

// waitDelay is how long a command's output may stay open once its shell has exited or
// been killed: a process holding the pipe (one that left the process group, say) must
// not hang the worker.
const waitDelay = time.Second

// shell runs cmd with /bin/sh -c, as classic did, so that existing configs with shell
// syntax keep working. Any non-zero exit status, a signal or the timeout is a failure
// (classic counted everything but 127 as success). Output is logged, not discarded:
// at most maxOutput of it, with control characters escaped.
//
// The shell runs in a process group of its own. On timeout, or when ctx is cancelled,
// the whole group is killed with SIGKILL, so nothing the command started (a pipeline, a
// backgrounded child, a child ignoring SIGTERM) outlives it. When the shell exits but
// something it left behind still holds its output after waitDelay, the group is killed
// too; the shell's exit status still decides success. The output is logged at
// outLevel.
func (c *Classic) shell(ctx context.Context, cmd string, outLevel slog.Level) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	out := &capWriter{max: maxOutput}
	sh.Stdout, sh.Stderr = out, out
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sh.Cancel = func() error { return killGroup(sh.Process.Pid) }
	sh.WaitDelay = waitDelay
	err := sh.Run()
	leftover := errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil
	if leftover {
		// The shell exited with status 0 (Wait reports ErrWaitDelay only then) and
		// left something holding its output. The group outlives its leader while a
		// member lives, so its id cannot have been reused.
		_ = killGroup(sh.Process.Pid)
		c.log.Warn("adminalert: command left processes holding its output; killed them", "command", cmd)
		err = nil
	}
	if c.cfg.OnCommand != nil {
		c.cfg.OnCommand(err == nil && ctx.Err() == nil)
	}
	kept, total := out.kept()
	if s, truncated := sanitize(kept, maxOutput); s != "" {
		if truncated || total > int64(len(kept)) {
			c.log.Log(ctx, outLevel, "command output", "command", cmd, "output", s, "truncated", true, "bytes", total)
		} else {
			c.log.Log(ctx, outLevel, "command output", "command", cmd, "output", s)
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %v", c.cfg.Timeout)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%v", exit.ProcessState)
	}
	return err
}

// killGroup sends SIGKILL to the process group pgid. A group already gone yields
// os.ErrProcessDone, which is what exec.Cmd.Cancel returns when there is nothing to kill.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return os.ErrProcessDone
	}
	return err
}

// capWriter keeps the first max bytes written to it and counts, then discards, the rest.
// It never fails a write, so the command is never stopped by a full or broken pipe.
type capWriter struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += int64(len(p))
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// kept returns what was kept, and how many bytes were written in all.
func (w *capWriter) kept() ([]byte, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf, w.total
}

// sanitize makes command output safe to log: surrounding white space is trimmed, and
// every byte or character that is not printable (CR, LF, ESC and the other C0 controls
// except tab, DEL, the C1 controls, invalid UTF-8, bidirectional overrides ...) is
// written as a Go escape (\r, \n, \x1b, \u202e), and a backslash as \\, so output
// such as "ok\rFAKE" can neither forge a log line nor move a terminal's cursor. The
// result is at most limit bytes; truncated reports that something was cut.
func sanitize(b []byte, limit int) (s string, truncated bool) {
	b = bytes.TrimSpace(b)
	var out strings.Builder
	var scratch [16]byte
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		var piece []byte
		switch {
		case r == utf8.RuneError && n == 1:
			piece = append(scratch[:0], '\\', 'x', hexDigits[b[0]>>4], hexDigits[b[0]&15])
		case r == '\\':
			piece = append(scratch[:0], '\\', '\\')
		case r == '\t' || strconv.IsPrint(r):
			piece = b[:n]
		default:
			q := strconv.AppendQuoteRune(scratch[:0], r) // '\x1b'
			piece = q[1 : len(q)-1]
		}
		if out.Len()+len(piece) > limit {
			return out.String(), true
		}
		out.Write(piece)
		b = b[n:]
	}
	return out.String(), false
}

const hexDigits = "0123456789abcdef"

// Expand replaces every $TARGET$, $PORT$ and $MODE$ in s. $TARGET$ is always the
// canonical numeric address, never a resolved name, so a hostile PTR record cannot
// inject shell syntax.
func Expand(s string, t Target) string {
	return strings.NewReplacer(
		"$TARGET$", probe.Canonical(t.Addr).String(),
		"$PORT$", strconv.Itoa(int(t.Port)),
		"$MODE$", string(t.Mode),
	).Replace(s)
}

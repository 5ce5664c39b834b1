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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Level is BLOCK_TCP / BLOCK_UDP.
type Level int

const (
	LogOnly    Level = 0 // record the scan, act on nothing
	Block      Level = 1 // run the KILL_ actions
	RunCmdOnly Level = 2 // run KILL_RUN_CMD only
)

// ClassicConfig is the part of portsentry.conf the classic responder uses.
type ClassicConfig struct {
	BlockTCP, BlockUDP Level
	KillRoute          string // shell command, $TARGET$ required
	KillHostsDeny      string // line for HostsDenyFile, $TARGET$ required
	KillRunCmd         string // shell command
	KillRunCmdFirst    bool
	HostsDenyFile      string
	Timeout            time.Duration // per command
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
}

// NewClassic returns a responder for cfg.
func NewClassic(cfg ClassicConfig, log *slog.Logger) *Classic {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Classic{cfg: cfg, log: log}
}

// Respond acts on t per BLOCK_x and reports whether the host counts as blocked (classic
// then records it in the blocked and history files; with BLOCK_x=0 it always does).
func (c *Classic) Respond(ctx context.Context, t Target) bool {
	level, proto := c.cfg.BlockTCP, "TCP"
	if t.Mode.Proto() == probe.UDP {
		level, proto = c.cfg.BlockUDP, "UDP"
	}
	switch level {
	case Block:
		return c.block(ctx, t)
	case RunCmdOnly:
		return c.runCmd(ctx, t)
	default:
		c.log.Info(fmt.Sprintf("attackalert: Ignoring %s response per configuration file setting.", proto))
		return true
	}
}

// block runs, each only when configured: KILL_RUN_CMD (if first), KILL_HOSTS_DENY,
// KILL_ROUTE, KILL_RUN_CMD (if not first). The host is blocked when the blocking actions
// (hosts.deny, route) succeeded; KILL_RUN_CMD's outcome is logged but, as in classic,
// does not decide that.
func (c *Classic) block(ctx context.Context, t Target) bool {
	ok := true
	if c.cfg.KillRunCmdFirst {
		c.runCmd(ctx, t)
	}
	if c.cfg.KillHostsDeny != "" {
		ok = c.hostsDeny(t) && ok
	}
	if c.cfg.KillRoute != "" {
		ok = c.route(ctx, t) && ok
	}
	if !c.cfg.KillRunCmdFirst {
		c.runCmd(ctx, t)
	}
	return ok
}

func (c *Classic) hostsDeny(t Target) bool {
	line := Expand(c.cfg.KillHostsDeny, t)
	if err := appendLine(c.cfg.HostsDenyFile, line); err != nil {
		c.log.Error(fmt.Sprintf("attackalert: ERROR: could not write %s for host %s: %v", c.cfg.HostsDenyFile, t.Addr, err))
		return false
	}
	c.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via wrappers with string: \"%s\"", t.Addr, line))
	return true
}

func (c *Classic) route(ctx context.Context, t Target) bool {
	cmd := Expand(c.cfg.KillRoute, t)
	if err := c.shell(ctx, cmd); err != nil {
		c.log.Error(fmt.Sprintf("attackalert: ERROR: dropped route command failed for host %s: %v", t.Addr, err), "command", cmd)
		return false
	}
	c.log.Info(fmt.Sprintf("attackalert: Host %s has been blocked via dropped route using command: \"%s\"", t.Addr, cmd))
	return true
}

func (c *Classic) runCmd(ctx context.Context, t Target) bool {
	if c.cfg.KillRunCmd == "" {
		return true
	}
	cmd := Expand(c.cfg.KillRunCmd, t)
	if err := c.shell(ctx, cmd); err != nil {
		c.log.Error(fmt.Sprintf("attackalert: ERROR: external command failed for host %s: %v", t.Addr, err), "command", cmd)
		return false
	}
	c.log.Info(fmt.Sprintf("attackalert: External command run for host: %s using command: \"%s\"", t.Addr, cmd))
	return true
}

// maxOutput bounds how much of a command's output reaches the log.
const maxOutput = 4096

// shell runs cmd with /bin/sh -c, as classic did, so that existing configs with shell
// syntax keep working. Any non-zero exit status, a signal or the timeout is a failure
// (classic counted everything but 127 as success). Output is logged, not discarded.
func (c *Classic) shell(ctx context.Context, cmd string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	var out bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &out
	sh.WaitDelay = time.Second // a child keeping the pipe open must not hang us
	err := sh.Run()
	if c.cfg.OnCommand != nil {
		c.cfg.OnCommand(err == nil && ctx.Err() == nil)
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		if len(s) > maxOutput {
			s = s[:maxOutput] + "..."
		}
		c.log.Info("command output", "command", cmd, "output", s)
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

// appendLine appends one line to a hosts.deny-style file in a single synced write.
func appendLine(path, line string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(line + "\n")
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(werr, serr, cerr)
}

package respond

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Done is what the classic KILL_ actions did for one host that lifting its ban undoes.
// The ban journal keeps it with the ban, so the undo also happens after a restart.
type Done struct {
	Addr      netip.Addr `json:"addr"` // $TARGET$, with the port and mode of the detection
	Port      uint16     `json:"port,omitempty"`
	Mode      probe.Mode `json:"mode,omitempty"`
	Route     bool       `json:"route,omitempty"`      // KILL_ROUTE succeeded
	HostsDeny string     `json:"hosts_deny,omitempty"` // the line KILL_HOSTS_DENY appended
	RunCmd    bool       `json:"run_cmd,omitempty"`    // KILL_RUN_CMD succeeded
}

// Any reports whether something was done.
func (d Done) Any() bool { return d.Route || d.HostsDeny != "" || d.RunCmd }

func (d Done) target() Target {
	return Target{Addr: d.Addr, Name: d.Addr.String(), Port: d.Port, Mode: d.Mode}
}

var (
	routeUndoLines = cmdLines{
		failed: "attackalert: ERROR: KILL_ROUTE_UNDO failed for host %s: %v",
		ran:    "attackalert: Dropped route for host %s lifted using command: \"%s\"",
	}
	runCmdUndoLines = cmdLines{
		failed: "attackalert: ERROR: KILL_RUN_CMD_UNDO failed for host %s: %v",
		ran:    "attackalert: Undo command run for host: %s using command: \"%s\"",
	}
)

// Undo reverses, in the reverse order of their running, what d says the KILL_ actions
// did: KILL_ROUTE_UNDO for the route, the removal of the hosts.deny line that was
// appended (only that line), KILL_RUN_CMD_UNDO for the command. Actions without an undo
// key stay (Stays says which).
func (c *Classic) Undo(ctx context.Context, d Done) {
	t := d.target()
	steps := []func(){
		func() {
			if d.RunCmd {
				c.runCmd(ctx, t, c.cfg.KillRunCmdUndo, runCmdUndoLines)
			}
		},
		func() {
			if d.Route {
				c.runCmd(ctx, t, c.cfg.KillRouteUndo, routeUndoLines)
			}
		},
		func() {
			if d.HostsDeny != "" {
				c.removeHostsDeny(t, d.HostsDeny)
			}
		},
	}
	if c.cfg.KillRunCmdFirst { // it ran first: it is undone last
		steps = append(steps[1:], steps[0])
	}
	for _, step := range steps {
		step()
	}
}

func (c *Classic) removeHostsDeny(t Target, line string) {
	path := c.cfg.HostsDenyFile
	found, err := removeDenyLine(path, line)
	switch {
	case err != nil:
		c.log.Error(fmt.Sprintf("attackalert: ERROR: could not remove the line of host %s from %s: %v", t.Addr, path, err), "line", line)
	case !found:
		c.log.Warn(fmt.Sprintf("attackalert: Host %s: its line \"%s\" was no longer in %s", t.Addr, line, path))
	default:
		c.log.Info(fmt.Sprintf("attackalert: Host %s has been removed from %s: \"%s\"", t.Addr, path, line))
	}
}

// Stays says what of d stays in place when its ban ends because no undo is configured,
// and which key would lift it.
func (c *Classic) Stays(d Done) []string {
	var out []string
	if d.Route && c.cfg.KillRouteUndo == "" {
		out = append(out, fmt.Sprintf("the KILL_ROUTE route for %s stays: set KILL_ROUTE_UNDO to lift it", d.Addr))
	}
	if d.RunCmd && c.cfg.KillRunCmdUndo == "" {
		out = append(out, fmt.Sprintf("what KILL_RUN_CMD did for %s stays: set KILL_RUN_CMD_UNDO to undo it", d.Addr))
	}
	return out
}

package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// Validate checks c for running in the given modes. It also re-checks the value rules
// that Parse enforces, because a Config may be built or changed in code; for a Config
// that Parse returned without errors those checks find nothing. With no modes only those
// value rules are checked. Diagnostics name c.Source and the line that set the key, or
// no line when the key was not in the file.
func (c *Config) Validate(modes []probe.Mode) diag.List {
	v := &validator{c: c}
	v.values()
	v.portsNeeded(modes)
	blocks := false
	for _, proto := range []probe.Proto{probe.TCP, probe.UDP} {
		if slices.ContainsFunc(modes, func(m probe.Mode) bool { return m.Proto() == proto }) {
			v.blocking(proto)
			blocks = blocks || c.level(proto) == BlockKill
		}
	}
	if blocks {
		v.undo()
	}
	if len(modes) > 0 {
		v.files()
	}
	v.advanced(modes, probe.ModeATCP, "ADVANCED_PORTS_TCP", c.AdvancedPortsTCP, "ADVANCED_EXCLUDE_TCP", c.AdvancedExcludeTCP)
	v.advanced(modes, probe.ModeAUDP, "ADVANCED_PORTS_UDP", c.AdvancedPortsUDP, "ADVANCED_EXCLUDE_UDP", c.AdvancedExcludeUDP)
	return v.list
}

type validator struct {
	c    *Config
	list diag.List
}

func (v *validator) add(sev diag.Severity, key, format string, args ...any) {
	v.list = append(v.list, diag.Diagnostic{
		File: v.c.Source, Line: v.c.Line(key), Severity: sev, Msg: fmt.Sprintf(format, args...),
	})
}

func modesOf(modes []probe.Mode, keep func(probe.Mode) bool) []string {
	var out []string
	for _, m := range modes {
		if keep(m) && !slices.Contains(out, "-"+string(m)) {
			out = append(out, "-"+string(m))
		}
	}
	return out
}

// values re-checks what Parse guarantees.
func (v *validator) values() {
	c := v.c
	v.portList("TCP_PORTS", c.TCPPorts)
	v.portList("UDP_PORTS", c.UDPPorts)
	v.portList("ADVANCED_EXCLUDE_TCP", c.AdvancedExcludeTCP)
	v.portList("ADVANCED_EXCLUDE_UDP", c.AdvancedExcludeUDP)
	v.intRange("ADVANCED_PORTS_TCP", c.AdvancedPortsTCP, 1, 65535)
	v.intRange("ADVANCED_PORTS_UDP", c.AdvancedPortsUDP, 1, 65535)
	v.intRange("BLOCK_TCP", int(c.BlockTCP), int(BlockLogOnly), int(BlockRunCmd))
	v.intRange("BLOCK_UDP", int(c.BlockUDP), int(BlockLogOnly), int(BlockRunCmd))
	v.intRange("SCAN_TRIGGER", c.ScanTrigger, 0, maxScanTrigger)
	for _, kv := range [][2]string{{"KILL_ROUTE", c.KillRoute}, {"KILL_HOSTS_DENY", c.KillHostsDeny}, {"KILL_ROUTE_UNDO", c.KillRouteUndo}} {
		if msg := targetProblem(kv[0], kv[1]); msg != "" {
			v.add(diag.Error, kv[0], "%s", msg)
		}
	}
	if msg := hostsDenyFileProblem("HOSTS_DENY_FILE", c.HostsDenyFile); msg != "" {
		v.add(diag.Error, "HOSTS_DENY_FILE", "%s", msg)
	}
	if msg := dashboardProblem("DASHBOARD", c.Dashboard); msg != "" {
		v.add(diag.Error, "DASHBOARD", "%s", msg)
	}
	v.fleet()
	t := c.CommandTimeout
	if t < time.Second || t > maxCommandSeconds*time.Second || t%time.Second != 0 {
		v.add(diag.Error, "KILL_CMD_TIMEOUT", "KILL_CMD_TIMEOUT is %v; it must be whole seconds from 1 to %d",
			t, maxCommandSeconds)
	}
	slices.SortStableFunc(v.list, func(a, b diag.Diagnostic) int { return a.Line - b.Line })
}

func (v *validator) intRange(key string, val, lo, hi int) {
	if val < lo || val > hi {
		v.add(diag.Error, key, "%s is %d; it must be from %d to %d", key, val, lo, hi)
	}
}

func (v *validator) portList(key string, ports []uint16) {
	var seen portSet
	for _, p := range ports {
		switch {
		case p == 0:
			v.add(diag.Error, key, "%s holds port 0, which is not a port", key)
		case seen.has(p):
			v.add(diag.Error, key, "%s holds port %d more than once", key, p)
		}
		seen.add(p)
	}
}

// portsNeeded: the connect and stealth modes watch only the listed ports.
func (v *validator) portsNeeded(modes []probe.Mode) {
	c := v.c
	need := func(key string, ports []uint16, proto probe.Proto) {
		ms := modesOf(modes, func(m probe.Mode) bool {
			return m.Proto() == proto && m != probe.ModeATCP && m != probe.ModeAUDP
		})
		if len(ms) > 0 && len(ports) == 0 {
			v.add(diag.Error, key, "%s is empty: no port to watch in %s", key, strings.Join(ms, ", "))
		}
	}
	need("TCP_PORTS", c.TCPPorts, probe.TCP)
	need("UDP_PORTS", c.UDPPorts, probe.UDP)
}

// level is BLOCK_TCP or BLOCK_UDP.
func (c *Config) level(proto probe.Proto) BlockLevel {
	if proto == probe.UDP {
		return c.BlockUDP
	}
	return c.BlockTCP
}

// blocking checks that the BLOCK_ level of proto has something to run.
func (v *validator) blocking(proto probe.Proto) {
	c := v.c
	key, level := "BLOCK_TCP", c.level(proto)
	if proto == probe.UDP {
		key = "BLOCK_UDP"
	}
	switch {
	case level == BlockRunCmd && c.KillRunCmd == "":
		v.add(diag.Error, key, `%s="2" runs only KILL_RUN_CMD, which is not set`, key)
	case level == BlockKill && c.KillRoute == "" && c.KillHostsDeny == "" && c.KillRunCmd == "" &&
		(c.BlockBackend == "" || c.BlockBackend == "classic"):
		// A native backend blocks by itself; only classic needs a KILL_ line.
		v.add(diag.Warning, key, `%s="1" but none of KILL_ROUTE, KILL_HOSTS_DENY, KILL_RUN_CMD is set and BLOCK_BACKEND is "classic": nothing will be blocked`, key)
	}
}

// undo says, for blocking modes, what stays in place when a ban ends (BAN_TIME,
// portsentry unblock) because no undo key is set, and warns when KILL_ROUTE cannot take
// the IPv6 addresses every mode also watches.
func (v *validator) undo() {
	c := v.c
	if c.KillRoute != "" && c.KillRouteUndo == "" {
		v.add(diag.Warning, "KILL_ROUTE", "the routes KILL_ROUTE adds stay when a ban ends (BAN_TIME, portsentry unblock): set KILL_ROUTE_UNDO to lift them")
	}
	if c.KillRunCmd != "" && c.KillRunCmdUndo == "" {
		v.add(diag.Warning, "KILL_RUN_CMD", "what KILL_RUN_CMD does stays when a ban ends (BAN_TIME, portsentry unblock): set KILL_RUN_CMD_UNDO to undo it")
	}
	if why := ipv4Only(c.KillRoute); why != "" {
		v.add(diag.Warning, "KILL_ROUTE", `KILL_ROUTE cannot take IPv6 addresses (%s): IPv6 scanners get no route; "/sbin/ip route add blackhole $TARGET$" takes both families (KILL_ROUTE_UNDO "/sbin/ip route del blackhole $TARGET$"), or use a native BLOCK_BACKEND`, why)
	}
}

// ipv4Only says why the shell command cmd cannot take an IPv6 $TARGET$, or "" when it
// may: net-tools route without -A inet6 (or -6), and the IPv4-only firewall tools.
func ipv4Only(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return ""
	}
	switch prog := f[0][strings.LastIndexByte(f[0], '/')+1:]; prog {
	case "route":
		for i, a := range f {
			if a == "-6" || a == "--inet6" || a == "-A" && i+1 < len(f) && f[i+1] == "inet6" {
				return ""
			}
		}
		return `route needs "-A inet6" for IPv6 hosts`
	case "iptables", "ipchains", "ipfwadm":
		return prog + " is IPv4 only"
	}
	return ""
}

// files warns about record files that are not set, since every mode writes them.
func (v *validator) files() {
	if v.c.HistoryFile == "" {
		v.add(diag.Warning, "HISTORY_FILE", "HISTORY_FILE is not set")
	}
	if v.c.BlockedFile == "" {
		v.add(diag.Warning, "BLOCKED_FILE", "BLOCKED_FILE is not set")
	}
}

// advanced warns when an advanced mode would watch no port at all.
func (v *validator) advanced(modes []probe.Mode, mode probe.Mode, key string, n int, exKey string, exclude []uint16) {
	if !slices.Contains(modes, mode) || n < 1 || n > 65535 {
		return // range errors come from values
	}
	if n == 1 {
		v.add(diag.Warning, key, "-%s watches no port: %s is 1 and there is no port below 1", mode, key)
		return
	}
	var ex portSet
	excluded := 0
	for _, p := range exclude {
		if p != 0 && int(p) < n && !ex.has(p) {
			ex.add(p)
			excluded++
		}
	}
	if excluded == n-1 {
		v.add(diag.Warning, exKey, "-%s watches no port: %s excludes every port below %s (%d)", mode, exKey, key, n)
	}
}

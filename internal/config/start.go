package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// ValidateStart checks c for starting the daemon in modes: the checks of Validate, then
// the dashboard's address, the interfaces INTERFACES names (for the modes that capture
// packets) and the ignore files, which depend on this host. The daemon refuses to start
// on its errors and logs its warnings; check-config prints the same list, so the two
// agree. Diagnostics name c.Source and the line of the key to change.
func (c *Config) ValidateStart(modes []probe.Mode) diag.List {
	return c.validateStart(modes, false)
}

// ValidateReload is ValidateStart for a configuration read on reload. The same errors
// reject the reload, but for one: an interface of INTERFACES missing now is only a
// warning, since the running daemon keeps capturing where it started (INTERFACES takes
// effect at the next start), and a reload that only reopens rotated files must not fail
// because an interface went away.
func (c *Config) ValidateReload(modes []probe.Mode) diag.List {
	return c.validateStart(modes, true)
}

func (c *Config) validateStart(modes []probe.Mode, reload bool) diag.List {
	list := c.Validate(modes)
	v := &validator{c: c}
	v.dashboard()
	v.interfaces(modes, reload)
	v.ignoreFiles()
	list = append(list, v.list...)
	return append(list, c.CheckFiles(modes)...)
}

// dashboardProblem is DASHBOARD's value rule: host:port with a numeric port (the
// listener's address; a port 0 would put it where nobody can find it).
func dashboardProblem(key, val string) string {
	if val == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(val)
	if err == nil && !strings.ContainsAny(host, " \t") {
		if _, ok := parseUint(port, 1, 65535); ok && trimBlanks(port) == port {
			return ""
		}
	}
	return fmt.Sprintf(`%s must be host:port with a port from 1 to 65535, e.g. "127.0.0.1:9117", not %s`, key, shown(val))
}

// loopbackHost reports whether the host part of a listen address is a loopback
// address or "localhost"; an empty host is every interface.
func loopbackHost(host string) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().IsLoopback()
	}
	return strings.EqualFold(host, "localhost")
}

// dashboard: a dashboard reachable from the network must be asked for.
func (v *validator) dashboard() {
	c := v.c
	if c.Dashboard == "" || c.DashboardAllowRemote || dashboardProblem("DASHBOARD", c.Dashboard) != "" {
		return // off, allowed, or the value rule's error
	}
	host, _, _ := net.SplitHostPort(c.Dashboard)
	if loopbackHost(host) {
		return
	}
	what := host
	if what == "" {
		what = "every interface"
	}
	v.add(diag.Error, "DASHBOARD", `DASHBOARD %q listens on %s, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that, or use 127.0.0.1`,
		c.Dashboard, what)
}

// InterfaceNames returns the names INTERFACES lists, blanks around them trimmed and
// empty entries dropped; none means every interface.
func (c *Config) InterfaceNames() []string {
	var out []string
	for _, name := range strings.Split(c.Interfaces, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// interfaces: the packet-capturing modes cannot start on an interface that does not
// exist.
func (v *validator) interfaces(modes []probe.Mode, reload bool) {
	capturing := modesOf(modes, func(m probe.Mode) bool { return !m.Connect() })
	if len(capturing) == 0 {
		return
	}
	for _, name := range v.c.InterfaceNames() {
		if _, err := net.InterfaceByName(name); err == nil {
			continue
		}
		if reload {
			v.add(diag.Warning, "INTERFACES", "INTERFACES names %q, which is not an interface of this host: %s would not start with it (the running daemon goes on capturing where it started)",
				name, strings.Join(capturing, ", "))
			continue
		}
		v.add(diag.Error, "INTERFACES", "INTERFACES names %q, which is not an interface of this host: %s cannot capture on it (leave INTERFACES empty to capture on every interface)",
			name, strings.Join(capturing, ", "))
	}
}

// ignoreFiles: IGNORE_FILE and IGNORE_FILE.static beside it are read, when they exist,
// at start and on reload; both missing leaves only the hosts the daemon protects by
// itself. One that exists but cannot be read (a directory, a FIFO, too large) is an
// error, reported when it is read (daemon.LoadIgnore).
func (v *validator) ignoreFiles() {
	path := v.c.IgnoreFile
	if path == "" {
		return
	}
	for _, p := range []string{path, path + ".static"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
	v.add(diag.Warning, "IGNORE_FILE", "IGNORE_FILE: neither %s nor %s exists: only this host's own addresses, gateways and resolvers are ignored",
		path, path+".static")
}

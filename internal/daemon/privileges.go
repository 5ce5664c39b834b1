package daemon

import (
	"github.com/portsentry-go/portsentry/internal/caps"
	"github.com/portsentry-go/portsentry/internal/config"
)

// capNeeds is what the daemon uses of its privileges once it runs with cfg.
// Commands need capabilities when the config names one that changes the firewall or
// routes; the ipset backend runs iptables itself.
func (d *Daemon) capNeeds(cfg *config.Config) caps.Needs {
	n := caps.Needs{Stealth: len(stealthModes(d.opts.Modes)) > 0,
		Commands: runsCommands(cfg) || cfg.BlockBackend == "ipset"}
	for _, m := range d.opts.Modes {
		n.Connect = n.Connect || m.Connect()
	}
	switch cfg.BlockBackend {
	case "nftables", "route", "ipset":
		n.Netlink = true
	}
	return n
}

// runsCommands reports whether cfg has a command to run when a host is blocked or
// its ban is lifted (KILL_HOSTS_DENY is written by the daemon itself).
func runsCommands(cfg *config.Config) bool {
	return cfg.KillRoute != "" || cfg.KillRunCmd != "" || cfg.KillRouteUndo != "" || cfg.KillRunCmdUndo != ""
}

// dropPrivileges keeps only the capabilities the daemon still uses, now that its
// sockets are open. Failing to drop is logged and does not stop detection.
func (d *Daemon) dropPrivileges(cfg *config.Config) {
	if !d.opts.DropPrivileges {
		return
	}
	plan := caps.For(d.capNeeds(cfg))
	d.commandCaps = plan.Commands != 0
	res, err := caps.Drop(plan)
	if err != nil {
		d.log.Error("adminalert: ERROR: " + err.Error() + " (running with more privileges than needed)")
		return
	}
	d.log.Info("adminalert: " + res.String())
}

// checkCommandPrivileges warns when a reload adds commands to a daemon that gave its
// commands no capabilities at start.
func (d *Daemon) checkCommandPrivileges(cfg *config.Config) {
	if !d.opts.DropPrivileges || d.commandCaps || !runsCommands(cfg) {
		return
	}
	d.log.Warn("adminalert: KILL_ROUTE/KILL_RUN_CMD set by a reload run without capabilities until the next restart (none were configured at start)")
}

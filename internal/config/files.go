package config

import (
	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// BlockedPath is the blocked file of mode m: BLOCKED_FILE with ".<mode>" appended, as
// classic names it.
func (c *Config) BlockedPath(m probe.Mode) string {
	return c.BlockedFile + "." + string(m)
}

// CheckFiles looks at the files the daemon writes in the given modes (every mode when
// none is given) and reports, as an Error naming the key, each that exists and is not
// a regular file: a FIFO would block the daemon's open (or every write), and a device
// such as /dev/null would swallow the records, or be replaced by a regular file when a
// rewrite renames over it. An absent file is fine: the daemon creates it. It only
// stats; a file that cannot be looked at is left for opening to report.
func (c *Config) CheckFiles(modes []probe.Mode) diag.List {
	if len(modes) == 0 {
		modes = probe.Modes
	}
	var list diag.List
	check := func(key, path string) {
		if path == "" {
			return
		}
		if err := regfile.Check(path); err != nil {
			list = append(list, diag.Diagnostic{File: c.Source, Line: c.Line(key), Severity: diag.Error,
				Msg: key + ": " + err.Error()})
		}
	}
	check("HISTORY_FILE", c.HistoryFile)
	if c.BlockedFile != "" {
		for _, m := range modes {
			check("BLOCKED_FILE", c.BlockedPath(m))
		}
	}
	check("BAN_JOURNAL", c.BanJournalPath())
	check("JSON_LOG", c.JSONLog)
	check("HOSTS_DENY_FILE", c.HostsDenyFile)
	if c.Dashboard != "" && c.DashboardTokenFile != "-" { // "-": no token file
		check("DASHBOARD_TOKEN_FILE", c.DashboardTokenFile)
	}
	return list
}

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/daemon"
)

// checkConfig validates the config (and the ignore files it names) for the given modes,
// as the daemon does at start (config.ValidateStart, daemon.LoadIgnore), prints every
// problem as FILE:LINE on stderr and the effective settings on stdout. A config,
// ignore file or written file that is not a regular file (or too large) is an error,
// as the daemon refuses to start on it.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs, f := newFlagSet("portsentry check-config", stderr)
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, diags, err := daemon.LoadConfig(f.config)
	for _, d := range diags {
		fmt.Fprintln(stderr, d)
	}
	if err != nil {
		if !diags.HasErrors() { // otherwise the errors were just printed
			fmt.Fprintf(stderr, "portsentry: %v\n", err)
		}
		return exitConfig
	}
	// Without modes, what every mode checks: the values, the dashboard, the ignore files.
	problems := cfg.ValidateStart(f.selected())
	for _, d := range problems {
		fmt.Fprintln(stderr, d)
	}
	files, ignoreDiags, unreadable := daemon.LoadIgnore(cfg)
	for _, d := range append(ignoreDiags, unreadable...) {
		fmt.Fprintln(stderr, d)
	}
	for _, file := range files {
		fmt.Fprintf(stdout, "# ignore file %s: %d entries\n", file.Path, len(file.Prefixes))
	}
	// Which running daemon this file is for is unknown here, so not what a reload of
	// it would leave pending: say which keys that can be.
	fmt.Fprintf(stdout, "# restart-only keys, which a reload (SIGHUP) does not apply: %s\n"+
		"# (and in part HOSTS_DENY_FILE and HISTORY_FILE: see \"Reload (SIGHUP)\" in portsentry.conf(5))\n",
		strings.Join(config.RestartOnly(), ", "))
	fmt.Fprintf(stdout, "# effective settings (from %s)\n", cfg.Source)
	if _, err := cfg.WriteTo(stdout); err != nil {
		return exitError
	}
	if problems.HasErrors() || ignoreDiags.HasErrors() || len(unreadable) > 0 {
		return exitConfig
	}
	return exitOK
}

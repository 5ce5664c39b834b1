package main

import (
	"fmt"
	"io"

	"github.com/portsentry-go/portsentry/internal/daemon"
	"github.com/portsentry-go/portsentry/internal/netaddr"
)

// checkConfig validates the config (and the ignore file it names) for the given modes,
// prints every problem as FILE:LINE on stderr and the effective settings on stdout.
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
	bad := false
	if modes := f.selected(); len(modes) > 0 {
		for _, d := range cfg.Validate(modes) {
			fmt.Fprintln(stderr, d)
		}
		bad = cfg.Validate(modes).HasErrors()
	}
	for _, p := range []string{cfg.IgnoreFile, cfg.IgnoreFile + ".static"} {
		if cfg.IgnoreFile == "" {
			break
		}
		prefixes, diags, err := netaddr.LoadIgnore(p)
		for _, d := range diags {
			fmt.Fprintln(stderr, d)
		}
		if err == nil {
			fmt.Fprintf(stdout, "# ignore file %s: %d entries\n", p, len(prefixes))
		}
		bad = bad || diags.HasErrors()
	}
	fmt.Fprintf(stdout, "# effective settings (from %s)\n", cfg.Source)
	if _, err := cfg.WriteTo(stdout); err != nil {
		return exitError
	}
	if bad {
		return exitConfig
	}
	return exitOK
}

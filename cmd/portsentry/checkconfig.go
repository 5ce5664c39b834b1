package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/portsentry-go/portsentry/internal/daemon"
	"github.com/portsentry-go/portsentry/internal/netaddr"
)

// checkConfig validates the config (and the ignore file it names) for the given modes,
// prints every problem as FILE:LINE on stderr and the effective settings on stdout. A
// config, ignore file or written file that is not a regular file (or too large) is a
// configuration error, as the daemon would refuse to start on it.
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
	modes := f.selected()
	if len(modes) > 0 {
		for _, d := range cfg.Validate(modes) {
			fmt.Fprintln(stderr, d)
		}
		bad = cfg.Validate(modes).HasErrors()
	}
	// The files the daemon writes (those of every mode when none is given): one that
	// is a FIFO or a device would stop it at start.
	for _, d := range cfg.CheckFiles(modes) {
		fmt.Fprintln(stderr, d)
		bad = true
	}
	for _, p := range []string{cfg.IgnoreFile, cfg.IgnoreFile + ".static"} {
		if cfg.IgnoreFile == "" {
			break
		}
		prefixes, diags, err := netaddr.LoadIgnore(p)
		for _, d := range diags {
			fmt.Fprintln(stderr, d)
		}
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "# ignore file %s: %d entries\n", p, len(prefixes))
		case !errors.Is(err, os.ErrNotExist): // a missing ignore file is allowed
			fmt.Fprintln(stderr, daemon.IgnoreFileError(cfg, err))
			bad = true
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

// Command portsentry detects port scans and responds to them. It is a drop-in
// replacement for Debian's PortSentry 1.2: same config file, modes, log lines and
// history format. Run "portsentry -h" for usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/daemon"
	"github.com/portsentry-go/portsentry/internal/logging"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK     = 0
	exitError  = 1 // runtime failure
	exitUsage  = 2 // bad command line
	exitConfig = 3 // the configuration has errors
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	args = commandFirst(args)
	if len(args) > 0 {
		switch args[0] {
		case "version", "-v", "-version", "--version":
			fmt.Fprintf(stdout, "portsentry %s (Go rewrite, compatible with PortSentry 1.2)\n", version)
			return exitOK
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "report":
			return reportCmd(args[1:], stdout, stderr)
		case "list", "status", "block", "unblock":
			return controlCmd(args[0], args[1:], stdout, stderr)
		case "help": // "help" alone, or "help COMMAND"
			if len(args) > 1 && flagCommands[args[1]] {
				return run([]string{args[1], "-h"}, stdout, stderr)
			}
			args = []string{"-h"}
		}
	}
	if helpAsked(args) { // asked for: on stdout, and not an error
		runDaemon([]string{"-h"}, stdout)
		return exitOK
	}
	return runDaemon(args, stderr)
}

// flagCommands are the subcommands that take flags.
var flagCommands = map[string]bool{"check-config": true, "report": true, "list": true, "status": true, "block": true, "unblock": true}

// commandFirst moves a subcommand's name before the flags given ahead of it, so that
// "portsentry -json list" is "portsentry list -json", and "-c FILE report" is
// "report -c FILE": flags go before or after the subcommand alike. A flag's value is
// never taken for a subcommand ("-c list -tcp" runs the daemon with the config file
// "list"); the subcommand's own parsing then refuses a flag it does not have.
func commandFirst(args []string) []string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if i > 0 && flagCommands[a] {
				return slices.Concat([]string{a}, args[:i], args[i+1:])
			}
			return args
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue && takesValue(name) {
			i++ // skip the value
		}
	}
	return args
}

// takesValue reports whether name is a flag, of the daemon or of any subcommand, that
// takes a value (is not boolean).
func takesValue(name string) bool {
	daemon, _ := daemonFlagSet(io.Discard)
	report, _ := reportFlagSet(io.Discard)
	control, _, _ := controlFlagSet("list", io.Discard)
	for _, fs := range []*flag.FlagSet{daemon, report, control} {
		if f := fs.Lookup(name); f != nil {
			b, isBool := f.Value.(interface{ IsBoolFlag() bool })
			return !isBool || !b.IsBoolFlag()
		}
	}
	return false
}

// helpAsked reports whether args ask for the usage (-h, -help, --help) before any "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// daemonFlags are the flags of the daemon itself.
type daemonFlags struct {
	config  string
	modes   map[probe.Mode]*bool
	syslog  bool
	detach  bool
	debug   bool
	pidfile string
}

func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *daemonFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &daemonFlags{modes: map[probe.Mode]*bool{}}
	fs.StringVar(&f.config, "c", daemon.DefaultConfigPath, "config `file`; when the default file is missing, Debian's shipped settings are used")
	for _, m := range probe.Modes {
		f.modes[m] = fs.Bool(string(m), false, modeHelp[m])
	}
	return fs, f
}

var modeHelp = map[probe.Mode]string{
	probe.ModeTCP:  "connect mode: listen on TCP_PORTS; a completed connection is a hit",
	probe.ModeUDP:  "connect mode: listen on UDP_PORTS; a datagram is a hit",
	probe.ModeSTCP: "stealth mode: watch packets to TCP_PORTS without binding them",
	probe.ModeSUDP: "stealth mode: watch packets to UDP_PORTS without binding them",
	probe.ModeATCP: "advanced stealth: watch every unused TCP port below ADVANCED_PORTS_TCP",
	probe.ModeAUDP: "advanced stealth: watch every unused UDP port below ADVANCED_PORTS_UDP",
}

func (f *daemonFlags) selected() []probe.Mode {
	var out []probe.Mode
	for _, m := range probe.Modes {
		if *f.modes[m] {
			out = append(out, m)
		}
	}
	return out
}

// daemonFlagSet is the daemon's flags: newFlagSet's and those of running.
func daemonFlagSet(stderr io.Writer) (*flag.FlagSet, *daemonFlags) {
	fs, f := newFlagSet("portsentry", stderr)
	fs.BoolVar(&f.syslog, "syslog", false, "log to syslog (facility daemon, ident portsentry) instead of stderr")
	fs.BoolVar(&f.detach, "daemon", false, "detach into the background like classic PortSentry (implies -syslog)")
	fs.BoolVar(&f.debug, "debug", false, "log debug messages too")
	fs.StringVar(&f.pidfile, "pidfile", "", "write the daemon's process id to `file`")
	fs.Usage = func() { usage(fs, stderr) }
	return fs, f
}

func runDaemon(args []string, stderr io.Writer) int {
	fs, f := daemonFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portsentry: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	modes := f.selected()
	if len(modes) == 0 {
		usage(fs, stderr)
		return exitUsage
	}
	if err := checkPrivileges(modes); err != nil {
		fmt.Fprintf(stderr, "portsentry: %v\n", err)
		return exitError
	}
	if f.detach && os.Getenv(detachedEnv) == "" {
		return detach(stderr)
	}
	log, closeLog := newLogger(f, stderr)
	defer closeLog()
	if f.pidfile != "" {
		if err := writePidfile(f.pidfile); err != nil {
			log.Error("adminalert: ERROR: " + err.Error())
			return exitError
		}
		defer os.Remove(f.pidfile)
	}
	return serve(f, modes, log)
}

func serve(f *daemonFlags, modes []probe.Mode, log *slog.Logger) int {
	log.Info(fmt.Sprintf("adminalert: PortSentry %s is starting.", version))
	d, err := daemon.New(daemon.Options{ConfigPath: f.config, Modes: modes, Log: log, Version: version, DropPrivileges: true})
	if err != nil {
		for _, line := range splitLines(err.Error()) {
			log.Error("adminalert: ERROR: " + line)
		}
		log.Error("adminalert: ERROR: PortSentry could not start: fix the configuration")
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := d.Run(ctx, hup); err != nil {
		log.Error("adminalert: ERROR: " + err.Error())
		return exitError
	}
	return exitOK
}

// newLogger logs to stderr, or to syslog (falling back to stderr while no syslog daemon
// answers).
func newLogger(f *daemonFlags, stderr io.Writer) (*slog.Logger, func()) {
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	if !f.syslog && !f.detach {
		return logging.Stream(stderr, os.Getpid(), level), func() {}
	}
	log, c, err := logging.Syslog(stderr, os.Getpid(), level)
	if err != nil {
		log.Warn("adminalert: " + err.Error())
	}
	return log, func() { c.Close() }
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `Usage:
  portsentry [-c FILE] [options] MODE...   run the daemon (in the foreground)
  portsentry check-config [-c FILE] [MODE...]
                                           validate the config and ignore file as the
                                           daemon does at start, print the effective
                                           settings; exit 3 on what it would refuse
  portsentry report [-c FILE | -history FILE] [-o OUT] [-format html|json]
                   [-since T] [-until T] [-rows N]
                                           turn the history file into one self-contained
                                           HTML page (or JSON); see docs/report.md
  portsentry list|status [-json] [-socket PATH]
                                           active bans / the daemon's state and counters
  portsentry block ADDR|CIDR [DURATION]    ban by hand ("90m", "7d", "permanent")
  portsentry unblock ADDR|CIDR             lift every ban inside or covering it
  portsentry version                       print the version
  portsentry help [COMMAND]                this text, or a subcommand's

Flags go before or after a subcommand: "portsentry -json list" is "portsentry list -json".

MODE is one or more of -tcp -udp -stcp -sudp -atcp -audp. Classic PortSentry runs one
mode per process; this one runs any combination in one process.

Signals: SIGHUP reloads the config and ignore file (a config with errors is rejected and
the running one kept; changed keys that only a restart applies are logged, and
check-config lists them); SIGTERM and SIGINT shut down cleanly.

Exit status: 0 ok, 1 runtime error, 2 usage error, 3 configuration error.

Options:
`)
	fs.PrintDefaults()
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// errNotPrivileged explains what the daemon needs.
var errNotPrivileged = errors.New("must run as root (or with CAP_NET_BIND_SERVICE, CAP_NET_RAW and CAP_NET_ADMIN): it binds privileged ports, watches raw packets and changes routes")

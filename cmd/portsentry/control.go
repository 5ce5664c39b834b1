package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
)

// controlNow is the clock for remaining times and uptime; tests replace it.
var controlNow = time.Now

// controlTimeLayout is how the commands print times (local time).
const controlTimeLayout = "2006-01-02 15:04:05"

// controlUsage is the synopsis of each operator command.
var controlUsage = map[string]string{
	"list":    "portsentry list [-socket PATH] [-json]\n\nLists the running daemon's active bans.",
	"status":  "portsentry status [-socket PATH] [-json]\n\nShows the running daemon's version, modes, firewall backend, bans and counters.",
	"block":   "portsentry block [-socket PATH] [-json] ADDR|CIDR [DURATION]\n\nBans an address or network now. DURATION is a Go duration (90m, 12h), days (7d,\n1d12h) or \"permanent\"; without it the daemon's configured duration applies.",
	"unblock": "portsentry unblock [-socket PATH] [-json] ADDR|CIDR\n  portsentry unblock [-socket PATH] [-json] -origin HOST\n\nLifts every active ban on ADDR, or inside CIDR; with -origin, every ban fleet host\nHOST made (\"*\": every remote ban). Exits 1 if none matched.",
}

// controlArgs is how many positional arguments each command takes (min, max).
var controlArgs = map[string][2]int{"list": {0, 0}, "status": {0, 0}, "block": {1, 2}, "unblock": {1, 1}}

// controlCmd implements the operator commands "list", "status", "block" and
// "unblock": they talk to the running daemon over its control socket.
func controlCmd(name string, args []string, stdout, stderr io.Writer) int {
	prog := "portsentry " + name
	nargs, known := controlArgs[name]
	if !known {
		fmt.Fprintf(stderr, "portsentry: unknown command %q\n", name)
		return exitUsage
	}
	fs, socket, asJSON := controlFlagSet(name, stderr)
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	origin := ""
	if f := fs.Lookup("origin"); f != nil {
		origin = f.Value.String()
	}
	if origin != "" {
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "%s: an address or -origin, not both\n", prog)
			return exitUsage
		}
		if _, err := control.ParseOrigin(origin); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return exitUsage
		}
		nargs[0] = 0
	}
	if len(pos) < nargs[0] || len(pos) > nargs[1] {
		if len(pos) > nargs[1] {
			fmt.Fprintf(stderr, "%s: unexpected argument %q\n", prog, pos[nargs[1]])
		} else {
			fmt.Fprintf(stderr, "%s: missing ADDR or CIDR\n", prog)
		}
		fs.Usage()
		return exitUsage
	}
	// Check the arguments before bothering the daemon.
	var target string
	var dur time.Duration
	if len(pos) > 0 {
		if _, err := control.ParsePrefix(pos[0]); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return exitUsage
		}
		target = pos[0]
	}
	if len(pos) > 1 {
		if dur, err = control.ParseDuration(pos[1]); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return exitUsage
		}
	}

	c, err := control.Dial(*socket)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry: cannot reach the daemon at %s: %s (is it running? are you root?)\n", *socket, dialReason(err))
		return exitError
	}
	defer c.Close()

	var result any
	var code = exitOK
	switch name {
	case "list":
		bans, err := c.List()
		if err != nil {
			return callFailed(prog, err, stderr)
		}
		sortForDisplay(bans)
		result = bans
		if !*asJSON {
			printBans(stdout, bans)
		}
	case "status":
		st, err := c.Status()
		if err != nil {
			return callFailed(prog, err, stderr)
		}
		result = st
		if !*asJSON {
			printStatus(stdout, st)
		}
	case "block":
		b, err := c.Block(target, dur)
		if err != nil {
			return callFailed(prog, err, stderr)
		}
		result = b
		if !*asJSON {
			if b.NotEnforced != "" {
				fmt.Fprintf(stdout, "recorded a ban on %s %s, but it is not enforced: %s\n", banAddr(b), banLifetime(b), b.NotEnforced)
			} else {
				fmt.Fprintf(stdout, "blocked %s %s\n", banAddr(b), banLifetime(b))
			}
		}
	case "unblock":
		var bans []control.Ban
		if origin != "" {
			bans, err = c.UnblockOrigin(origin)
			target = "fleet host " + origin
		} else {
			bans, err = c.Unblock(target)
		}
		if err != nil {
			return callFailed(prog, err, stderr)
		}
		sortForDisplay(bans)
		result = bans
		if len(bans) == 0 {
			fmt.Fprintf(stderr, "%s: no active ban matches %s\n", prog, target)
			code = exitError
		}
		if !*asJSON {
			for _, b := range bans {
				fmt.Fprintf(stdout, "unblocked %s (%s, since %s)\n", banAddr(b), banReason(b), b.Start.Local().Format(controlTimeLayout))
				for _, stays := range b.Stays {
					fmt.Fprintf(stdout, "  %s\n", stays)
				}
			}
		}
	}
	if *asJSON {
		out, err := json.MarshalIndent(result, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return exitError
		}
		fmt.Fprintf(stdout, "%s\n", out)
	}
	return code
}

// controlFlagSet is the flags of the operator command name.
func controlFlagSet(name string, stderr io.Writer) (fs *flag.FlagSet, socket *string, asJSON *bool) {
	fs = flag.NewFlagSet("portsentry "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket = fs.String("socket", config.DefaultControlSocket, "the daemon's control socket `path`")
	asJSON = fs.Bool("json", false, "print the result as indented JSON")
	if name == "unblock" {
		fs.String("origin", "", "lift the bans fleet host `HOST` made (\"*\": every remote ban) instead of an address's")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  %s\n\nOnly root may talk to the daemon.\n\nOptions:\n", controlUsage[name])
		fs.PrintDefaults()
	}
	return fs, socket, asJSON
}

// parseInterspersed parses fs's flags wherever they are among the arguments ("block
// 192.0.2.1 -json" as well as "block -json 192.0.2.1"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// dialReason is the heart of a dial error: "no such file or directory" rather than
// "dial unix /run/...: connect: no such file or directory".
func dialReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// callFailed reports an error from the daemon or the connection.
func callFailed(prog string, err error, stderr io.Writer) int {
	if errors.Is(err, control.ErrPermission) {
		fmt.Fprintf(stderr, "%s: the daemon refused: permission denied (only root may use it)\n", prog)
		return exitError
	}
	var se control.ServerError
	if errors.As(err, &se) {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	} else {
		fmt.Fprintf(stderr, "%s: talking to the daemon: %v\n", prog, err)
	}
	return exitError
}

// sortForDisplay orders bans oldest first, then by address.
func sortForDisplay(bans []control.Ban) {
	slices.SortStableFunc(bans, func(a, b control.Ban) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
}

func printBans(w io.Writer, bans []control.Ban) {
	if len(bans) == 0 {
		fmt.Fprintln(w, "no active bans")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tREMAINING\tREASON\tSINCE\tOFFENCES")
	for _, b := range bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", banAddr(b), banRemaining(b), banReason(b), b.Start.Local().Format(controlTimeLayout), b.Offences)
	}
	tw.Flush()
	for _, b := range bans {
		if b.NotEnforced != "" {
			fmt.Fprintf(w, "not enforced: %s: %s\n", banAddr(b), b.NotEnforced)
		}
	}
}

func printStatus(w io.Writer, st control.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	modes := strings.Join(st.Modes, " ")
	if modes == "" {
		modes = "none"
	}
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "modes:\t%s\n", modes)
	fmt.Fprintf(tw, "backend:\t%s\n", cmp.Or(st.Backend, "none"))
	if st.NotEnforced > 0 {
		fmt.Fprintf(tw, "active bans:\t%d (%d recorded but not enforced: see portsentry list)\n", st.ActiveBans, st.NotEnforced)
	} else {
		fmt.Fprintf(tw, "active bans:\t%d\n", st.ActiveBans)
	}
	if !st.Started.IsZero() {
		fmt.Fprintf(tw, "started:\t%s (up %s)\n", st.Started.Local().Format(controlTimeLayout), shortDuration(controlNow().Sub(st.Started)))
	}
	names := make([]string, 0, len(st.Counters))
	for n := range st.Counters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(tw, "%s:\t%d\n", n, st.Counters[n])
	}
	tw.Flush()
}

// banAddr is the address alone for a single host, the CIDR otherwise.
func banAddr(b control.Ban) string {
	if b.Prefix.IsSingleIP() {
		return b.Prefix.Addr().String()
	}
	return b.Prefix.String()
}

// banRemaining is the time left, "permanent", or "expiring" for a ban past its end
// that the daemon has not lifted yet.
func banRemaining(b control.Ban) string {
	if b.Permanent() {
		return "permanent"
	}
	left := b.Until.Sub(controlNow())
	if left < time.Second {
		return "expiring"
	}
	return shortDuration(left)
}

// banLifetime says how long a new ban lasts: "permanently" or "for 1h (until ...)".
func banLifetime(b control.Ban) string {
	if b.Permanent() {
		return "permanently"
	}
	return fmt.Sprintf("for %s (until %s)", shortDuration(b.Until.Sub(b.Start)), b.Until.Local().Format(controlTimeLayout))
}

// banReason is "stcp 143 TCP SYN/Normal scan" for a detection, "operator" for a ban
// an operator imposed, and for a fleet host's ban the same after "from HOST:".
func banReason(b control.Ban) string {
	if b.Origin != "" {
		local := b
		local.Origin, local.By = "", ""
		if r := banReason(local); r != "-" {
			return "from " + b.Origin + ": " + r
		}
		return "from " + b.Origin
	}
	if b.By == "operator" {
		return "operator"
	}
	var parts []string
	if b.Mode != "" {
		parts = append(parts, b.Mode)
	}
	if b.Port != 0 {
		parts = append(parts, fmt.Sprint(b.Port))
	}
	if b.Scan != "" {
		parts = append(parts, b.Scan)
	}
	if len(parts) == 0 {
		return cmp.Or(b.By, "-")
	}
	return strings.Join(parts, " ")
}

// shortDuration prints d to the second, dropping zero units at the end: "59m12s",
// "2h", "1h30m", "3d4h".
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d <= 0 {
		return "0s"
	}
	units := []struct {
		n    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	var b strings.Builder
	for _, u := range units {
		if q := d / u.n; q > 0 {
			fmt.Fprintf(&b, "%d%s", q, u.name)
			d -= q * u.n
		}
	}
	return b.String()
}

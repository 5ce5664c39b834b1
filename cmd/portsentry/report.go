package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/portsentry-go/portsentry/internal/atomicfile"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/duration"
	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/portsentry-go/portsentry/internal/report"
)

// defaultHistory is where Debian keeps the history file.
const defaultHistory = "/var/lib/portsentry/portsentry.history"

// reportShownMalformed is how many malformed lines are named on stderr.
const reportShownMalformed = 5

// reportCmd implements "portsentry report": it summarises a history file as one
// self-contained HTML page or as JSON.
func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs, f := reportFlagSet(stderr)
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portsentry report: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if f.format != "html" && f.format != "json" {
		fmt.Fprintf(stderr, "portsentry report: -format must be html or json, not %q\n", f.format)
		return exitUsage
	}
	if f.rows < 0 || f.top < 1 {
		fmt.Fprintln(stderr, "portsentry report: -rows must be 0 or more and -top 1 or more")
		return exitUsage
	}
	now := time.Now()
	opts := report.Options{Rows: f.rows, Top: f.top, Now: func() time.Time { return now }}
	if f.rows == 0 {
		opts.Rows = -1
	}
	var err error
	if opts.Since, err = parseWhen(f.since, now, false); err != nil {
		fmt.Fprintf(stderr, "portsentry report: -since: %v\n", err)
		return exitUsage
	}
	if opts.Until, err = parseWhen(f.until, now, true); err != nil {
		fmt.Fprintf(stderr, "portsentry report: -until: %v\n", err)
		return exitUsage
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && !opts.Since.Before(opts.Until) {
		fmt.Fprintln(stderr, "portsentry report: -since must be before -until")
		return exitUsage
	}

	path, code := historyPath(f.history, f.conf, stderr)
	if code != exitOK {
		return code
	}
	var in io.Reader = os.Stdin
	opts.Source = path
	if path == "-" {
		opts.Source = "standard input"
	} else {
		// The file a config names (or Debian's default) must be a regular file, as for
		// the daemon. A path given with -history may be a pipe: the operator chose it
		// (a process substitution, say) and is there to interrupt it.
		open := regfile.Open
		if f.history != "" {
			open = os.Open
		}
		f, err := open(path)
		if err != nil {
			fmt.Fprintf(stderr, "portsentry report: %v\n", err)
			return exitError
		}
		defer f.Close()
		in = f
	}

	sum, err := report.Build(in, opts)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry report: reading %s: %v\n", opts.Source, err)
		return exitError
	}
	reportMalformed(stderr, opts.Source, sum.Malformed)

	write := func(w io.Writer) error {
		if f.format == "json" {
			return report.WriteJSON(w, sum)
		}
		return report.WriteHTML(w, sum, opts)
	}
	if f.out == "-" {
		err = write(stdout)
	} else {
		err = atomicfile.Write(f.out, atomicfile.Options{Perm: 0o644}, write) // readable by a web server too
	}
	if err != nil {
		fmt.Fprintf(stderr, "portsentry report: %v\n", err)
		return exitError
	}
	return exitOK
}

// reportFlags are the flags of "portsentry report".
type reportFlags struct {
	out, history, conf, since, until, format string
	rows, top                                int
}

func reportFlagSet(stderr io.Writer) (*flag.FlagSet, *reportFlags) {
	fs := flag.NewFlagSet("portsentry report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &reportFlags{}
	fs.StringVar(&f.out, "o", "-", "write the report to `path` (\"-\": standard output); the file is replaced atomically")
	fs.StringVar(&f.history, "history", "", "history `file` to read (\"-\": standard input; default "+defaultHistory+", or HISTORY_FILE of -c)")
	fs.StringVar(&f.conf, "c", "", "take the history file from this config `file`'s HISTORY_FILE")
	fs.StringVar(&f.since, "since", "", "leave out lines before `time`: RFC3339, YYYY-MM-DD (local midnight) or a duration back from now (24h, 7d)")
	fs.StringVar(&f.until, "until", "", "leave out lines from `time` on: RFC3339, YYYY-MM-DD (the whole day is kept) or a duration back from now")
	fs.IntVar(&f.rows, "rows", report.DefaultRows, "newest lines shown in the table (`n`, 0 for none); the summary always covers every line in range")
	fs.IntVar(&f.top, "top", report.DefaultTop, "entries in the top scanner and top port lists")
	fs.StringVar(&f.format, "format", "html", "output `format`: html or json")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage:
  portsentry report [-history FILE | -c CONFIG] [-since T] [-until T] [-rows N] [-format html|json] [-o PATH]

Summarises a PortSentry history file (classic or this daemon's, Debian's included):
counts, top scanners, top ports, probes over time, TCP/UDP split and the newest lines.
HTML output is one self-contained page for a browser or a web directory (cron friendly);
JSON output is the same summary for scripts. Malformed lines are counted and skipped.

Options:
`)
		fs.PrintDefaults()
	}
	return fs, f
}

// historyPath decides which history file to read: -history, else -c's HISTORY_FILE,
// else Debian's default.
func historyPath(history, conf string, stderr io.Writer) (string, int) {
	if history != "" {
		return history, exitOK
	}
	if conf == "" {
		return defaultHistory, exitOK
	}
	cfg, diags, err := config.Load(conf)
	if cfg == nil {
		fmt.Fprintf(stderr, "portsentry report: %v\n", err)
		return "", exitConfig
	}
	// Problems elsewhere in the file do not stop a report; they are shown, though.
	for _, d := range diags {
		fmt.Fprintln(stderr, d)
	}
	if cfg.HistoryFile == "" {
		fmt.Fprintf(stderr, "portsentry report: %s does not set HISTORY_FILE; use -history\n", conf)
		return "", exitConfig
	}
	return cfg.HistoryFile, exitOK
}

// reportMalformed names the first malformed lines on stderr as FILE:LINE: reason.
func reportMalformed(stderr io.Writer, source string, m report.Malformed) {
	if m.Count == 0 {
		return
	}
	for i, b := range m.First {
		if i == reportShownMalformed {
			break
		}
		fmt.Fprintf(stderr, "%s:%d: malformed history line skipped: %s\n", source, b.Line, b.Reason)
	}
	if m.Count > int64(min(len(m.First), reportShownMalformed)) {
		fmt.Fprintf(stderr, "%s: %d malformed lines skipped in all\n", source, m.Count)
	}
}

// parseWhen reads a -since/-until value: "" (no bound), RFC3339, YYYY-MM-DD in local
// time (for -until the end of that day, so the day is included), or a duration back
// from now (duration.Parse: 90m, 24h, 7d, 1d12h).
func parseWhen(s string, now time.Time, endOfDay bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	d, err := duration.Parse(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not RFC3339 (2026-11-24T15:53:15Z), YYYY-MM-DD or a positive duration (24h, 7d)", s)
	}
	return now.Add(-d), nil
}

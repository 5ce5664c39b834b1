// Package logging gives the daemon a *slog.Logger whose lines look like classic
// PortSentry's: the message text verbatim ("attackalert: ...", "adminalert: ..."), so that
// scripts grepping syslog keep working, followed by any attributes as key=value.
//
// A classic line is one whose message starts with "attackalert:", "adminalert:" or
// "securityalert:": the stream users' scripts parse. It goes to syslog at level notice
// whatever its slog level, as PortSentry 1.2 logged everything. Every other line is ours
// (key=value diagnostics such as "own address added addr=..."): it goes at its own
// level, info for Info, so that a reader selecting exactly notice (daemon.=notice)
// gets the classic stream alone, and one selecting notice and above gets it and our
// warnings and errors. On a plain stream the text of a line says nothing of its level
// but "debug: " for debug lines, as before; on the journal's stream (see Stream) each
// line starts with its syslog priority, which journald takes and strips.
//
// Control characters never reach a line raw: in an attribute's value the value is
// quoted with Go escapes, in the message they are written as \xNN escapes.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Severity is a syslog severity (RFC 5424): the lower, the more severe.
type Severity int

// The severities the daemon uses.
const (
	SevErr     Severity = 3
	SevWarning Severity = 4
	SevNotice  Severity = 5
	SevInfo    Severity = 6
	SevDebug   Severity = 7
)

// classicPrefixes start the messages of the classic stream.
var classicPrefixes = []string{"attackalert:", "adminalert:", "securityalert:"}

// Classic reports whether msg is a line of the classic stream.
func Classic(msg string) bool {
	for _, p := range classicPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// SeverityOf is the syslog severity a record of level l with message msg is sent at:
// notice for a classic line (debug lines excepted), else the severity of l.
func SeverityOf(l slog.Level, msg string) Severity {
	switch {
	case l < slog.LevelInfo:
		return SevDebug
	case Classic(msg):
		return SevNotice
	case l >= slog.LevelError:
		return SevErr
	case l >= slog.LevelWarn:
		return SevWarning
	default:
		return SevInfo
	}
}

// sink receives finished lines.
type sink interface {
	write(sev Severity, t time.Time, line string) error
}

// handler formats records as classic lines for a sink.
type handler struct {
	sink  sink
	level slog.Leveler
	attrs string // pre-rendered attributes from WithAttrs
	group string
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	writeEscaped(&b, r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	return h.sink.write(SeverityOf(r.Level, r.Message), r.Time, b.String())
}

// writeEscaped writes s with its control characters (and the bytes of invalid UTF-8)
// as \xNN: a text without any is written unchanged.
func writeEscaped(b *strings.Builder, s string) {
	if !needsEscape(s) {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(b, `\x%02x`, c)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

// needsEscape reports whether s holds a control character or invalid UTF-8.
func needsEscape(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return true
		}
	}
	return false
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		writeAttr(&b, h.group, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.group += name + "."
	return &c
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, group+a.Key+".", g)
		}
		return
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \"=") || !printable(v) {
		v = strconv.Quote(v) // escapes every control character
	}
	b.WriteByte(' ')
	writeEscaped(b, group+a.Key)
	b.WriteByte('=')
	b.WriteString(v)
}

// printable reports whether s is valid UTF-8 of printable characters and spaces.
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// streamSink writes "TIME portsentry[PID]: LEVEL? message" lines to a stream. On the
// journal's stream (journal set) it writes "<SEVERITY>portsentry[PID]: LEVEL? message"
// instead: journald stamps each line with its own time and takes the priority from
// the "<N>" prefix.
type streamSink struct {
	mu      sync.Mutex
	w       io.Writer
	pid     int
	journal bool
}

func newStreamSink(w io.Writer, pid int) *streamSink {
	return &streamSink{w: w, pid: pid, journal: OnJournal(w)}
}

func (s *streamSink) write(sev Severity, t time.Time, line string) error {
	// Classic messages carry their own weight ("adminalert: ERROR: ..."); only debug
	// lines, which classic never had, are marked.
	prefix := ""
	if sev >= SevDebug {
		prefix = "debug: "
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.journal {
		_, err = fmt.Fprintf(s.w, "<%d>portsentry[%d]: %s%s\n", sev, s.pid, prefix, line)
	} else {
		_, err = fmt.Fprintf(s.w, "%s portsentry[%d]: %s%s\n", t.Format(time.RFC3339), s.pid, prefix, line)
	}
	return err
}

// getenv reads the environment (a variable for the tests).
var getenv = os.Getenv

// OnJournal reports whether w is the stream systemd connected to the journal: a file
// whose device and inode are those JOURNAL_STREAM ("DEVICE:INODE") names. The variable
// alone does not say it, since children inherit it with other streams.
func OnJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	dev, ino, ok := strings.Cut(getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == d && uint64(st.Ino) == i
}

// syslogSink sends to the local syslog daemon: facility daemon, ident portsentry with the
// PID, at each line's severity (SeverityOf: the classic lines at notice). While no syslog daemon listens (at boot,
// in a container, while it restarts) lines go to the fallback stream and the
// connection is tried again every redialEvery: detection never stops for the log.
type syslogSink struct {
	mu       sync.Mutex
	w        *syslog.Writer // nil while not connected
	nextDial time.Time
	fallback sink
}

const redialEvery = 5 * time.Second

func (s *syslogSink) write(sev Severity, t time.Time, line string) error {
	s.mu.Lock()
	if s.w == nil && !t.Before(s.nextDial) {
		s.w, _ = dial()
		s.nextDial = t.Add(redialEvery)
	}
	w := s.w
	s.mu.Unlock()
	if w == nil {
		return s.fallback.write(sev, t, line)
	}
	switch sev {
	case SevErr:
		return w.Err(line)
	case SevWarning:
		return w.Warning(line)
	case SevNotice:
		return w.Notice(line)
	case SevInfo:
		return w.Info(line)
	default:
		return w.Debug(line)
	}
}

// Close closes the connection, if there is one.
func (s *syslogSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	return s.w.Close()
}

// dial connects to the local syslog daemon (a variable for the tests).
var dial = defaultDial

func defaultDial() (*syslog.Writer, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, "portsentry")
}

// Stream returns a logger writing classic lines to w. When w is the journal's stream
// (OnJournal), the lines carry their priority and no time of their own.
func Stream(w io.Writer, pid int, level slog.Leveler) *slog.Logger {
	return slog.New(&handler{sink: newStreamSink(w, pid), level: level})
}

// Syslog returns a logger writing to the local syslog (daemon facility, ident
// "portsentry"), and a closer for the connection. Without a syslog daemon it writes
// to fallback (as Stream does) until one answers; err says why it is not connected yet.
func Syslog(fallback io.Writer, pid int, level slog.Leveler) (*slog.Logger, io.Closer, error) {
	s := &syslogSink{fallback: newStreamSink(fallback, pid)}
	var err error
	if s.w, err = dial(); err != nil {
		s.nextDial = time.Now().Add(redialEvery)
		err = fmt.Errorf("cannot connect to syslog (%w): logging to stderr until it answers", err)
	}
	return slog.New(&handler{sink: s, level: level}), s, err
}

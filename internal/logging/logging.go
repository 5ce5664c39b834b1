// Package logging gives the daemon a *slog.Logger whose lines look like classic
// PortSentry's: the message text verbatim ("attackalert: ...", "adminalert: ..."), so that
// scripts grepping syslog keep working, followed by any attributes as key=value.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"strings"
	"sync"
	"time"
)

// sink receives finished lines.
type sink interface {
	write(level slog.Level, t time.Time, line string) error
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
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	return h.sink.write(r.Level, r.Time, b.String())
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
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s%s=%s", group, a.Key, v)
}

// streamSink writes "TIME portsentry[PID]: LEVEL? message" lines to a stream.
type streamSink struct {
	mu  sync.Mutex
	w   io.Writer
	pid int
}

func (s *streamSink) write(level slog.Level, t time.Time, line string) error {
	// Classic messages carry their own weight ("adminalert: ERROR: ..."); only debug
	// lines, which classic never had, are marked.
	prefix := ""
	if level < slog.LevelInfo {
		prefix = "debug: "
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := fmt.Fprintf(s.w, "%s portsentry[%d]: %s%s\n", t.Format(time.RFC3339), s.pid, prefix, line)
	return err
}

// syslogSink sends to the local syslog daemon: facility daemon, ident portsentry with the
// PID, and the classic lines at level notice. While no syslog daemon listens (at boot,
// in a container, while it restarts) lines go to the fallback stream and the
// connection is tried again every redialEvery: detection never stops for the log.
type syslogSink struct {
	mu       sync.Mutex
	w        *syslog.Writer // nil while not connected
	nextDial time.Time
	fallback sink
}

const redialEvery = 5 * time.Second

func (s *syslogSink) write(level slog.Level, t time.Time, line string) error {
	s.mu.Lock()
	if s.w == nil && !t.Before(s.nextDial) {
		s.w, _ = dial()
		s.nextDial = t.Add(redialEvery)
	}
	w := s.w
	s.mu.Unlock()
	if w == nil {
		return s.fallback.write(level, t, line)
	}
	switch {
	case level >= slog.LevelError:
		return w.Err(line)
	case level >= slog.LevelWarn:
		return w.Warning(line)
	case level >= slog.LevelInfo:
		return w.Notice(line)
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

// Stream returns a logger writing classic lines to w.
func Stream(w io.Writer, pid int, level slog.Leveler) *slog.Logger {
	return slog.New(&handler{sink: &streamSink{w: w, pid: pid}, level: level})
}

// Syslog returns a logger writing to the local syslog (daemon facility, ident
// "portsentry"), and a closer for the connection. Without a syslog daemon it writes
// to fallback (as Stream does) until one answers; err says why it is not connected yet.
func Syslog(fallback io.Writer, pid int, level slog.Leveler) (*slog.Logger, io.Closer, error) {
	s := &syslogSink{fallback: &streamSink{w: fallback, pid: pid}}
	var err error
	if s.w, err = dial(); err != nil {
		s.nextDial = time.Now().Add(redialEvery)
		err = fmt.Errorf("cannot connect to syslog (%w): logging to stderr until it answers", err)
	}
	return slog.New(&handler{sink: s, level: level}), s, err
}

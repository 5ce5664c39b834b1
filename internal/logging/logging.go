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
// PID, and the classic lines at level notice.
type syslogSink struct{ w *syslog.Writer }

func (s *syslogSink) write(level slog.Level, _ time.Time, line string) error {
	switch {
	case level >= slog.LevelError:
		return s.w.Err(line)
	case level >= slog.LevelWarn:
		return s.w.Warning(line)
	case level >= slog.LevelInfo:
		return s.w.Notice(line)
	default:
		return s.w.Debug(line)
	}
}

// Stream returns a logger writing classic lines to w.
func Stream(w io.Writer, pid int, level slog.Leveler) *slog.Logger {
	return slog.New(&handler{sink: &streamSink{w: w, pid: pid}, level: level})
}

// Syslog returns a logger writing to the local syslog (daemon facility, ident
// "portsentry"), and a closer for the connection.
func Syslog(level slog.Leveler) (*slog.Logger, io.Closer, error) {
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, "portsentry")
	if err != nil {
		return nil, nil, fmt.Errorf("connect to syslog: %w", err)
	}
	return slog.New(&handler{sink: &syslogSink{w: w}, level: level}), w, nil
}

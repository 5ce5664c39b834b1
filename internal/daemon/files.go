package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/history"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// files holds the history file and one blocked file per mode (BLOCKED_FILE.<mode>).
type files struct {
	mu      sync.RWMutex
	history *history.File
	blocked map[probe.Mode]*history.File
	report  func(label string) appendfile.Report // for the file the label names
}

// openFiles opens the history file for appending and the blocked files emptied, as
// classic does at start (it forgets its blocks on restart). report gives each file
// where its write failures go, by label ("history", "blocked.tcp").
func openFiles(cfg *config.Config, modes []probe.Mode, report func(label string) appendfile.Report) (*files, error) {
	f := &files{blocked: map[probe.Mode]*history.File{}, report: report}
	if err := f.open(cfg, modes, true); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *files) open(cfg *config.Config, modes []probe.Mode, truncate bool) error {
	h, err := history.Open(cfg.HistoryFile, false, f.report("history"))
	if err != nil {
		return fmt.Errorf("HISTORY_FILE: %w", err)
	}
	f.history = h
	for _, m := range modes {
		b, err := history.Open(cfg.BlockedPath(m), truncate, f.report("blocked."+string(m)))
		if err != nil {
			return fmt.Errorf("BLOCKED_FILE: %w", err)
		}
		f.blocked[m] = b
	}
	return nil
}

// fileReport is where the file labelled label reports write failures: the log and the
// portsentry_write_* metrics.
func (d *Daemon) fileReport(label string) appendfile.Report {
	return appendfile.Report{
		Log:     d.log,
		Error:   func() { d.metrics.WriteError(label) },
		Queued:  func(n int) { d.metrics.WriteQueued(label, n) },
		Dropped: func(n int) { d.metrics.WriteDropped(label, n) },
	}
}

// reopen opens every file again, at the paths of a new config: a path that did not
// change is reopened too, which is what logrotate's rename-then-reload needs. Nothing
// is truncated: a reload is not a restart.
func (f *files) reopen(cfg *config.Config, modes []probe.Mode) error {
	next := &files{blocked: map[probe.Mode]*history.File{}, report: f.report}
	if err := next.open(cfg, modes, false); err != nil {
		next.close()
		return err
	}
	f.mu.Lock()
	old := &files{history: f.history, blocked: f.blocked}
	f.history, f.blocked = next.history, next.blocked
	// Lines a full disk kept queued go to the new files, before any new line does.
	next.history.Inherit(old.history)
	for m, b := range next.blocked {
		if ob := old.blocked[m]; ob != nil {
			b.Inherit(ob)
		}
	}
	f.mu.Unlock()
	return old.close()
}

// appendBlocked writes lines to the blocked files only (bans carried over a restart
// are already in the history).
func (f *files) appendBlocked(batch []entry) error {
	byMode := map[probe.Mode][]string{}
	for _, e := range batch {
		byMode[e.mode] = append(byMode[e.mode], e.line)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	var errs []error
	for m, lines := range byMode {
		errs = append(errs, f.blocked[m].Append(lines...))
	}
	return errors.Join(errs...)
}

// append writes a batch: each mode's lines to its blocked file and every line, in
// order, to the history file, one write and one sync per file.
func (f *files) append(batch []entry) error {
	byMode := map[probe.Mode][]string{}
	all := make([]string, len(batch))
	for i, e := range batch {
		byMode[e.mode] = append(byMode[e.mode], e.line)
		all[i] = e.line
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	errs := []error{f.history.Append(all...)}
	for m, lines := range byMode {
		errs = append(errs, f.blocked[m].Append(lines...))
	}
	return errors.Join(errs...)
}

func (f *files) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.history != nil {
		errs = append(errs, f.history.Close())
	}
	for _, b := range f.blocked {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// drop removes from every blocked file the hosts inside the given prefixes: their bans
// were lifted, and the blocked files list what is blocked now.
func (f *files) drop(prefixes []netip.Prefix) error {
	keep := func(line string) bool {
		a, ok := lineAddr(line)
		return !ok || !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	var errs []error
	for _, b := range f.blocked {
		errs = append(errs, b.Rewrite(keep))
	}
	return errors.Join(errs...)
}

// lineAddr reads the address of a classic history/blocked line
// ("... Host: NAME/ADDR Port: N PROTO Blocked").
func lineAddr(line string) (netip.Addr, bool) {
	end := strings.LastIndex(line, " Port: ")
	if end < 0 {
		return netip.Addr{}, false
	}
	start := strings.LastIndex(line[:end], "/")
	if start < 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(line[start+1 : end])
	return a, err == nil
}

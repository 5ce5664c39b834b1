// Package journal writes the classic history and blocked files.
//
// Durability: every batch of lines is written with a single write(2) on a file opened
// with O_APPEND, so concurrent writers never interleave and a crash of the daemon can
// never leave half a line (the kernel applies the whole write or none of it). After each
// batch the file is fsync'ed, so a line that was logged as written survives a power loss.
package journal

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Permissions for files and the directories created for them: the files name attackers
// and hosts we blocked, which is nobody else's business.
const (
	fileMode = 0o640
	dirMode  = 0o750
)

// Line formats one classic history/blocked line, without the newline:
//
//	1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked
//
// name is the resolved host name, or the address itself when not resolving. The time is
// rendered in t's location (the daemon passes local time, as classic does).
func Line(t time.Time, name string, addr netip.Addr, port uint16, proto probe.Proto) string {
	return fmt.Sprintf("%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked",
		t.Unix(), int(t.Month()), t.Day(), t.Year(), t.Hour(), t.Minute(), t.Second(),
		name, addr, port, proto)
}

// File is an append-only text file safe for concurrent use.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Open opens path for appending, creating it and its parent directories.
// With truncate set the file is emptied first (classic does this to blocked files).
func Open(path string, truncate bool) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &File{path: path, f: f}, nil
}

// Path is the file's name.
func (f *File) Path() string { return f.path }

// Append writes the lines (newlines added) in one write and syncs the file.
func (f *File) Append(lines ...string) error {
	if len(lines) == 0 {
		return nil
	}
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	buf := make([]byte, 0, n)
	for _, l := range lines {
		buf = append(buf, l...)
		buf = append(buf, '\n')
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return fmt.Errorf("write %s: file is closed", f.path)
	}
	if _, err := f.f.Write(buf); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	return nil
}

// Close closes the file; later Appends fail.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Rewrite keeps only the lines for which keep returns true, replacing the file
// atomically (a temporary file beside it, synced, renamed over it), and goes on
// appending to the new file. Used for the blocked files, which list hosts blocked now.
func (f *File) Rewrite(keep func(line string) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return fmt.Errorf("rewrite %s: file is closed", f.path)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", f.path, err)
	}
	var out []byte
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l != "" && keep(strings.TrimSuffix(l, "\n")) {
			out = append(out, l...)
		}
	}
	if len(out) == len(data) {
		return nil
	}
	tmp := f.path + ".tmp"
	if err := writeSynced(tmp, out); err != nil {
		return fmt.Errorf("rewrite %s: %w", f.path, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rewrite %s: %w", f.path, err)
	}
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", f.path, err)
	}
	f.f.Close()
	f.f = nf
	return nil
}

func writeSynced(path string, data []byte) error {
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return err
	}
	_, werr := w.Write(data)
	serr := w.Sync()
	return errors.Join(werr, serr, w.Close())
}

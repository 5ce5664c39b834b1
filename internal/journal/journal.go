// Package journal writes the classic history and blocked files.
//
// Durability: every batch of lines is written with a single write(2) on a file opened
// with O_APPEND, so concurrent writers never interleave and a crash of the daemon can
// never leave half a line. After each batch the file is fsync'ed, so a line that was
// logged as written survives a power loss. A write the disk refuses or cuts short (full,
// over quota, I/O error) is cut back to the last whole line, and its lines wait in a
// bounded queue until the disk takes them again (see appendfile).
package journal

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/atomicfile"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
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

// File is an append-only text file safe for concurrent use. Its lines go through an
// appendfile.Queue: a write the disk refuses leaves no partial line, and its lines are
// kept and written once there is space again.
type File struct {
	path string
	q    *appendfile.Queue
}

// Open opens path for appending, creating it and its parent directories; r is where
// write failures are reported. A path that is there but is not a regular file (a FIFO,
// a device such as /dev/null, a directory) is refused (see package regfile). With truncate set the file is emptied first (classic
// does this to blocked files). A last line left without its newline (cut short by a
// crash, or by a full disk under an older version) is cut off, so the first line
// appended starts a line of its own.
func Open(path string, truncate bool, r appendfile.Report) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, err)
	}
	flags := os.O_RDWR | os.O_CREATE | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	// Only a regular file: the open of a FIFO would wait for a reader (for ever, and
	// with the daemon's main loop), and a device would swallow the lines.
	f, err := regfile.OpenFile(path, flags, fileMode)
	if err != nil {
		return nil, err // an *fs.PathError, naming path
	}
	if err := cutTornTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &File{path: path, q: appendfile.NewQueue(path, f, r)}, nil
}

// cutTornTail truncates f after its last newline when it does not end with one.
func cutTornTail(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	buf := make([]byte, 4096)
	for end := st.Size(); end > 0; {
		off := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-off], off)
		if err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			if off+int64(i)+1 == st.Size() {
				return nil
			}
			return f.Truncate(off + int64(i) + 1)
		}
		end = off
	}
	return f.Truncate(0)
}

// Path is the file's name.
func (f *File) Path() string { return f.path }

// Append writes the lines (newlines added) in one write and syncs the file. When the
// disk refuses them they are queued (see appendfile.Queue); the error is only for a
// closed file.
func (f *File) Append(lines ...string) error {
	if len(lines) == 0 {
		return nil
	}
	return f.q.Append(lines...)
}

// Queued is how many lines wait for the disk.
func (f *File) Queued() int { return f.q.Queued() }

// Inherit takes over the lines old could not write yet (see appendfile.Queue.Inherit).
func (f *File) Inherit(old *File) { f.q.Inherit(old.q) }

// Close writes what it can of the queue and closes the file; later Appends fail.
func (f *File) Close() error { return f.q.Close() }

// Rewrite keeps only the lines for which keep returns true, replacing the file
// atomically (a temporary file beside it, synced, renamed over it), and goes on
// appending to the new file. Used for the blocked files, which list hosts blocked now.
func (f *File) Rewrite(keep func(line string) bool) error {
	return f.q.Replace(func() (appendfile.Backing, error) {
		data, err := readRegular(f.path)
		if err != nil {
			return nil, fmt.Errorf("rewrite %s: %w", f.path, err)
		}
		var out []byte
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if l != "" && keep(strings.TrimSuffix(l, "\n")) {
				out = append(out, l...)
			}
		}
		if len(out) == len(data) {
			return nil, nil
		}
		if err := atomicfile.WriteFile(f.path, out, atomicfile.Options{Perm: fileMode}); err != nil {
			return nil, fmt.Errorf("rewrite %s: %w", f.path, err)
		}
		nf, err := regfile.OpenFile(f.path, os.O_RDWR|os.O_APPEND, fileMode)
		if err != nil {
			return nil, fmt.Errorf("rewrite %s: %w", f.path, err)
		}
		return nf, nil
	})
}

// readRegular reads the regular file at path whole. The files rewritten are ours and
// bounded by what the daemon wrote to them; only special files are refused.
func readRegular(path string) ([]byte, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

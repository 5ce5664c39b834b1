// Package regfile opens the files the configuration names, and only if they are
// regular files.
//
// A path in a config file may point anywhere: at a FIFO (whose open(2) waits for a
// writer, forever, and takes the process's signal handling with it when that happens in
// the main loop), at /dev/zero (which never ends), at a directory, or at a file far
// bigger than any sane config. Every open here is done with O_NONBLOCK, so that it
// returns at once whatever the path is, and the descriptor is checked with fstat before
// anything is read from or written to it: anything but a regular file is refused with
// an error that says what it is. Only then is O_NONBLOCK cleared again. Reads are
// bounded by a limit the caller gives.
//
// A device is never opened at all when a stat of the path already shows it is not a
// regular file: opening some devices has effects of its own (a watchdog, a tape
// drive). The fstat after the open catches a path replaced in between.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is what the errors of a path that is not a regular file match
// (errors.Is).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is what the errors of a file over its read limit match (errors.Is).
var ErrTooLarge = errors.New("file too large")

// NotRegularError says what a path is instead of a regular file.
type NotRegularError struct {
	Kind string // "a FIFO", "a character device", "a directory", ...
}

func (e *NotRegularError) Error() string { return "is " + e.Kind + ", not a regular file" }

// Unwrap makes errors.Is(err, ErrNotRegular) hold.
func (e *NotRegularError) Unwrap() error { return ErrNotRegular }

// TooLargeError is a file longer than the limit it was read with.
type TooLargeError struct {
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than %d bytes (%s), the limit for this file", e.Limit, human(e.Limit))
}

// Unwrap makes errors.Is(err, ErrTooLarge) hold.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

func human(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// kind names the file type of a stat mode (the S_IFMT bits); "" for a regular file.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ""
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link" // only from Lstat; stat follows links
	}
	return "of an unknown file type"
}

// stat is stat(2) of path (following symbolic links), as the raw mode.
func stat(path string) (uint32, error) {
	var st unix.Stat_t
	for {
		err := unix.Stat(path, &st)
		if err == unix.EINTR {
			continue
		}
		return st.Mode, err
	}
}

// Check reports whether path, when something is there, is a regular file (symbolic
// links followed). Only what a stat can see is reported: an absent path, or one that
// cannot be looked at, passes (nil), and opening it reports the rest. It is for the
// files a program will create if needed, checked before it starts.
func Check(path string) error {
	mode, err := stat(path)
	if err != nil {
		return nil
	}
	if k := kind(mode); k != "" {
		return &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Kind: k}}
	}
	return nil
}

// Open opens the regular file at path for reading (see OpenFile).
func Open(path string) (*os.File, error) {
	return OpenFile(path, os.O_RDONLY, 0)
}

// OpenFile is os.OpenFile for regular files only: it never blocks on a FIFO, and
// refuses, with an *fs.PathError whose Err is a *NotRegularError, a path that is not a
// regular file once open. flag and perm are those of os.OpenFile (O_CREATE creates a
// regular file as usual). The file is returned in blocking mode.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	if mode, err := stat(path); err == nil {
		if k := kind(mode); k != "" {
			return nil, &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Kind: k}}
		}
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, flag|unix.O_NONBLOCK|unix.O_CLOEXEC, uint32(perm.Perm()))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		// A FIFO opened for writing only, with no reader, fails with ENXIO under
		// O_NONBLOCK: say what is there instead.
		if err == unix.ENXIO {
			if mode, serr := stat(path); serr == nil && kind(mode) != "" {
				return nil, &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Kind: kind(mode)}}
			}
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if k := kind(st.Mode); k != "" {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: path, Err: &NotRegularError{Kind: k}}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadAll reads the whole regular file at path, refusing (with an *fs.PathError whose
// Err is a *TooLargeError) one of more than limit bytes. The size is checked before
// reading, and the read stops one byte past the limit whatever the size said (files in
// /proc say 0), so memory use is bounded by the limit.
func ReadAll(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

func readLimited(f *os.File, path string, limit int64) ([]byte, error) {
	tooLarge := &fs.PathError{Op: "read", Path: path, Err: &TooLargeError{Limit: limit}}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size > limit {
		return nil, tooLarge
	}
	// One byte more than the size, so that a file that did not grow needs no second
	// allocation to find its end.
	buf := make([]byte, 0, min(size, limit)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := cap(buf)
		if int64(end) > limit+1 {
			end = int(limit + 1)
		}
		n, err := f.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, tooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err // an *fs.PathError from os.File
		}
	}
}

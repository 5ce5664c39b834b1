// Package appendfile appends lines to the daemon's files (the history and blocked
// files, JSON_LOG, the ban journal) so that a failed write never leaves part of a line
// behind, and keeps what could not be written queued until the disk takes it again.
//
// A batch of lines is one write(2). When it fails or is cut short (ENOSPC, EDQUOT, EIO),
// whatever part of it reached the file is cut off again with ftruncate, so the file
// still ends with the last whole line: the next line written, once there is space
// again, starts a line of its own instead of being glued onto half of one, and a reader
// never sees a torn record. File does this for one file; Queue adds the bounded queue,
// the retries and the reports (log, metrics) the text files need; Outage is the shared
// way of telling an outage's start and end in the log.
package appendfile

import (
	"errors"
	"fmt"
	"io"
)

// Backing is the file a File writes to: an *os.File, or a fake in tests. Writes must
// land at its end (O_APPEND, or positioned there), and Seek(0, io.SeekCurrent) must
// tell where the last write ended.
type Backing interface {
	io.Writer
	io.Seeker
	Truncate(size int64) error
	Sync() error
	Close() error
}

// File writes whole lines and cuts off any part of a failed write. It is not safe for
// concurrent use: its owner serializes the calls.
type File struct {
	b Backing
	// cut is where a partial write begins that could not be cut off yet (the
	// ftruncate failed too); -1 when the file ends with a whole line.
	cut int64
}

// New returns a File writing to b, which must end with a whole line (or be empty).
func New(b Backing) *File { return &File{b: b, cut: -1} }

// Write writes p, whole lines, in one write. On an error nothing of p is left in the
// file: a short write is cut back to where p began. If even that fails the error says
// so, and the next Write retries the cut before it writes anything.
func (f *File) Write(p []byte) error {
	if err := f.repair(); err != nil {
		return err
	}
	n, err := f.b.Write(p)
	if err == nil && n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	if n <= 0 {
		return err
	}
	// The offset is the end of what was written, wherever the kernel put it (O_APPEND),
	// so this finds the start of p even if another process appended before it.
	end, serr := f.b.Seek(0, io.SeekCurrent)
	if serr != nil {
		return errors.Join(err, fmt.Errorf("a partial line may remain: %w", serr))
	}
	f.cut = end - int64(n)
	if rerr := f.repair(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// repair cuts off a partial write left by an earlier failed cut.
func (f *File) repair() error {
	if f.cut < 0 {
		return nil
	}
	if err := f.b.Truncate(f.cut); err != nil {
		return fmt.Errorf("cannot cut off a partial line: %w", err)
	}
	// A file not opened with O_APPEND would otherwise go on writing past the new end,
	// leaving a hole of zero bytes.
	if _, err := f.b.Seek(f.cut, io.SeekStart); err != nil {
		return fmt.Errorf("cannot cut off a partial line: %w", err)
	}
	f.cut = -1
	return nil
}

// Sync forces what was written to disk.
func (f *File) Sync() error { return f.b.Sync() }

// Close closes the file.
func (f *File) Close() error { return f.b.Close() }

package appendfile

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"

	"pgregory.net/rapid"
)

// disk is a fake Backing: a file on a disk with room bytes left, whose writes land at
// the end (O_APPEND) and are cut short, with err, where the room runs out.
type disk struct {
	data    []byte
	off     int64
	room    int   // bytes the disk still takes; < 0: no limit
	err     error // what a refused write returns
	badCuts int   // Truncate calls still to fail
	syncErr error
}

func newDisk(room int) *disk { return &disk{room: room, err: syscall.ENOSPC} }

func (d *disk) Write(p []byte) (int, error) {
	n := len(p)
	if d.room >= 0 && n > d.room {
		n = d.room
	}
	d.data = append(d.data, p[:n]...)
	d.off = int64(len(d.data))
	if d.room >= 0 {
		d.room -= n
	}
	if n < len(p) {
		return n, d.err
	}
	return n, nil
}

func (d *disk) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		d.off = off
	case io.SeekCurrent:
		d.off += off
	default:
		return 0, errors.ErrUnsupported
	}
	return d.off, nil
}

func (d *disk) Truncate(size int64) error {
	if d.badCuts > 0 {
		d.badCuts--
		return syscall.EIO
	}
	if d.room >= 0 {
		d.room += len(d.data) - int(size)
	}
	d.data = d.data[:size]
	return nil
}

func (d *disk) Sync() error  { return d.syncErr }
func (d *disk) Close() error { return nil }

func TestShortWriteIsCutBack(t *testing.T) {
	d := newDisk(5)
	f := New(d)
	if err := f.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	// 3 bytes of room: "bb" and the newline of a whole first line fit, "cc\n" does not.
	err := f.Write([]byte("bb\ncc\n"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want ENOSPC", err)
	}
	if string(d.data) != "a\n" {
		t.Fatalf("after the short write the file holds %q, want %q", d.data, "a\n")
	}
	if d.off != 2 {
		t.Errorf("offset %d after the cut, want 2", d.off)
	}
	d.room = -1
	if err := f.Write([]byte("bb\ncc\n")); err != nil {
		t.Fatal(err)
	}
	if string(d.data) != "a\nbb\ncc\n" {
		t.Fatalf("got %q", d.data)
	}
}

func TestFailedCutIsRetriedFirst(t *testing.T) {
	d := newDisk(3)
	d.badCuts = 2
	f := New(d)
	err := f.Write([]byte("hello\n"))
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("error %v, want ENOSPC and the failed cut's EIO", err)
	}
	d.room = -1
	// The cut fails again: nothing is written after the partial line.
	if err := f.Write([]byte("x\n")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("error %v, want EIO", err)
	}
	if string(d.data) != "hel" {
		t.Fatalf("got %q", d.data)
	}
	if err := f.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if string(d.data) != "x\n" {
		t.Fatalf("got %q, want the partial line gone", d.data)
	}
}

func TestWriteWithoutProgress(t *testing.T) {
	d := newDisk(0)
	f := New(d)
	if err := f.Write([]byte("a\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v", err)
	}
	if len(d.data) != 0 {
		t.Fatalf("got %q", d.data)
	}
}

// TestWritesKeepWholeLines: whatever the room left, the failing cuts and the batches,
// the file holds exactly the batches whose Write succeeded, in order, once any failed
// cut has been repaired; before that, they are a prefix of it.
func TestWritesKeepWholeLines(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := newDisk(rapid.IntRange(-1, 64).Draw(t, "room"))
		d.err = rapid.SampledFrom([]error{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO}).Draw(t, "err")
		f := New(d)
		var want []byte
		steps := rapid.IntRange(1, 30).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				d.room = rapid.IntRange(-1, 64).Draw(t, "room")
			case 1:
				d.badCuts = rapid.IntRange(0, 2).Draw(t, "badCuts")
			default:
				lines := rapid.SliceOfN(rapid.StringMatching(`[a-z]{0,12}`), 1, 5).Draw(t, "lines")
				batch := []byte(strings.Join(lines, "\n") + "\n")
				if f.Write(batch) == nil {
					want = append(want, batch...)
				}
			}
			if f.cut < 0 && !bytes.Equal(d.data, want) {
				t.Fatalf("file %q, want %q", d.data, want)
			}
			if !bytes.HasPrefix(d.data, want) {
				t.Fatalf("file %q lost written lines %q", d.data, want)
			}
		}
		d.room, d.badCuts = -1, 0
		if err := f.Write([]byte("end\n")); err != nil {
			t.Fatal(err)
		}
		if want = append(want, "end\n"...); !bytes.Equal(d.data, want) {
			t.Fatalf("file %q, want %q", d.data, want)
		}
	})
}

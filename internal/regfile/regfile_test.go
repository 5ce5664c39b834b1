package regfile

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// within fails the test when fn does not return within a few seconds: what is tested
// here is that nothing blocks.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantNotRegular checks err says path is kind, not a regular file.
func wantNotRegular(t *testing.T, err error, path, kind string) {
	t.Helper()
	if !errors.Is(err, ErrNotRegular) {
		t.Fatalf("err = %v, want ErrNotRegular", err)
	}
	var nr *NotRegularError
	if !errors.As(err, &nr) || nr.Kind != kind {
		t.Errorf("err = %v, want kind %q", err, kind)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != path {
		t.Errorf("err = %v does not name %s", err, path)
	}
	if want := path + ": is " + kind + ", not a regular file"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("err = %q, want it to end in %q", err, want)
	}
}

func TestSpecialFilesRefused(t *testing.T) {
	fifo := mkfifo(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct{ path, kind string }{
		{fifo, "a FIFO"},
		{link, "a FIFO"},
		{"/dev/null", "a character device"},
		{"/dev/zero", "a character device"},
		{dir, "a directory"},
		{sock, "a socket"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			within(t, "Open", func() {
				f, err := Open(tt.path)
				if f != nil {
					f.Close()
				}
				wantNotRegular(t, err, tt.path, tt.kind)
			})
			within(t, "ReadAll", func() {
				_, err := ReadAll(tt.path, 1<<20)
				wantNotRegular(t, err, tt.path, tt.kind)
			})
			for _, flag := range []int{os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_CREATE | os.O_TRUNC} {
				within(t, "OpenFile for writing", func() {
					f, err := OpenFile(tt.path, flag, 0o600)
					if f != nil {
						f.Close()
					}
					wantNotRegular(t, err, tt.path, tt.kind)
				})
			}
			wantNotRegular(t, Check(tt.path), tt.path, tt.kind)
		})
	}
}

// TestFIFOWithWriterRefused: a FIFO someone writes to is refused as well, and nothing
// of it is consumed.
func TestFIFOWithWriterRefused(t *testing.T) {
	fifo := mkfifo(t)
	// O_RDWR on a FIFO does not wait on Linux: it is both a reader and a writer.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString("10.0.0.1\n"); err != nil {
		t.Fatal(err)
	}
	within(t, "ReadAll", func() {
		_, err := ReadAll(fifo, 1<<20)
		wantNotRegular(t, err, fifo, "a FIFO")
	})
}

func TestReadAllLimit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	data := bytes.Repeat([]byte("x"), 1000)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(path, 1000)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("at the limit: %d bytes, %v", len(got), err)
	}
	_, err = ReadAll(path, 999)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over: err = %v, want ErrTooLarge", err)
	}
	if want := "read " + path + ": larger than 999 bytes"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %q, want it to start %q", err, want)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadAll(empty, 0); err != nil || len(got) != 0 {
		t.Errorf("empty file: %q, %v", got, err)
	}
	if _, err := ReadAll(filepath.Join(dir, "absent"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: err = %v, want fs.ErrNotExist", err)
	}
}

// TestReadAllBigSparseFile: a file of 8 GiB (sparse: no disk used) is refused from its
// size, at once and without reading.
func TestReadAllBigSparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 30); err != nil {
		t.Skipf("cannot make a sparse file here: %v", err)
	}
	f.Close()
	start := time.Now()
	within(t, "ReadAll", func() {
		if _, err := ReadAll(path, 16<<20); !errors.Is(err, ErrTooLarge) {
			t.Errorf("err = %v, want ErrTooLarge", err)
		}
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %v", d)
	}
}

// TestReadAllSizeLies: a regular file whose size says 0 (as files in /proc do) is
// still read no further than the limit.
func TestReadAllSizeLies(t *testing.T) {
	const path = "/proc/self/mountinfo"
	if _, err := os.Stat(path); err != nil {
		t.Skip(err)
	}
	if _, err := ReadAll(path, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("limit 4: err = %v, want ErrTooLarge", err)
	}
	got, err := ReadAll(path, 16<<20)
	if err != nil || len(got) == 0 {
		t.Errorf("limit 16 MiB: %d bytes, %v", len(got), err)
	}
}

func TestOpenFileRegular(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub.log")
	if err := Check(path); err != nil {
		t.Errorf("Check of an absent file: %v", err)
	}
	f, err := OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Error("O_NONBLOCK left set")
	}
	if flags&unix.O_APPEND == 0 {
		t.Error("O_APPEND lost")
	}
	fdFlags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || fdFlags&unix.FD_CLOEXEC == 0 {
		t.Errorf("close-on-exec not set: %#x, %v", fdFlags, err)
	}
	if _, err := f.WriteString("line\n"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640&^umask() {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), fs.FileMode(0o640&^umask()))
	}
	if err := Check(path); err != nil {
		t.Errorf("Check of a regular file: %v", err)
	}
	if got, err := ReadAll(path, 100); err != nil || string(got) != "line\n" {
		t.Errorf("ReadAll: %q, %v", got, err)
	}
}

func umask() fs.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return fs.FileMode(m)
}

package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/portsentry-go/portsentry/internal/regfile"
)

// only checks that dir holds exactly the named files (no temporary file left).
func only(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("dir holds %q, want %q", got, names)
	}
	for i := range got {
		if got[i] != names[i] {
			t.Fatalf("dir holds %q, want %q", got, names)
		}
	}
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("one\n"), Options{Perm: 0o600}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two\n"), Options{Perm: 0o640}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "two\n" || st.Mode().Perm() != 0o640 {
		t.Errorf("got %q mode %v, want \"two\\n\" 0640", b, st.Mode().Perm())
	}
	only(t, dir, "f")
}

// TestKeep: the replaced file's mode and owner survive (the admin's hosts.deny).
func TestKeep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	p := filepath.Join(t.TempDir(), "hosts.deny")
	if err := os.WriteFile(p, []byte("old\n"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new\n"), Options{Perm: 0o600, Keep: true}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o604 || sys.Uid != 1234 || sys.Gid != 5678 {
		t.Errorf("mode %v owner %d:%d, want 0604 1234:5678", st.Mode().Perm(), sys.Uid, sys.Gid)
	}
}

// TestRefusesSpecialFiles: a FIFO at the path is neither written through nor replaced.
func TestRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(p, []byte("x"), Options{Perm: 0o600})
	if !errors.Is(err, regfile.ErrNotRegular) {
		t.Fatalf("err = %v, want ErrNotRegular", err)
	}
	if st, _ := os.Lstat(p); st.Mode()&os.ModeNamedPipe == 0 {
		t.Error("the FIFO was replaced")
	}
	only(t, dir, "fifo")
}

// TestFailedWriteLeavesTheOld: an error while writing keeps the old contents and
// removes the temporary file.
func TestFailedWriteLeavesTheOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, Options{Perm: 0o644}, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old\n" {
		t.Errorf("file holds %q after a failed write", b)
	}
	only(t, dir, "f")
}

// Package atomicfile replaces a file's contents so that a reader, a crash or a power
// cut sees either the old file or the new one, never a mix or half of it.
//
// The new contents go to a temporary file in the same directory (same filesystem, so
// the rename is atomic), created with a random name and O_EXCL (nothing planted at a
// predictable name can be written through), synced, renamed over the path, and then
// the directory is synced so that the rename itself is on disk.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/regfile"
)

// Options say what the new file looks like.
type Options struct {
	// Perm is the new file's permission bits.
	Perm fs.FileMode
	// Keep gives the new file the permission bits, owner and group of the file it
	// replaces, when there is one (hosts.deny, say, is the admin's file). Changing the
	// owner needs root unless it is our own user; a failure is an error, so that a file
	// someone else owns is never silently taken over.
	Keep bool
}

// Write replaces path with what write writes. A path that exists and is not a regular
// file (a FIFO, /dev/null) is refused: the rename would replace the device itself. On
// any error path is left as it was and the temporary file removed.
func Write(path string, o Options, write func(io.Writer) error) (err error) {
	perm, uid, gid, err := attributes(path, o)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if uid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return fmt.Errorf("keep owner %d:%d of %s: %w", uid, gid, path, err)
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// WriteFile replaces path with data (see Write).
func WriteFile(path string, data []byte, o Options) error {
	return Write(path, o, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// attributes are the new file's mode and, with Keep, the owner to give it (-1: none).
func attributes(path string, o Options) (fs.FileMode, int, int, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return o.Perm, -1, -1, nil
	case err != nil:
		return 0, -1, -1, err
	}
	if err := regfile.Check(path); err != nil {
		return 0, -1, -1, err
	}
	if !o.Keep {
		return o.Perm, -1, -1, nil
	}
	uid, gid := -1, -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(sys.Uid), int(sys.Gid)
	}
	return st.Mode().Perm(), uid, gid, nil
}

// SyncDir makes a rename or creation in dir durable. Filesystems that cannot sync a
// directory (some network ones) are not an error: there is nothing more to do there.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}

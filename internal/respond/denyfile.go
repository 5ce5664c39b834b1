package respond

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// denyMu serialises this process's edits of hosts.deny files: an append racing the
// rename of a removal would land in the replaced file and be lost. It is not per
// responder because a reload makes a new responder while the old one's commands run.
var denyMu sync.Mutex

// DenyLine is the KILL_HOSTS_DENY line for t. An IPv6 address is written in brackets,
// the only form tcp_wrappers matches it in (hosts_access(5)); a template that already
// has them around $TARGET$ is not bracketed twice.
func DenyLine(template string, t Target) string {
	if a := probe.Canonical(t.Addr); a.Is6() {
		template = strings.ReplaceAll(template, "[$TARGET$]", "$TARGET$")
		template = strings.ReplaceAll(template, "$TARGET$", "["+a.String()+"]")
	}
	return Expand(template, t)
}

// sameLine compares a file's line with a line we write, ignoring the trailing blanks
// and carriage return an editor may leave.
func sameLine(fileLine []byte, line string) bool {
	return strings.TrimRight(string(fileLine), " \t\r\n") == line
}

// MaxDenyFileSize bounds a hosts.deny file (HOSTS_DENY_FILE): one line per banned host
// is well under a MiB even at the default BAN_CAP.
const MaxDenyFileSize = 16 << 20

// ReadDenyFile reads the hosts.deny file at path whole: a regular file of at most
// MaxDenyFileSize bytes. Anything else (a FIFO, which would block the read; a device;
// a directory) is an error naming the path, as is a missing file (fs.ErrNotExist).
func ReadDenyFile(path string) ([]byte, error) {
	return regfile.ReadAll(path, MaxDenyFileSize)
}

// addDenyLine appends line to the hosts.deny file at path in one synced write, unless
// the file already holds it; added reports whether it appended.
func addDenyLine(path, line string) (added bool, err error) {
	denyMu.Lock()
	defer denyMu.Unlock()
	data, err := ReadDenyFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if sameLine(l, line) {
			return false, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	f, err := regfile.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line // not glued onto the admin's last line
	}
	_, werr := f.WriteString(line + "\n")
	serr := f.Sync()
	cerr := f.Close()
	return werr == nil, errors.Join(werr, serr, cerr)
}

// removeDenyLine takes the last line equal to line out of the hosts.deny file at path,
// leaving every other byte as it was; found is false when no line matches. It is the
// last because ours was appended: an identical line the admin wrote before it stays.
func removeDenyLine(path, line string) (found bool, err error) {
	denyMu.Lock()
	defer denyMu.Unlock()
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real // the rename must replace the file, not the link
	}
	data, err := ReadDenyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if len(lines[i]) > 0 && sameLine(lines[i], line) {
			rest := bytes.Join(append(lines[:i:i], lines[i+1:]...), nil)
			return true, WriteAtomic(path, rest)
		}
	}
	return false, nil
}

// WriteAtomic replaces path with data: a temporary file in the same directory, given
// the original's mode and owner, fsynced and renamed over it, then the directory is
// fsynced. Readers see the old file or the new one, never a partial one. A path that
// is there but is not a regular file is left alone, with an error.
func WriteAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	if st, err := os.Stat(path); err == nil {
		if !st.Mode().IsRegular() {
			// Renaming over /dev/null or a FIFO would replace it with a regular file.
			if err := regfile.Check(path); err != nil {
				return err
			}
			return fmt.Errorf("%s: not a regular file", path)
		}
		mode = st.Mode().Perm()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.CreateTemp(dir, "."+base+".portsentry-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 {
		// Without root this succeeds only for our own user and groups: a file
		// someone else owns is not silently given to us.
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
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

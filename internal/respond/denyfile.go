package respond

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/portsentry-go/portsentry/internal/atomicfile"
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
			return true, writeDeny(path, rest)
		}
	}
	return false, nil
}

// writeDeny replaces a hosts.deny file with data, keeping its mode and owner (it is the
// admin's file; 0644 when it is new).
func writeDeny(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{Perm: 0o644, Keep: true})
}

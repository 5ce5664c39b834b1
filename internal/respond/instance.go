package respond

import "fmt"

// MaxInstance is the longest instance name a backend accepts.
const MaxInstance = 32

// CheckInstance validates the name a backend's entries are tagged with, so that two
// daemons on one host (Debian runs one per protocol) never touch each other's bans.
// The empty name is the default instance, whose entries keep the names they had
// before instances existed. A name goes into set names, comments and file markers,
// so it is kept to letters, digits and "+-_." (a process's modes joined with "+").
func CheckInstance(name string) error {
	if len(name) > MaxInstance {
		return fmt.Errorf("instance name %q longer than %d bytes", name, MaxInstance)
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '+', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("instance name %q: only letters, digits and +-_. allowed", name)
		}
	}
	return nil
}

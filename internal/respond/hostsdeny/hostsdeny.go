// Package hostsdeny blocks hosts for TCP-wrapped services (libwrap, tcpd) through a
// managed block in a hosts.deny file:
//
//	# BEGIN portsentry (managed: do not edit between these lines)
//	ALL: 192.0.2.7
//	# until 2026-11-24T18:00:00Z
//	ALL: 10.0.0.0/255.0.0.0
//	ALL: [2001:db8::7]/128
//	# until 2026-11-24T18:00:00Z
//	ALL: [2001:db8:bad::]/64
//	# END portsentry
//
// One rule per ban, in the patterns hosts_access(5) documents: an IPv4 host as its
// address, an IPv4 network as net/mask (n.n.n.n/m.m.m.m, which every libwrap reads;
// Debian's also reads n.n.n.n/mm), an IPv6 host or network as [net]/prefixlen. A ban
// with a timeout has its expiry (UTC, RFC 3339) on a comment line just above its
// rule, so a restart knows which ones ran out: hosts_access(5) has no trailing
// comments (only lines beginning with '#' are comments), and "# until 18:00:00Z" after
// the client list would be read as more client patterns and, at its first ':', as a
// third (shell command or option) field.
//
// Everything outside the block stays byte for byte as it was. The block is appended
// to the end of the file when it does not exist (after a newline if the file's last
// line has none) and removed when it becomes empty, so a ban and its revocation
// leave the file as they found it. Each change re-reads the file (so edits made
// outside the block meanwhile are kept) and replaces it atomically: a temporary file
// in the same directory, written, given the original's mode and owner, fsynced and
// renamed over the original (through a symlink to its target), then the directory
// is fsynced. Readers see either the old file or the new one, never a partial one.
//
// Timeouts are enforced by the daemon calling Expire; Setup also drops the rules
// whose expiry has passed (the daemon may have been down when they ran out).
//
// Reconcile makes the block hold exactly the journal's bans: a rule deleted by hand
// (or the whole file) comes back, a rule of ours the journal does not hold goes, in
// one rewrite, and only when something differs. Lines inside the block that this
// package did not write are kept, as everywhere.
//
// Options.Instance names the block, so that two daemons (Debian runs one per protocol)
// keep one block each and never remove each other's rules: instance "udp" keeps
//
//	# BEGIN portsentry udp (managed: do not edit between these lines)
//	...
//	# END portsentry udp
//
// and each backend reads the other's block as text outside its own, left byte for byte.
// The default instance (no name) keeps the markers above. A host banned by both is
// denied while either block holds it.
//
// The classic KILL_HOSTS_DENY appends to the file without this package's lock: do
// not point both at the same file.
package hostsdeny

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/atomicfile"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/respond"
)

const (
	BeginMarker = "# BEGIN portsentry (managed: do not edit between these lines)"
	EndMarker   = "# END portsentry"
	untilPrefix = "# until "
	rulePrefix  = "ALL: "
)

// Options configures a Backend.
type Options struct {
	Path string           // the hosts.deny file, e.g. /etc/hosts.deny (required)
	Now  func() time.Time // clock; default time.Now
	// Instance names the block (see the package comment; respond.CheckInstance);
	// empty: the default block.
	Instance string
}

// Entry is one rule in the block.
type Entry struct {
	Prefix netip.Prefix
	Until  time.Time // zero: permanent
}

// Backend keeps the managed block. Its methods are safe for concurrent use.
type Backend struct {
	log        *slog.Logger
	opts       Options
	begin, end string // the block's markers
	mu         sync.Mutex
}

// New returns a backend for the file at opts.Path. It touches nothing.
func New(opts Options, log *slog.Logger) (*Backend, error) {
	if opts.Path == "" {
		return nil, errors.New("hostsdeny: no file given")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := respond.CheckInstance(opts.Instance); err != nil {
		return nil, fmt.Errorf("hostsdeny: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	begin, end := Markers(opts.Instance)
	return &Backend{log: log, opts: opts, begin: begin, end: end}, nil
}

// Markers are the lines that open and close an instance's block.
func Markers(instance string) (begin, end string) {
	if instance == "" {
		return BeginMarker, EndMarker
	}
	return "# BEGIN portsentry " + instance + " (managed: do not edit between these lines)", EndMarker + " " + instance
}

// Name is "hostsdeny".
func (b *Backend) Name() string { return "hostsdeny" }

// Path is the file the backend manages.
func (b *Backend) Path() string { return b.opts.Path }

// Close does nothing: the file is closed after every change and the rules stay.
func (b *Backend) Close() error { return nil }

// Setup checks that the file (or, if it does not exist yet, its directory) is there
// and parses, and removes rules whose expiry has passed.
func (b *Backend) Setup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	path, err := target(b.opts.Path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	now := b.opts.Now()
	var n int
	err = b.change(func(d *doc) bool {
		kept := d.entries[:0]
		for _, e := range d.entries {
			if !e.Until.IsZero() && !e.Until.After(now) {
				n++
				continue
			}
			kept = append(kept, e)
		}
		d.entries = kept
		return n > 0
	})
	if err != nil {
		return err
	}
	b.log.Info("blocking backend: hosts.deny", "file", b.opts.Path, "block", b.begin, "expired_at_start", n)
	return nil
}

// Apply adds a rule for each ban or renews its expiry (a ban without a timeout is
// permanent).
func (b *Backend) Apply(bans []respond.Ban) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now()
	bans, bad := normBans(bans)
	err := b.change(func(d *doc) bool {
		changed := false
		for _, ban := range bans {
			changed = d.put(ban.Prefix, until(now, ban.Timeout)) || changed
		}
		return changed
	})
	return errors.Join(err, joinBad("apply", bad))
}

// Reconcile makes the block hold exactly want (the journal's active bans with their
// remaining time): missing rules are added, rules of ours that want lacks are removed,
// in one rewrite, and the file is not touched when nothing differs. The expiry of a
// rule that is there is left as it is: renewals go through Apply.
func (b *Backend) Reconcile(want []respond.Ban) (respond.Repair, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now()
	want, bad := normBans(want)
	var rep respond.Repair
	err := b.change(func(d *doc) bool {
		held := make([]netip.Prefix, len(d.entries))
		for i, e := range d.entries {
			held[i] = e.Prefix
		}
		missing, extra := respond.Diff(want, held)
		drop := make(map[netip.Prefix]bool, len(extra))
		for _, p := range extra {
			drop[p] = true
		}
		d.entries = slices.DeleteFunc(d.entries, func(e Entry) bool { return drop[e.Prefix] })
		for _, ban := range missing {
			d.put(ban.Prefix, until(now, ban.Timeout))
		}
		rep = respond.Repair{Restored: len(missing), Removed: len(extra)}
		return rep.Changed()
	})
	if err != nil {
		return respond.Repair{}, errors.Join(err, joinBad("reconcile", bad))
	}
	if rep.Changed() {
		b.log.Info("hostsdeny: block repaired", "file", b.opts.Path, "restored", rep.Restored, "removed", rep.Removed)
	}
	return rep, joinBad("reconcile", bad)
}

// normBans canonicalises the bans' prefixes, returning the bad ones as errors.
func normBans(bans []respond.Ban) ([]respond.Ban, []error) {
	out := make([]respond.Ban, 0, len(bans))
	var bad []error
	for _, ban := range bans {
		p, err := netaddr.BanPrefix(ban.Prefix)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, respond.Ban{Prefix: p, Timeout: ban.Timeout})
	}
	return out, bad
}

// until is the expiry a rule carries for a ban of timeout d from now, rounded up to
// the second; zero (permanent) for no timeout.
func until(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	t := now.Add(d).UTC()
	if r := t.Truncate(time.Second); !r.Equal(t) {
		t = r.Add(time.Second)
	}
	return t
}

// put adds a rule for p or sets its expiry, reporting whether the block changed.
func (d *doc) put(p netip.Prefix, until time.Time) bool {
	i := d.find(p)
	if i < 0 {
		d.entries = append(d.entries, Entry{Prefix: p, Until: until})
		return true
	}
	if d.entries[i].Until.Equal(until) {
		return false
	}
	d.entries[i].Until = until
	return true
}

func joinBad(what string, bad []error) error {
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("hostsdeny %s: %w", what, errors.Join(bad...))
}

// Revoke removes the rules for prefixes; absent ones are not an error.
func (b *Backend) Revoke(prefixes []netip.Prefix) error { return b.remove("revoke", prefixes) }

// Expire removes the rules of bans that ran out.
func (b *Backend) Expire(prefixes []netip.Prefix) error { return b.remove("expire", prefixes) }

func (b *Backend) remove(what string, prefixes []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var bad []error
	drop := map[netip.Prefix]bool{}
	for _, pp := range prefixes {
		p, err := netaddr.BanPrefix(pp)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		drop[p] = true
	}
	err := b.change(func(d *doc) bool {
		n := len(d.entries)
		d.entries = slices.DeleteFunc(d.entries, func(e Entry) bool { return drop[e.Prefix] })
		return len(d.entries) != n
	})
	return errors.Join(err, joinBad(what, bad))
}

// List returns the rules in the block, in file order.
func (b *Backend) List() ([]Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	path, err := target(b.opts.Path)
	if err != nil {
		return nil, err
	}
	d, err := load(path, b.begin, b.end)
	if err != nil {
		return nil, err
	}
	return d.entries, nil
}

// target resolves symlinks so the rename replaces the file, not the link.
func target(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("hostsdeny: %w", err)
	}
	return real, nil
}

// change loads the file, lets f edit it, and writes it back if f reports a change.
func (b *Backend) change(f func(*doc) bool) error {
	path, err := target(b.opts.Path)
	if err != nil {
		return err
	}
	d, err := load(path, b.begin, b.end)
	if err != nil {
		return err
	}
	if !f(d) {
		return nil
	}
	if err := atomicfile.WriteFile(path, d.render(), atomicfile.Options{Perm: 0o644, Keep: true}); err != nil {
		return fmt.Errorf("hostsdeny: %w", err)
	}
	return nil
}

// doc is a parsed hosts.deny: the bytes around the block, and the block.
type doc struct {
	beginMarker, endMarker string
	pre, post              []byte // outside the block, verbatim (post starts after the END line)
	hasBlock               bool
	entries                []Entry
	unknown                []string // lines in the block we did not write, kept verbatim
}

func (d *doc) find(p netip.Prefix) int {
	return slices.IndexFunc(d.entries, func(e Entry) bool { return e.Prefix == p })
}

// lines splits b into lines, each with its newline (the last may lack one).
func lines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

func trimLine(l []byte) string { return strings.TrimRight(string(l), " \t\r\n") }

// load reads the file and finds in it the block between the markers given.
func load(path, beginMarker, endMarker string) (*doc, error) {
	d := &doc{beginMarker: beginMarker, endMarker: endMarker}
	data, err := respond.ReadDenyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hostsdeny: %w", err)
	}
	if err := d.parse(path, data); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *doc) parse(path string, data []byte) error {
	ls := lines(data)
	begin := slices.IndexFunc(ls, func(l []byte) bool { return trimLine(l) == d.beginMarker })
	if begin < 0 {
		d.pre = data
		return nil
	}
	end := -1
	for i := begin + 1; i < len(ls); i++ {
		switch trimLine(ls[i]) {
		case d.endMarker:
			end = i
		case d.beginMarker:
			return fmt.Errorf("hostsdeny: %s:%d: second %q before %q", path, i+1, d.beginMarker, d.endMarker)
		}
		if end >= 0 {
			break
		}
	}
	if end < 0 {
		return fmt.Errorf("hostsdeny: %s:%d: %q without %q; fix the file by hand", path, begin+1, d.beginMarker, d.endMarker)
	}
	d.hasBlock = true
	d.pre = bytes.Join(ls[:begin], nil)
	d.post = bytes.Join(ls[end+1:], nil)
	var until time.Time
	var untilLine string
	seen := map[netip.Prefix]bool{} // a second rule for a prefix is not ours
	flushUntil := func() {
		if untilLine != "" {
			d.unknown = append(d.unknown, untilLine)
		}
		until, untilLine = time.Time{}, ""
	}
	for _, raw := range ls[begin+1 : end] {
		l := trimLine(raw)
		switch {
		case strings.TrimSpace(l) == "":
			flushUntil()
		case strings.HasPrefix(l, untilPrefix):
			flushUntil()
			t, err := time.Parse(time.RFC3339, strings.TrimSpace(l[len(untilPrefix):]))
			if err != nil {
				d.unknown = append(d.unknown, l)
				continue
			}
			until, untilLine = t.UTC(), l
		case strings.HasPrefix(l, rulePrefix):
			p, err := parsePattern(strings.TrimSpace(l[len(rulePrefix):]))
			if err != nil || seen[p] {
				flushUntil()
				d.unknown = append(d.unknown, l)
				continue
			}
			d.entries = append(d.entries, Entry{Prefix: p, Until: until})
			seen[p] = true
			until, untilLine = time.Time{}, ""
		default:
			flushUntil()
			d.unknown = append(d.unknown, l)
		}
	}
	flushUntil()
	return nil
}

func (d *doc) render() []byte {
	var buf bytes.Buffer
	buf.Write(d.pre)
	if len(d.entries) == 0 && len(d.unknown) == 0 {
		buf.Write(d.post)
		return buf.Bytes()
	}
	if len(d.pre) > 0 && d.pre[len(d.pre)-1] != '\n' {
		buf.WriteByte('\n')
	}
	buf.WriteString(d.beginMarker + "\n")
	for _, l := range d.unknown {
		buf.WriteString(l + "\n")
	}
	for _, e := range d.entries {
		if !e.Until.IsZero() {
			buf.WriteString(untilPrefix + e.Until.UTC().Format(time.RFC3339) + "\n")
		}
		buf.WriteString(rulePrefix + Pattern(e.Prefix) + "\n")
	}
	buf.WriteString(d.endMarker + "\n")
	buf.Write(d.post)
	return buf.Bytes()
}

// Pattern is the hosts_access(5) client pattern for p: "192.0.2.7",
// "10.0.0.0/255.0.0.0", "[2001:db8::7]/128", "[2001:db8:bad::]/64".
func Pattern(p netip.Prefix) string {
	a := p.Addr()
	if a.Is4() {
		if p.Bits() == 32 {
			return a.String()
		}
		return a.String() + "/" + net.IP(net.CIDRMask(p.Bits(), 32)).String()
	}
	return "[" + a.String() + "]/" + strconv.Itoa(p.Bits())
}

// parsePattern reads what Pattern writes, plus n.n.n.n/mm and [v6] without a length.
func parsePattern(s string) (netip.Prefix, error) {
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
		}
		a, err := netip.ParseAddr(s[1:i])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
		}
		rest := s[i+1:]
		if rest == "" {
			return netip.PrefixFrom(a, 128), nil
		}
		if !strings.HasPrefix(rest, "/") {
			return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
		}
		n, err := strconv.Atoi(rest[1:])
		if err != nil || n < 1 || n > 128 {
			return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
		}
		return netip.PrefixFrom(a, n).Masked(), nil
	}
	addr, mask, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
	}
	if !hasMask {
		return netip.PrefixFrom(a, 32), nil
	}
	if m, err := netip.ParseAddr(mask); err == nil && m.Is4() {
		ones, bits := net.IPMask(m.AsSlice()).Size()
		if bits == 0 || ones == 0 {
			return netip.Prefix{}, fmt.Errorf("bad mask in %q", s)
		}
		return netip.PrefixFrom(a, ones).Masked(), nil
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n < 1 || n > 32 {
		return netip.Prefix{}, fmt.Errorf("bad pattern %q", s)
	}
	return netip.PrefixFrom(a, n).Masked(), nil
}

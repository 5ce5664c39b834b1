package hostsdeny

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/portsentry-go/portsentry/internal/respond"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	head = "# /etc/hosts.deny: list of hosts that are _not_ allowed to access the system.\n#\n\nsshd: 203.0.113.99\n"
	tail = "# after our block\nALL: .example.org   \r\n"
)

var t0 = time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC)

type clock struct{ now atomic.Pointer[time.Time] }

func (c *clock) Now() time.Time  { return *c.now.Load() }
func (c *clock) set(t time.Time) { c.now.Store(&t) }

func newBackend(t *testing.T, content string) (*Backend, string, *clock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts.deny")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{}
	c.set(t0)
	b, err := New(Options{Path: path, Now: c.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	return b, path, c
}

func read(t tb, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ban(p string, d time.Duration) respond.Ban {
	return respond.Ban{Prefix: netip.MustParsePrefix(p), Timeout: d}
}

func pfx(ps ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestBlockFormat(t *testing.T) {
	b, path, _ := newBackend(t, head)
	if b.Name() != "hostsdeny" {
		t.Errorf("Name() = %q", b.Name())
	}
	if got := read(t, path); got != head {
		t.Fatalf("Setup changed the file:\n%q", got)
	}
	err := b.Apply([]respond.Ban{
		ban("192.0.2.7/32", 0),
		ban("10.1.2.3/8", time.Hour),
		ban("2001:db8::7/128", 0),
		ban("2001:db8:bad::1/64", 90*time.Minute+300*time.Millisecond), // rounded up to the second
		ban("::ffff:198.51.100.1/128", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := head + BeginMarker + "\n" +
		"ALL: 192.0.2.7\n" +
		"# until 2026-11-24T18:00:00Z\n" +
		"ALL: 10.0.0.0/255.0.0.0\n" +
		"ALL: [2001:db8::7]/128\n" +
		"# until 2026-11-24T18:30:01Z\n" +
		"ALL: [2001:db8:bad::]/64\n" +
		"ALL: 198.51.100.1\n" +
		EndMarker + "\n"
	if diff := cmp.Diff(want, read(t, path)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
	list, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	wantList := []Entry{
		{Prefix: netip.MustParsePrefix("192.0.2.7/32")},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Until: t0.Add(time.Hour)},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128")},
		{Prefix: netip.MustParsePrefix("2001:db8:bad::/64"), Until: t0.Add(90*time.Minute + time.Second)},
		{Prefix: netip.MustParsePrefix("198.51.100.1/32")},
	}
	if diff := cmp.Diff(wantList, list, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
}

func TestSurroundingPreserved(t *testing.T) {
	// Our block in the middle of the file, no trailing newline at the very end.
	orig := head + BeginMarker + "\n# until 2026-11-24T18:00:00Z\nALL: 192.0.2.1\n" + EndMarker + "\n" + tail + "ALL: 192.0.2.200"
	b, path, _ := newBackend(t, orig)
	if err := b.Apply([]respond.Ban{ban("192.0.2.2/32", 0)}); err != nil {
		t.Fatal(err)
	}
	got := read(t, path)
	if !strings.HasPrefix(got, head+BeginMarker+"\n") || !strings.HasSuffix(got, EndMarker+"\n"+tail+"ALL: 192.0.2.200") {
		t.Errorf("content outside the block changed:\n%q", got)
	}
	if err := b.Revoke(pfx("192.0.2.1/32", "192.0.2.2/32")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(head+tail+"ALL: 192.0.2.200", read(t, path)); diff != "" {
		t.Errorf("empty block not removed cleanly (-want +got):\n%s", diff)
	}

	// A file whose last line has no newline gets one before a new block, and nothing else.
	b, path, _ = newBackend(t, "sshd: 1.2.3.4")
	if err := b.Apply([]respond.Ban{ban("192.0.2.2/32", 0)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("sshd: 1.2.3.4\n"+BeginMarker+"\nALL: 192.0.2.2\n"+EndMarker+"\n", read(t, path)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// A missing file is created (0644) on the first ban.
	b, path, _ = newBackend(t, "")
	if _, err := os.Stat(path); err == nil {
		t.Error("Setup created the file")
	}
	if err := b.Apply([]respond.Ban{ban("2001:db8::1/128", 0)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(BeginMarker+"\nALL: [2001:db8::1]/128\n"+EndMarker+"\n", read(t, path)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v", st.Mode().Perm())
	}
}

func TestIdempotentAndRenew(t *testing.T) {
	b, path, c := newBackend(t, head)
	bans := []respond.Ban{ban("192.0.2.7/32", time.Hour), ban("2001:db8::/64", 0)}
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(path)
	first := read(t, path)
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if read(t, path) != first || !os.SameFile(st1, st2) {
		t.Error("re-applying the same bans rewrote the file")
	}
	c.set(t0.Add(30 * time.Minute))
	if err := b.Apply(bans[:1]); err != nil {
		t.Fatal(err)
	}
	got := read(t, path)
	if !strings.Contains(got, "# until 2026-11-24T18:30:00Z\nALL: 192.0.2.7\n") || strings.Count(got, "192.0.2.7") != 1 {
		t.Errorf("renewal:\n%s", got)
	}
	// A permanent re-ban drops the expiry.
	if err := b.Apply([]respond.Ban{ban("192.0.2.7/32", 0)}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); strings.Contains(got, "# until") {
		t.Errorf("permanent re-ban kept an expiry:\n%s", got)
	}
}

func TestExpire(t *testing.T) {
	b, path, c := newBackend(t, head)
	err := b.Apply([]respond.Ban{ban("192.0.2.1/32", time.Minute), ban("192.0.2.2/32", time.Hour), ban("192.0.2.3/32", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Expire(pfx("192.0.2.1/32", "198.51.100.1/32")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); strings.Contains(got, "192.0.2.1\n") || !strings.Contains(got, "192.0.2.2\n") {
		t.Errorf("after Expire:\n%s", got)
	}
	if err := b.Apply([]respond.Ban{ban("192.0.2.1/32", time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// A restart two hours later: Setup drops what ran out, keeps the permanent one.
	c.set(t0.Add(2 * time.Hour))
	b2, err := New(Options{Path: path, Now: c.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Setup(); err != nil {
		t.Fatal(err)
	}
	want := head + BeginMarker + "\nALL: 192.0.2.3\n" + EndMarker + "\n"
	if diff := cmp.Diff(want, read(t, path)); diff != "" {
		t.Errorf("after Setup (-want +got):\n%s", diff)
	}
}

func TestForeignLinesInBlock(t *testing.T) {
	orig := head + BeginMarker + "\nALL: 192.0.2.1\nsshd: 10.0.0.1 # someone's edit\n# until garbage\nALL: 192.0.2.1\n" + EndMarker + "\n"
	b, path, _ := newBackend(t, orig)
	if err := b.Revoke(pfx("192.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	// Lines we did not write (and a duplicate) are kept.
	want := head + BeginMarker + "\nsshd: 10.0.0.1 # someone's edit\n# until garbage\nALL: 192.0.2.1\n" + EndMarker + "\n"
	if diff := cmp.Diff(want, read(t, path)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestBrokenMarkers(t *testing.T) {
	for _, content := range []string{
		head + BeginMarker + "\nALL: 192.0.2.1\n",
		head + BeginMarker + "\n" + BeginMarker + "\n" + EndMarker + "\n",
	} {
		path := filepath.Join(t.TempDir(), "hosts.deny")
		os.WriteFile(path, []byte(content), 0o644)
		b, _ := New(Options{Path: path}, nil)
		if err := b.Setup(); err == nil {
			t.Errorf("Setup accepted %q", content)
		}
		if err := b.Apply([]respond.Ban{ban("192.0.2.9/32", 0)}); err == nil {
			t.Errorf("Apply accepted %q", content)
		}
		if got := read(t, path); got != content {
			t.Errorf("a broken file was changed: %q", got)
		}
	}
}

func TestPatterns(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7/32":       "192.0.2.7",
		"10.0.0.0/8":         "10.0.0.0/255.0.0.0",
		"198.51.100.0/23":    "198.51.100.0/255.255.254.0",
		"2001:db8::7/128":    "[2001:db8::7]/128",
		"2001:db8:bad::/64":  "[2001:db8:bad::]/64",
		"2001:db8:0:1::/128": "[2001:db8:0:1::]/128",
	} {
		p := netip.MustParsePrefix(in)
		if got := Pattern(p); got != want {
			t.Errorf("Pattern(%v) = %q, want %q", p, got, want)
		}
		back, err := parsePattern(want)
		if err != nil || back != p {
			t.Errorf("parsePattern(%q) = %v, %v; want %v", want, back, err, p)
		}
	}
	for in, want := range map[string]string{"10.0.0.0/8": "10.0.0.0/8", "[2001:db8::1]": "2001:db8::1/128"} {
		if got, err := parsePattern(in); err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("parsePattern(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "foo", "10.0.0.0/0", "[1.2.3.4]/32", "[2001:db8::]/129", "10.0.0.0/255.0.255.0", ".example.org"} {
		if p, err := parsePattern(bad); err == nil {
			t.Errorf("parsePattern(%q) = %v, want an error", bad, p)
		}
	}
	b, _, _ := newBackend(t, "")
	if err := b.Apply([]respond.Ban{{Prefix: netip.MustParsePrefix("::/0")}}); err == nil {
		t.Error("Apply(::/0) accepted")
	}
}

// TestAtomic rewrites the file many times while readers read it: every read must be
// a whole file (the surrounding text intact, the block complete), each rewrite must
// be a rename (a new inode), and no temporary file may be left behind.
func TestAtomic(t *testing.T) {
	b, path, _ := newBackend(t, head+tail)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, bad atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				data, err := os.ReadFile(path)
				if err != nil {
					bad.Add(1)
					continue
				}
				reads.Add(1)
				ok := bytes.HasPrefix(data, []byte(head+tail))
				if i := bytes.Index(data, []byte(BeginMarker)); i >= 0 {
					ok = ok && bytes.HasSuffix(data, []byte(EndMarker+"\n"))
				} else {
					ok = ok && len(data) == len(head+tail)
				}
				if !ok {
					bad.Add(1)
				}
			}
		}()
	}
	var inodes []uint64
	for i := range 200 {
		var err error
		if i%2 == 0 {
			err = b.Apply([]respond.Ban{ban("192.0.2.1/32", time.Hour), ban("2001:db8::/64", time.Duration(i+1)*time.Second)})
		} else {
			err = b.Revoke(pfx("192.0.2.1/32", "2001:db8::/64"))
		}
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		inodes = append(inodes, st.Sys().(*syscall.Stat_t).Ino)
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of %d reads saw a partial or missing file", bad.Load(), reads.Load()+bad.Load())
	}
	for i := 1; i < len(inodes); i++ {
		if inodes[i] == inodes[i-1] {
			t.Fatalf("rewrite %d kept inode %d: not a rename", i, inodes[i])
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only hosts.deny", names)
	}
	if got := read(t, path); got != head+tail {
		t.Errorf("final content %q", got)
	}
}

// TestSymlink: the link stays a link, its target is rewritten.
func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.deny")
	os.WriteFile(real, []byte(head), 0o600)
	link := filepath.Join(dir, "hosts.deny")
	if err := os.Symlink("real.deny", link); err != nil {
		t.Fatal(err)
	}
	b, _ := New(Options{Path: link}, nil)
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply([]respond.Ban{ban("192.0.2.5/32", 0)}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link replaced: %v %v", fi, err)
	}
	if got := read(t, real); !strings.Contains(got, "ALL: 192.0.2.5\n") {
		t.Errorf("target not updated: %q", got)
	}
	if st, _ := os.Stat(real); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

// TestOwnerKept: as root, the rewritten file keeps a non-root owner.
func TestOwnerKept(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	b, path, _ := newBackend(t, head)
	if err := os.Chown(path, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply([]respond.Ban{ban("192.0.2.5/32", 0)}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 4242 || s.Gid != 4343 {
		t.Errorf("owner %d:%d, want 4242:4343", s.Uid, s.Gid)
	}
}

// TestSpecialFileRefused: a hosts.deny that is a FIFO or a device is refused at Setup
// and at every ban, at once, and never renamed over.
func TestSpecialFileRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "hosts.deny")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	paths := []string{fifo}
	// A null device of our own, not /dev/null: a bug here would rename over it.
	null := filepath.Join(dir, "null")
	if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err == nil {
		paths = append(paths, null)
	} else {
		t.Logf("no device node (%v): FIFO only", err)
	}
	for _, path := range paths {
		b, err := New(Options{Path: path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := b.Setup(); err == nil || !strings.Contains(err.Error(), path+": is a ") {
				t.Errorf("Setup(%s): err = %v", path, err)
			}
			if err := b.Apply([]respond.Ban{ban("192.0.2.5/32", 0)}); err == nil {
				t.Errorf("Apply(%s): no error", path)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: blocked", path)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().IsRegular() {
			t.Errorf("%s replaced: %v %v", path, st, err)
		}
	}
}

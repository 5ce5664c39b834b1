package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/testlog"
)

// fakeService keeps bans in a map; "198.51.100.66" panics when blocked and
// "0.0.0.0/0" is refused.
type fakeService struct {
	mu   sync.Mutex
	bans map[netip.Prefix]Ban
	now  time.Time
}

func newFake() *fakeService {
	return &fakeService{bans: map[netip.Prefix]Ban{}, now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeService) List() []Ban {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Ban
	for _, b := range f.bans {
		out = append(out, b)
	}
	sortBans(out)
	return out
}

func (f *fakeService) Block(p netip.Prefix, d time.Duration) (Ban, error) {
	if p == netip.MustParsePrefix("198.51.100.66/32") {
		panic("boom")
	}
	if p.Bits() == 0 {
		return Ban{}, errors.New("refusing to ban everything")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := Ban{Prefix: p, Start: f.now, By: "operator", Offences: 1}
	switch {
	case d == 0:
		b.Until = f.now.Add(time.Hour)
	case d > 0:
		b.Until = f.now.Add(d)
	}
	f.bans[p] = b
	return b, nil
}

func (f *fakeService) UnblockOrigin(origin string) ([]Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Ban
	for q, b := range f.bans {
		if b.Origin != "" && (origin == AnyOrigin || b.Origin == origin) {
			out = append(out, b)
			delete(f.bans, q)
		}
	}
	sortBans(out)
	return out, nil
}

func (f *fakeService) Unblock(p netip.Prefix) ([]Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Ban
	for q, b := range f.bans {
		if q.Bits() >= p.Bits() && p.Contains(q.Addr()) {
			out = append(out, b)
			delete(f.bans, q)
		}
	}
	sortBans(out)
	return out, nil
}

func (f *fakeService) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{
		Version: "test", Modes: []string{"stcp", "sudp"}, Backend: "nft", ActiveBans: len(f.bans),
		Counters: map[string]uint64{"probes": 12, "bans": 3}, Started: f.now.Add(-time.Hour),
	}
}

// cmpPrefix compares netip values, which go-cmp cannot look into.
var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func sortBans(b []Ban) {
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && b[j].Prefix.Addr().Less(b[j-1].Prefix.Addr()); j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
}

func sockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "run", "ps.sock")
}

func start(t *testing.T, svc Service) (*Server, string) {
	t.Helper()
	path := sockPath(t)
	s, err := Listen(path, svc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	f := newFake()
	_, path := start(t, f)
	c := dial(t, path)

	bans, err := c.List()
	if err != nil || bans == nil || len(bans) != 0 {
		t.Fatalf("empty list: %v %#v", err, bans)
	}
	b, err := c.Block("203.0.113.7", 0)
	want := Ban{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Start: f.now, Until: f.now.Add(time.Hour), By: "operator", Offences: 1}
	if err != nil || !cmp.Equal(b, want, cmpPrefix) {
		t.Fatalf("block default: %v %s", err, cmp.Diff(want, b, cmpPrefix))
	}
	if b, err = c.Block("203.0.113.9/24", 7*24*time.Hour); err != nil || b.Prefix.String() != "203.0.113.0/24" || !b.Until.Equal(f.now.Add(7*24*time.Hour)) {
		t.Fatalf("block CIDR: %v %+v", err, b)
	}
	if b, err = c.Block("2001:db8::1", Permanent); err != nil || b.Prefix.String() != "2001:db8::1/128" || !b.Permanent() {
		t.Fatalf("block permanent: %v %+v", err, b)
	}
	if bans, err = c.List(); err != nil || len(bans) != 3 {
		t.Fatalf("list: %v %+v", err, bans)
	}
	if diff := cmp.Diff(f.List(), bans, cmpPrefix); diff != "" {
		t.Errorf("list differs (-service +client):\n%s", diff)
	}
	st, err := c.Status()
	if err != nil || !cmp.Equal(st, f.Status()) {
		t.Fatalf("status: %v %s", err, cmp.Diff(f.Status(), st))
	}
	lifted, err := c.Unblock("203.0.113.0/24")
	if err != nil || len(lifted) != 2 {
		t.Fatalf("unblock CIDR: %v %+v", err, lifted)
	}
	if lifted, err = c.Unblock("203.0.113.7"); err != nil || lifted == nil || len(lifted) != 0 {
		t.Fatalf("unblock nothing: %v %#v", err, lifted)
	}
	if _, err = c.Block("0.0.0.0/0", 0); err == nil || err.Error() != "refusing to ban everything" {
		t.Errorf("service error: %v", err)
	}
	if _, err = c.Block("not-an-address", 0); err == nil || !strings.Contains(err.Error(), "not an address") {
		t.Errorf("bad prefix: %v", err)
	}
	// A panic in the service is an error, and the connection survives it.
	if _, err = c.Block("198.51.100.66", 0); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panic: %v", err)
	}
	if bans, err = c.List(); err != nil || len(bans) != 1 {
		t.Errorf("after panic: %v %+v", err, bans)
	}
}

// exchange sends raw lines on one connection and returns the response lines.
func exchange(t *testing.T, path string, lines ...string) []string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var out []string
	for _, l := range lines {
		// A refused peer may find the connection closed before it writes; the
		// refusal is still there to read.
		_, werr := io.WriteString(c, l+"\n")
		resp, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: write: %v, read: %v", l, werr, err)
		}
		out = append(out, strings.TrimSuffix(resp, "\n"))
	}
	return out
}

func TestWireFormat(t *testing.T) {
	f := newFake()
	_, path := start(t, f)
	got := exchange(t, path,
		`{"cmd":"list"}`,
		`{"cmd":"block","prefix":"203.0.113.7","duration":"90m"}`,
		`{"cmd":"block","prefix":"::ffff:192.0.2.1"}`,
		`{"cmd":"block","prefix":"192.0.2.0/24","duration":"permanent"}`,
		`{"cmd":"list"}`,
		`{"cmd":"unblock","prefix":"192.0.2.0/24"}`,
		`{"cmd":"status"}`,
	)
	want := []string{
		`{"ok":true,"bans":[]}`,
		`{"ok":true,"ban":{"prefix":"203.0.113.7/32","start":"2025-03-01T12:00:00Z","until":"2025-03-01T13:30:00Z","by":"operator","offences":1}}`,
		`{"ok":true,"ban":{"prefix":"192.0.2.1/32","start":"2025-03-01T12:00:00Z","until":"2025-03-01T13:00:00Z","by":"operator","offences":1}}`,
		`{"ok":true,"ban":{"prefix":"192.0.2.0/24","start":"2025-03-01T12:00:00Z","by":"operator","offences":1}}`,
		`{"ok":true,"bans":[{"prefix":"192.0.2.0/24","start":"2025-03-01T12:00:00Z","by":"operator","offences":1},{"prefix":"192.0.2.1/32","start":"2025-03-01T12:00:00Z","until":"2025-03-01T13:00:00Z","by":"operator","offences":1},{"prefix":"203.0.113.7/32","start":"2025-03-01T12:00:00Z","until":"2025-03-01T13:30:00Z","by":"operator","offences":1}]}`,
		`{"ok":true,"bans":[{"prefix":"192.0.2.0/24","start":"2025-03-01T12:00:00Z","by":"operator","offences":1},{"prefix":"192.0.2.1/32","start":"2025-03-01T12:00:00Z","until":"2025-03-01T13:00:00Z","by":"operator","offences":1}]}`,
		`{"ok":true,"status":{"version":"test","modes":["stcp","sudp"],"backend":"nft","active_bans":1,"counters":{"bans":3,"probes":12},"started":"2025-03-01T11:00:00Z"}}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("responses (-want +got):\n%s", diff)
	}
}

func TestBadRequests(t *testing.T) {
	_, path := start(t, newFake())
	got := exchange(t, path,
		`this is not json`,
		`{}`,
		`{"cmd":"reboot"}`,
		`{"cmd":"block"}`,
		`{"cmd":"block","prefix":"300.1.2.3"}`,
		`{"cmd":"block","prefix":"fe80::1%eth0"}`,
		`{"cmd":"block","prefix":"192.0.2.1","duration":"soon"}`,
		`{"cmd":"block","prefix":"192.0.2.1","duration":"-5m"}`,
		`{"cmd":"unblock","prefix":""}`,
		`{"cmd":"list"}`, // the connection is still usable
	)
	want := []string{
		`bad request: invalid character`,
		`bad request: missing \"cmd\"`,
		`unknown command \"reboot\"`,
		`missing address or CIDR`,
		`\"300.1.2.3\" is not an address or CIDR`,
		`addresses with a zone cannot be banned`,
		`bad duration \"soon\"`,
		`bad duration \"-5m\"`,
		`missing address or CIDR`,
		`{"ok":true,"bans":[]}`,
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) || (i < len(want)-1 && !strings.HasPrefix(got[i], `{"ok":false,"error":`)) {
			t.Errorf("response %d = %s, want an error containing %s", i, got[i], want[i])
		}
	}
}

func TestOversizeRequest(t *testing.T) {
	_, path := start(t, newFake())
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Exactly the limit is fine.
	ok := `{"cmd":"list"}` + strings.Repeat(" ", MaxRequest-len(`{"cmd":"list"}`)-1) + "\n"
	if _, err := io.WriteString(c, ok); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != `{"ok":true,"bans":[]}`+"\n" {
		t.Fatalf("request at the limit: %v %q", err, line)
	}
	// One byte more is not; the server answers and hangs up without reading the rest.
	go func() { io.WriteString(c, ok[:len(ok)-1]+" \n") }()
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, `"error":"request too large (limit 65536 bytes)"`) {
		t.Fatalf("oversize: %v %q", err, line)
	}
	// EOF, or ECONNRESET since the server left part of the request unread.
	if _, err := r.ReadString('\n'); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection not closed after oversize request: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	path := sockPath(t)
	s, err := listen(path, newFake(), nil, 50*time.Millisecond, func(uint32) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: read %d, %v; want EOF", n, err)
	}
}

func TestPeerCredentialsRefused(t *testing.T) {
	var logs testlog.Buffer
	path := sockPath(t)
	var seen []uint32
	var mu sync.Mutex
	s, err := listen(path, newFake(), slog.New(slog.NewTextHandler(&logs, nil)), IdleTimeout, func(uid uint32) bool {
		mu.Lock()
		seen = append(seen, uid)
		mu.Unlock()
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dial(t, path)
	if _, err := c.List(); err != ErrPermission {
		t.Errorf("refused peer: %v, want %v", err, ErrPermission)
	}
	if got := exchange(t, path, `{"cmd":"list"}`); got[0] != `{"ok":false,"error":"permission denied"}` {
		t.Errorf("raw refusal: %s", got[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != uint32(os.Getuid()) {
		t.Errorf("peer uids %v, want ours (%d)", seen, os.Getuid())
	}
	if !strings.Contains(logs.String(), "refused a connection from uid") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
}

// TestOtherUserRefused runs a client as nobody (65534): with the socket's own mode the
// kernel refuses it; with the mode loosened to 0666 the SO_PEERCRED check does.
func TestOtherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	base := t.TempDir()
	// Let nobody reach the helper binary and the socket.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "helper.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	path := filepath.Join(base, "run", "ps.sock")
	s, err := Listen(path, newFake(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil { // Listen made it 0750
		t.Fatal(err)
	}
	runAsNobody := func() string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Skipf("cannot run a helper as uid 65534: %v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := runAsNobody(); got != "dial: EACCES" {
		t.Errorf("socket mode 0600: helper says %q, want the kernel's refusal", got)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := runAsNobody(); got != "server: permission denied" {
		t.Errorf("socket mode 0666: helper says %q, want the daemon's refusal", got)
	}
	if !strings.Contains(logs.String(), "refused a connection from uid 65534") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
	// Root still gets in.
	if _, err := dial(t, path).List(); err != nil {
		t.Errorf("root: %v", err)
	}
}

func TestSocketFile(t *testing.T) {
	s, path := start(t, newFake())
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if os.Geteuid() == 0 {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("owner %d:%d, want root", st.Uid, st.Gid)
		}
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("directory mode %v, want at most 0750", perm)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := sockPath(t)
	os.MkdirAll(filepath.Dir(path), 0o750)
	// A socket file left behind by a daemon that died: nothing listens on it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal("stale socket not left behind:", err)
	}
	s, err := Listen(path, newFake(), nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer s.Close()
	if _, err := dial(t, path).List(); err != nil {
		t.Error(err)
	}
}

func TestLiveSocketRefused(t *testing.T) {
	s, path := start(t, newFake())
	if s2, err := Listen(path, newFake(), nil); err == nil || !strings.Contains(err.Error(), "another portsentry is running") {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Listen: %v", err)
	}
	// The first one is untouched.
	if _, err := dial(t, path).List(); err != nil {
		t.Errorf("first server after refused second: %v", err)
	}
	s.Close()
}

func TestNotASocketKept(t *testing.T) {
	path := sockPath(t)
	os.MkdirAll(filepath.Dir(path), 0o750)
	os.WriteFile(path, []byte("precious"), 0o600)
	if s, err := Listen(path, newFake(), nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file was touched")
	}
}

func TestCloseRemovesFileAndConnections(t *testing.T) {
	path := sockPath(t)
	s, err := Listen(path, newFake(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An idle connection must not hold Close up for IdleTimeout.
	c := dial(t, path)
	if _, err := c.List(); err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("unix", path) // connected but never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.List(); err == nil {
		t.Error("client call after Close succeeded")
	}
	if _, err := Dial(path); err == nil {
		t.Error("Dial after Close succeeded")
	}
}

func TestConcurrentClients(t *testing.T) {
	f := newFake()
	_, path := start(t, f)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			c, err := Dial(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			p := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()
			for range 20 {
				if _, err := c.Block(p, time.Minute); err != nil {
					t.Error(err)
				}
				if _, err := c.List(); err != nil {
					t.Error(err)
				}
				if _, err := c.Unblock(p); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := len(f.List()); n != 0 {
		t.Errorf("%d bans left", n)
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		" 192.0.2.7 ":          "192.0.2.7/32",
		"192.0.2.7/24":         "192.0.2.0/24",
		"2001:db8::1":          "2001:db8::1/128",
		"2001:db8::1/32":       "2001:db8::/32",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
		"::ffff:192.0.2.7/120": "192.0.2.0/24",
		"0.0.0.0/0":            "0.0.0.0/0",
	} {
		got, err := ParsePrefix(in)
		if err != nil || got.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "host.example", "192.0.2.1/33", "fe80::1%eth0", "192.0.2.1/", "1.2.3"} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", in, p)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":          0,
		"0":         0,
		"permanent": Permanent,
		"Permanent": Permanent,
		"90m":       90 * time.Minute,
		"1h30m":     90 * time.Minute,
		"7d":        7 * 24 * time.Hour,
		"1d12h":     36 * time.Hour,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"soon", "-5m", "0s", "0d", "d", "-1d", "1.5d", "99999999d", "106751d23h59m"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
	// The wire form of every duration parses back to it.
	for _, d := range []time.Duration{0, Permanent, time.Second, 90 * time.Minute, 400 * 24 * time.Hour} {
		if got, err := ParseDuration(formatDuration(d)); err != nil || got != d {
			t.Errorf("round trip of %v: %v, %v", d, got, err)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := []Ban{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Mode: "stcp", Port: 143, Scan: "TCP SYN/Normal scan", By: "detect", Offences: 3},
		{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Until: time.Date(2025, 1, 3, 3, 4, 5, 0, time.UTC), By: "operator"},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []Ban
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out, cmpPrefix); diff != "" {
		t.Errorf("(-in +out):\n%s", diff)
	}
	if strings.Contains(string(b[:bytes.IndexByte(b, '}')]), "until") {
		t.Errorf("permanent ban has an until: %s", b)
	}
}

// TestUnblockOrigin: an unblock by origin lifts that fleet host's bans only, "*" every
// remote one; a bad name and a prefix with an origin are refused.
func TestUnblockOrigin(t *testing.T) {
	svc := newFake()
	now := svc.now
	for p, origin := range map[string]string{"198.51.100.1/32": "web2", "198.51.100.2/32": "web3", "198.51.100.3/32": ""} {
		pp := netip.MustParsePrefix(p)
		svc.bans[pp] = Ban{Prefix: pp, Start: now, Origin: origin, Offences: 1}
	}
	srv, path := start(t, svc)
	c := dial(t, path)
	lifted, err := c.UnblockOrigin("web2")
	if err != nil || len(lifted) != 1 || lifted[0].Origin != "web2" {
		t.Fatalf("unblock -origin web2: %v %v", lifted, err)
	}
	if _, err := c.UnblockOrigin("web 2"); err == nil {
		t.Error("a bad origin was accepted")
	}
	if resp := srv.handle([]byte(`{"cmd":"unblock","prefix":"198.51.100.3","origin":"web3"}`)); resp.OK {
		t.Error("a prefix and an origin together were accepted")
	}
	if lifted, err = c.UnblockOrigin("*"); err != nil || len(lifted) != 1 || lifted[0].Origin != "web3" {
		t.Fatalf("unblock -origin '*': %v %v", lifted, err)
	}
	if len(svc.bans) != 1 {
		t.Errorf("the local ban went too: %v", svc.bans)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
)

// controlT0 is "now" in these tests.
var controlT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeDaemon is a control.Service holding bans in a slice.
type fakeDaemon struct {
	mu   sync.Mutex
	bans []control.Ban
	// notEnforced is set on the bans Block makes (the route backend met a route not
	// its own).
	notEnforced string
}

func (f *fakeDaemon) List() []control.Ban {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]control.Ban(nil), f.bans...)
}

func (f *fakeDaemon) Block(p netip.Prefix, d time.Duration) (control.Ban, error) {
	if p.Bits() == 0 {
		return control.Ban{}, errors.New("refusing to ban everything")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := control.Ban{Prefix: p, Start: controlT0, By: "operator", Offences: 1, NotEnforced: f.notEnforced}
	switch {
	case d == 0:
		b.Until = controlT0.Add(time.Hour)
	case d > 0:
		b.Until = controlT0.Add(d)
	}
	f.bans = append(f.bans, b)
	return b, nil
}

func (f *fakeDaemon) UnblockOrigin(origin string) ([]control.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out, keep []control.Ban
	for _, b := range f.bans {
		if b.Origin != "" && (origin == control.AnyOrigin || b.Origin == origin) {
			out = append(out, b)
		} else {
			keep = append(keep, b)
		}
	}
	f.bans = keep
	return out, nil
}

func (f *fakeDaemon) Unblock(p netip.Prefix) ([]control.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lifted, kept []control.Ban
	for _, b := range f.bans {
		if b.Prefix.Bits() >= p.Bits() && p.Contains(b.Prefix.Addr()) {
			lifted = append(lifted, b)
		} else {
			kept = append(kept, b)
		}
	}
	f.bans = kept
	return lifted, nil
}

func (f *fakeDaemon) Status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, b := range f.bans {
		if b.NotEnforced != "" {
			n++
		}
	}
	return control.Status{
		Version: "1.0-test", Modes: []string{"stcp", "sudp"}, Backend: "nftables", ActiveBans: len(f.bans), NotEnforced: n,
		Counters: map[string]uint64{"probes": 1234, "bans": 7, "dropped": 0}, Started: controlT0.Add(-(26*time.Hour + 3*time.Minute)),
	}
}

// startDaemon serves f on a socket in a temporary directory, with the clock at
// controlT0 and times printed in UTC; it checks for leaked goroutines at the end.
func startDaemon(t *testing.T, f *fakeDaemon) string {
	t.Helper()
	oldNow, oldLocal := controlNow, time.Local
	controlNow, time.Local = func() time.Time { return controlT0 }, time.UTC
	path := filepath.Join(t.TempDir(), "ps.sock")
	s, err := control.Listen(path, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		controlNow, time.Local = oldNow, oldLocal
		goleak.VerifyNone(t)
	})
	return path
}

func runControl(name string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := controlCmd(name, args, &out, &errb)
	return code, out.String(), errb.String()
}

func sampleBans() []control.Ban {
	return []control.Ban{
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Start: controlT0.Add(-48 * time.Second), Until: controlT0.Add(59*time.Minute + 12*time.Second),
			Mode: "stcp", Port: 143, Scan: "TCP SYN/Normal scan", By: "detect", Offences: 2},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Start: controlT0.Add(-2 * time.Hour), By: "operator", Offences: 1},
		{Prefix: netip.MustParsePrefix("2001:db8::5/128"), Start: controlT0.Add(-time.Minute), Until: controlT0.Add(3*24*time.Hour + 4*time.Hour),
			Mode: "sudp", Port: 53, By: "detect", Offences: 5},
	}
}

func TestControlList(t *testing.T) {
	f := &fakeDaemon{}
	path := startDaemon(t, f)
	if code, out, errs := runControl("list", "-socket", path); code != exitOK || out != "no active bans\n" || errs != "" {
		t.Errorf("empty list: exit %d %q %q", code, out, errs)
	}
	if code, out, _ := runControl("list", "-socket", path, "-json"); code != exitOK || out != "[]\n" {
		t.Errorf("empty list -json: exit %d %q", code, out)
	}
	f.bans = sampleBans()
	code, out, errs := runControl("list", "-socket", path)
	want := `ADDRESS          REMAINING  REASON                        SINCE                OFFENCES
198.51.100.0/24  permanent  operator                      2025-03-01 10:00:00  1
2001:db8::5      3d4h       sudp 53                       2025-03-01 11:59:00  5
203.0.113.7      59m12s     stcp 143 TCP SYN/Normal scan  2025-03-01 11:59:12  2
`
	if code != exitOK || errs != "" {
		t.Fatalf("list: exit %d, stderr %q", code, errs)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	code, out, _ = runControl("list", "-json", "-socket", path)
	var got []control.Ban
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil {
		t.Fatalf("list -json: exit %d, %v:\n%s", code, err, out)
	}
	if !strings.HasPrefix(out, "[\n  {\n    \"prefix\": \"198.51.100.0/24\",") {
		t.Errorf("list -json not indented or not sorted:\n%s", out)
	}
	if len(got) != 3 || got[2].Prefix != f.bans[0].Prefix || !got[2].Until.Equal(f.bans[0].Until) || got[2].Scan != "TCP SYN/Normal scan" {
		t.Errorf("list -json: %+v", got)
	}
}

func TestControlStatus(t *testing.T) {
	f := &fakeDaemon{bans: sampleBans()}
	path := startDaemon(t, f)
	code, out, errs := runControl("status", "-socket", path)
	want := `version:     1.0-test
modes:       stcp sudp
backend:     nftables
active bans: 3
started:     2025-02-28 09:57:00 (up 1d2h3m)
bans:        7
dropped:     0
probes:      1234
`
	if code != exitOK || errs != "" {
		t.Fatalf("status: exit %d, stderr %q", code, errs)
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	code, out, _ = runControl("status", "-socket", path, "-json")
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status -json: exit %d, %v:\n%s", code, err, out)
	}
	if diff := cmp.Diff(f.Status(), st); diff != "" || !strings.Contains(out, "\n  \"active_bans\": 3,\n") {
		t.Errorf("status -json (-want +got):\n%s\n%s", diff, out)
	}
}

func TestControlBlock(t *testing.T) {
	f := &fakeDaemon{}
	path := startDaemon(t, f)
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"203.0.113.7"}, "blocked 203.0.113.7 for 1h (until 2025-03-01 13:00:00)\n"},
		{[]string{"198.51.100.9/24", "90m"}, "blocked 198.51.100.0/24 for 1h30m (until 2025-03-01 13:30:00)\n"},
		{[]string{"2001:db8::5", "7d"}, "blocked 2001:db8::5 for 7d (until 2025-03-08 12:00:00)\n"},
		{[]string{"192.0.2.1", "permanent"}, "blocked 192.0.2.1 permanently\n"},
		{[]string{"192.0.2.2", "-socket", path}, "blocked 192.0.2.2 for 1h (until 2025-03-01 13:00:00)\n"}, // flags after arguments
	} {
		code, out, errs := runControl("block", append([]string{"-socket", path}, tc.args...)...)
		if code != exitOK || out != tc.out || errs != "" {
			t.Errorf("block %v: exit %d %q %q, want %q", tc.args, code, out, errs, tc.out)
		}
	}
	if n := len(f.List()); n != 5 {
		t.Errorf("%d bans, want 5", n)
	}

	code, out, _ := runControl("block", "-socket", path, "-json", "192.0.2.3", "1d12h")
	var b control.Ban
	if err := json.Unmarshal([]byte(out), &b); code != exitOK || err != nil {
		t.Fatalf("block -json: exit %d, %v:\n%s", code, err, out)
	}
	if b.Prefix != netip.MustParsePrefix("192.0.2.3/32") || !b.Until.Equal(controlT0.Add(36*time.Hour)) || b.By != "operator" || !strings.Contains(out, "\n  \"until\": ") {
		t.Errorf("block -json:\n%s", out)
	}

	// Errors: bad arguments are usage errors caught before dialing; the daemon's
	// refusal is a runtime error.
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"example.com"}, exitUsage, `portsentry block: "example.com" is not an address or CIDR`},
		{[]string{"192.0.2.1", "soon"}, exitUsage, `portsentry block: bad duration "soon"`},
		{[]string{}, exitUsage, "portsentry block: missing ADDR or CIDR"},
		{[]string{"192.0.2.1", "1h", "extra"}, exitUsage, `portsentry block: unexpected argument "extra"`},
		{[]string{"-bogus", "192.0.2.1"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"0.0.0.0/0"}, exitError, "portsentry block: refusing to ban everything\n"},
	} {
		code, out, errs := runControl("block", append([]string{"-socket", path}, tc.args...)...)
		if code != tc.code || out != "" || !strings.Contains(errs, tc.err) {
			t.Errorf("block %v: exit %d %q %q; want exit %d and %q", tc.args, code, out, errs, tc.code, tc.err)
		}
	}
}

func TestControlUnblock(t *testing.T) {
	f := &fakeDaemon{bans: sampleBans()}
	path := startDaemon(t, f)
	code, out, errs := runControl("unblock", "-socket", path, "203.0.113.7")
	if code != exitOK || errs != "" || out != "unblocked 203.0.113.7 (stcp 143 TCP SYN/Normal scan, since 2025-03-01 11:59:12)\n" {
		t.Errorf("unblock: exit %d %q %q", code, out, errs)
	}
	code, out, errs = runControl("unblock", "-socket", path, "203.0.113.7")
	if code != exitError || out != "" || errs != "portsentry unblock: no active ban matches 203.0.113.7\n" {
		t.Errorf("unblock nothing: exit %d %q %q", code, out, errs)
	}
	f.Block(netip.MustParsePrefix("198.51.100.77/32"), 0)
	code, out, _ = runControl("unblock", "-socket", path, "-json", "198.51.100.0/24")
	var lifted []control.Ban
	if err := json.Unmarshal([]byte(out), &lifted); code != exitOK || err != nil || len(lifted) != 2 {
		t.Fatalf("unblock -json: exit %d, %v:\n%s", code, err, out)
	}
	if lifted[0].Prefix.String() != "198.51.100.0/24" || lifted[1].Prefix.String() != "198.51.100.77/32" {
		t.Errorf("unblock -json: %+v", lifted)
	}
	code, out, errs = runControl("unblock", "-socket", path, "-json", "198.51.100.0/24")
	if code != exitError || out != "[]\n" || !strings.Contains(errs, "no active ban matches 198.51.100.0/24") {
		t.Errorf("unblock -json nothing: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := runControl("unblock", "-socket", path); code != exitUsage || !strings.Contains(errs, "Usage:\n  portsentry unblock") {
		t.Errorf("unblock without argument: exit %d %q", code, errs)
	}
	if n := len(f.List()); n != 1 {
		t.Errorf("%d bans left, want 1", n)
	}
}

// TestControlUnblockOrigin: list shows a fleet host's ban with its origin, and
// unblock -origin lifts that host's bans only.
func TestControlUnblockOrigin(t *testing.T) {
	remote := control.Ban{Prefix: netip.MustParsePrefix("198.51.100.9/32"), Start: controlT0.Add(-time.Minute),
		Until: controlT0.Add(time.Hour), Mode: "tcp", Port: 23, By: "fleet", Origin: "web2", Offences: 1}
	f := &fakeDaemon{bans: append(sampleBans(), remote)}
	path := startDaemon(t, f)
	if _, out, _ := runControl("list", "-socket", path); !strings.Contains(out, "from web2: tcp 23") {
		t.Errorf("list does not show the origin:\n%s", out)
	}
	if code, _, errs := runControl("unblock", "-socket", path, "-origin", "web2", "203.0.113.7"); code != exitUsage || !strings.Contains(errs, "not both") {
		t.Errorf("address and -origin: exit %d %q", code, errs)
	}
	if code, _, errs := runControl("unblock", "-socket", path, "-origin", "web 2"); code != exitUsage || !strings.Contains(errs, "not a fleet host's name") {
		t.Errorf("bad -origin: exit %d %q", code, errs)
	}
	code, out, errs := runControl("unblock", "-socket", path, "-origin", "web2")
	if code != exitOK || errs != "" || out != "unblocked 198.51.100.9 (from web2: tcp 23, since 2025-03-01 11:59:00)\n" {
		t.Errorf("unblock -origin: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := runControl("unblock", "-socket", path, "-origin", "*"); code != exitError || !strings.Contains(errs, "no active ban matches fleet host *") {
		t.Errorf("unblock -origin '*' with none left: exit %d %q", code, errs)
	}
	if n := len(f.List()); n != len(sampleBans()) {
		t.Errorf("%d bans left, want %d", n, len(sampleBans()))
	}
}

func TestControlDaemonNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	for _, name := range []string{"list", "status", "block", "unblock"} {
		args := []string{"-socket", path}
		if name == "block" || name == "unblock" {
			args = append(args, "192.0.2.1")
		}
		code, out, errs := runControl(name, args...)
		want := "portsentry: cannot reach the daemon at " + path + ": no such file or directory (is it running? are you root?)\n"
		if code != exitError || out != "" || errs != want {
			t.Errorf("%s: exit %d %q %q", name, code, out, errs)
		}
	}
	goleak.VerifyNone(t)
}

// fakeSocket answers every connection with one line and hangs up.
func fakeSocket(t *testing.T, answer string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(answer))
			c.Close()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return path
}

func TestControlRefusedAndBroken(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs after the fake sockets' cleanups
	path := fakeSocket(t, `{"ok":false,"error":"permission denied"}`+"\n")
	code, out, errs := runControl("list", "-socket", path)
	if code != exitError || out != "" || errs != "portsentry list: the daemon refused: permission denied (only root may use it)\n" {
		t.Errorf("refused: exit %d %q %q", code, out, errs)
	}
	path = fakeSocket(t, "")
	code, _, errs = runControl("status", "-socket", path)
	if code != exitError || !strings.Contains(errs, "portsentry status: talking to the daemon: ") {
		t.Errorf("hung up: exit %d %q", code, errs)
	}
}

func TestControlUsage(t *testing.T) {
	// Asked for, the usage goes to stdout and is no error.
	if code, out, _ := runControl("list", "-h"); code != exitOK || !strings.Contains(out, "portsentry list [-socket PATH] [-json]") || !strings.Contains(out, config.DefaultControlSocket) {
		t.Errorf("list -h: exit %d %q", code, out)
	}
	if code, _, errs := runControl("status", "extra"); code != exitUsage || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("status extra: exit %d %q", code, errs)
	}
	if code, _, _ := runControl("reboot"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 400 * time.Millisecond: "0s", 59*time.Minute + 12*time.Second: "59m12s", time.Hour: "1h",
		90 * time.Minute: "1h30m", 3*24*time.Hour + 4*time.Hour + 1500*time.Millisecond: "3d4h2s", -time.Minute: "0s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestFlagsBeforeCommand: the flags a subcommand shares may come before its name, as
// well as after: "portsentry -json list", "portsentry -socket PATH status".
func TestFlagsBeforeCommand(t *testing.T) {
	f := &fakeDaemon{bans: sampleBans()}
	path := startDaemon(t, f)
	for _, args := range [][]string{
		{"-json", "list", "-socket", path},
		{"-json", "-socket", path, "list"},
		{"--json", "--socket=" + path, "list"},
		{"-socket", path, "list", "-json"},
	} {
		code, out, errs := runCmd(args...)
		if code != exitOK || errs != "" || !strings.HasPrefix(out, "[\n  {\n    \"prefix\": \"198.51.100.0/24\",") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	code, out, errs := runCmd("-socket", path, "status")
	if code != exitOK || errs != "" || !strings.Contains(out, "active bans:") {
		t.Errorf("-socket PATH status: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runCmd("-socket", path, "-json", "block", "192.0.2.9", "1h")
	if code != exitOK || errs != "" || !strings.Contains(out, `"prefix": "192.0.2.9/32"`) {
		t.Errorf("-socket PATH -json block: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// A flag the subcommand does not have is its usage error, not the daemon's.
	code, _, errs = runCmd("-tcp", "list", "-socket", path)
	if code != exitUsage || !strings.Contains(errs, "flag provided but not defined: -tcp") || !strings.Contains(errs, "portsentry list [-socket PATH]") {
		t.Errorf("-tcp list: exit %d, stderr %q", code, errs)
	}
}

func TestCommandFirst(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"-json list", "list -json"},
		{"-socket /s -json status", "status -socket /s -json"},
		{"-socket=/s status", "status -socket=/s"},
		{"-c /etc/p.conf check-config -tcp", "check-config -c /etc/p.conf -tcp"},
		{"-c /etc/p.conf report -o x", "report -c /etc/p.conf -o x"},
		{"-h report", "report -h"},
		{"-c list -tcp", "-c list -tcp"}, // "list" is -c's value: the daemon's config file
		{"-pidfile status -tcp", "-pidfile status -tcp"},
		{"-tcp -udp", "-tcp -udp"},
		{"-- list", "-- list"},
		{"list -json", "list -json"},
		{"version", "version"},
		{"-tcp extra list", "-tcp extra list"},
	} {
		if got := strings.Join(commandFirst(strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("commandFirst(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestControlNotEnforced: a ban the backend records without enforcing it says so in
// block's answer, under list's table and in status.
func TestControlNotEnforced(t *testing.T) {
	why := "a unicast route that is not ours (proto boot, metric 0) holds the prefix and is left alone: the host is not blocked"
	f := &fakeDaemon{notEnforced: why}
	path := startDaemon(t, f)
	code, out, errs := runControl("block", "-socket", path, "198.51.100.0/24")
	if want := "recorded a ban on 198.51.100.0/24 for 1h (until 2025-03-01 13:00:00), but it is not enforced: " + why + "\n"; code != exitOK || out != want || errs != "" {
		t.Errorf("block: exit %d %q %q, want %q", code, out, errs, want)
	}
	f.notEnforced = ""
	runControl("block", "-socket", path, "203.0.113.7")
	code, out, _ = runControl("list", "-socket", path)
	want := `ADDRESS          REMAINING  REASON    SINCE                OFFENCES
198.51.100.0/24  1h         operator  2025-03-01 12:00:00  1
203.0.113.7      1h         operator  2025-03-01 12:00:00  1
not enforced: 198.51.100.0/24: ` + why + "\n"
	if diff := cmp.Diff(want, out); code != exitOK || diff != "" {
		t.Errorf("list: exit %d (-want +got):\n%s", code, diff)
	}
	code, out, _ = runControl("list", "-socket", path, "-json")
	if code != exitOK || !strings.Contains(out, `"not_enforced": "a unicast route`) || strings.Count(out, "not_enforced") != 1 {
		t.Errorf("list -json: exit %d\n%s", code, out)
	}
	code, out, _ = runControl("status", "-socket", path)
	if code != exitOK || !strings.Contains(out, "active bans: 2 (1 recorded but not enforced: see portsentry list)\n") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

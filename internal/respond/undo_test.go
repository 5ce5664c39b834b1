package respond

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
)

var target6 = Target{Addr: netip.MustParseAddr("fd77::4"), Port: 143, Mode: probe.ModeTCP}

func TestDenyLine(t *testing.T) {
	for _, tc := range []struct {
		template string
		t        Target
		want     string
	}{
		{"ALL: $TARGET$ : DENY", target, "ALL: 198.18.0.2 : DENY"},
		{"ALL: $TARGET$ : DENY", target6, "ALL: [fd77::4] : DENY"},
		{"ALL: [$TARGET$] : DENY", target6, "ALL: [fd77::4] : DENY"},
		{"ALL: [$TARGET$] : DENY", target, "ALL: [198.18.0.2] : DENY"}, // as the admin wrote it
		{"ALL: $TARGET$/128 : $PORT$ $MODE$", target6, "ALL: [fd77::4]/128 : 143 tcp"},
		{"ALL: $TARGET$", Target{Addr: netip.MustParseAddr("::ffff:198.18.0.2")}, "ALL: 198.18.0.2"},
	} {
		if got := DenyLine(tc.template, tc.t); got != tc.want {
			t.Errorf("DenyLine(%q, %v) = %q, want %q", tc.template, tc.t.Addr, got, tc.want)
		}
	}
}

// TestRemoveDenyLineTakesOnlyOurs: the admin's identical-looking line written before
// ours stays, and so does every other byte of the file.
func TestRemoveDenyLineTakesOnlyOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.deny")
	admin := "# admin's\nALL: 198.18.0.2 : DENY\nsshd: 192.0.2.1\n"
	writeTestFile(t, path, admin)
	added, err := addDenyLine(path, "ALL: 198.18.0.3 : DENY")
	if err != nil || !added {
		t.Fatalf("append: added=%v %v", added, err)
	}
	if found, err := removeDenyLine(path, "ALL: 198.18.0.3 : DENY"); !found || err != nil {
		t.Fatalf("remove: found=%v %v", found, err)
	}
	if got := readTestFile(t, path); got != admin {
		t.Errorf("after append and removal:\n%q\nwant\n%q", got, admin)
	}
	// The same line as the admin's, appended after it: the removal takes the last.
	writeTestFile(t, path, admin+"ALL: 198.18.0.2 : DENY\n")
	if found, _ := removeDenyLine(path, "ALL: 198.18.0.2 : DENY"); !found {
		t.Fatal("not found")
	}
	if got := readTestFile(t, path); got != admin {
		t.Errorf("got %q, want %q", got, admin)
	}
	if found, err := removeDenyLine(path, "ALL: 203.0.113.1 : DENY"); found || err != nil {
		t.Errorf("absent line: found=%v %v", found, err)
	}
	if got := readTestFile(t, path); got != admin {
		t.Errorf("absent line changed the file: %q", got)
	}
}

func TestAddDenyLineNeverDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "hosts.deny")
	for i, want := range []bool{true, false} {
		if added, err := addDenyLine(path, "ALL: [fd77::4] : DENY"); added != want || err != nil {
			t.Errorf("append %d: added=%v (want %v) %v", i, added, want, err)
		}
	}
	// A last line without its newline gets one before ours.
	writeTestFile(t, path, "sshd: 192.0.2.1")
	addDenyLine(path, "ALL: 198.18.0.2")
	if got := readTestFile(t, path); got != "sshd: 192.0.2.1\nALL: 198.18.0.2\n" {
		t.Errorf("got %q", got)
	}
}

// TestUndoLiftsWhatRan: Respond records what it did, Undo reverses it in reverse order
// with the undo keys' commands and removes our hosts.deny line only.
func TestUndoLiftsWhatRan(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	deny := filepath.Join(dir, "hosts.deny")
	writeTestFile(t, deny, "ALL: [fd77::4] : DENY\n") // the admin's, before ours
	log, buf := newLog()
	c := NewClassic(ClassicConfig{
		BlockTCP:       config.BlockKill,
		KillRoute:      "echo route $TARGET$ >> " + order,
		KillRouteUndo:  "echo unroute $TARGET$ >> " + order,
		KillHostsDeny:  "ALL: $TARGET$ : DENY",
		KillRunCmd:     "echo cmd $TARGET$ $PORT$ $MODE$ >> " + order,
		KillRunCmdUndo: "echo uncmd $TARGET$ $PORT$ $MODE$ >> " + order,
		HostsDenyFile:  deny,
	}, log)
	for _, tg := range []Target{target, target6} {
		out := c.Respond(context.Background(), tg)
		if !out.Blocked || !out.Done.Route || !out.Done.RunCmd || out.Done.Addr != tg.Addr {
			t.Fatalf("%v: %+v\n%s", tg.Addr, out, buf)
		}
		c.Undo(context.Background(), out.Done)
		if s := c.Stays(out.Done); len(s) != 0 {
			t.Errorf("stays with every undo set: %q", s)
		}
	}
	want := []string{"route 198.18.0.2", "cmd 198.18.0.2 143 tcp", "uncmd 198.18.0.2 143 tcp", "unroute 198.18.0.2",
		"route fd77::4", "cmd fd77::4 143 tcp", "uncmd fd77::4 143 tcp", "unroute fd77::4"}
	if got := strings.Split(strings.TrimSpace(readTestFile(t, order)), "\n"); !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	// The IPv6 host's line was the admin's: not appended again, not removed.
	if got := readTestFile(t, deny); got != "ALL: [fd77::4] : DENY\n" {
		t.Errorf("hosts.deny %q", got)
	}
	if !strings.Contains(buf.String(), `Host 198.18.0.2 has been removed from `+deny) {
		t.Errorf("removal not logged:\n%s", buf)
	}
}

func TestStaysNamesTheKey(t *testing.T) {
	c := NewClassic(ClassicConfig{BlockTCP: config.BlockKill, KillRoute: "true", KillRunCmd: "true"}, nil)
	got := c.Stays(Done{Addr: netip.MustParseAddr("10.0.0.5"), Route: true, RunCmd: true, HostsDeny: "ALL: 10.0.0.5"})
	want := []string{
		"the KILL_ROUTE route for 10.0.0.5 stays: set KILL_ROUTE_UNDO to lift it",
		"what KILL_RUN_CMD did for 10.0.0.5 stays: set KILL_RUN_CMD_UNDO to undo it",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestIPv6RouteFailureReportedOnce: a KILL_ROUTE that cannot take IPv6 is an error with
// a hint the first time only; the hosts.deny line still blocks, so the host counts as
// blocked; with nothing else configured it counts as blocked too (the route would fail
// on every hit).
func TestIPv6RouteFailureReportedOnce(t *testing.T) {
	dir := t.TempDir()
	r := &records{}
	c := NewClassic(ClassicConfig{BlockTCP: config.BlockKill, KillRoute: "echo $TARGET$: Unknown host >&2; exit 6",
		KillHostsDeny: "ALL: $TARGET$ : DENY", HostsDenyFile: filepath.Join(dir, "deny")}, slog.New(r))
	for i, a := range []string{"fd77::4", "fd77::5"} {
		out := c.Respond(context.Background(), Target{Addr: netip.MustParseAddr(a), Port: 1, Mode: probe.ModeTCP})
		if !out.Blocked || out.Done.Route || out.Done.HostsDeny != "ALL: ["+a+"] : DENY" {
			t.Errorf("host %d: %+v", i, out)
		}
	}
	if n := strings.Count(r.messages(), "ERROR: dropped route command failed for IPv6 host"); n != 1 {
		t.Errorf("%d IPv6 route errors, want 1:\n%s", n, r.messages())
	}
	if !strings.Contains(r.messages(), "ip route add blackhole $TARGET$") {
		t.Errorf("no hint:\n%s", r.messages())
	}
	a, _ := r.attrs("command output")
	if !strings.Contains(a["output"].String(), "Unknown host") {
		t.Errorf("failure logged without its output: %v", a)
	}
	only := NewClassic(ClassicConfig{BlockTCP: config.BlockKill, KillRoute: "exit 6"}, slog.New(&records{}))
	if !only.Respond(context.Background(), target6).Blocked {
		t.Error("IPv6 host with only a failing KILL_ROUTE not counted as blocked")
	}
	if only.Respond(context.Background(), target).Blocked {
		t.Error("IPv4 host with only a failing KILL_ROUTE counted as blocked")
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDenyLineSpecialFile: KILL_HOSTS_DENY into a HOSTS_DENY_FILE that is a FIFO or a
// device fails at once, and the undo leaves the file alone.
func TestDenyLineSpecialFile(t *testing.T) {
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
		done := make(chan struct{})
		go func() {
			defer close(done)
			if added, err := addDenyLine(path, "ALL: 198.18.0.3 : DENY"); added || err == nil || !strings.Contains(err.Error(), path+": is a ") {
				t.Errorf("addDenyLine(%s) = %v, %v", path, added, err)
			}
			if found, err := removeDenyLine(path, "ALL: 198.18.0.3 : DENY"); found || err == nil {
				t.Errorf("removeDenyLine(%s) = %v, %v", path, found, err)
			}
			if err := writeDeny(path, []byte("x\n")); err == nil {
				t.Errorf("writeDeny(%s): no error", path)
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

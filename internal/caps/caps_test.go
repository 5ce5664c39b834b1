package caps

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestFor(t *testing.T) {
	for _, c := range []struct {
		n    Needs
		want Plan
	}{
		{Needs{}, Plan{}},
		{Needs{Connect: true}, Plan{Daemon: NetBindService}},
		{Needs{Stealth: true, Netlink: true}, Plan{Daemon: NetRaw | NetAdmin}},
		{Needs{Connect: true, Commands: true}, Plan{Daemon: NetBindService, Commands: NetAdmin | NetRaw}},
	} {
		if got := For(c.n); got != c.want {
			t.Errorf("For(%+v) = %+v, want %+v", c.n, got, c.want)
		}
	}
}

func TestString(t *testing.T) {
	if got := (NetRaw | NetBindService | NetAdmin).String(); got != "cap_net_bind_service,cap_net_admin,cap_net_raw" {
		t.Errorf("String = %q", got)
	}
	if got := Set(0).String(); got != "none" {
		t.Errorf("String(0) = %q", got)
	}
}

// childEnv makes the test binary, run again, drop to the plan it holds and report.
const childEnv = "CAPS_TEST_PLAN"

// TestMain lets TestDrop run the drop in a copy of the test binary: the test process
// itself must keep its capabilities for the other tests.
func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(v))
	}
	os.Exit(m.Run())
}

// child drops to the plan "DAEMON:COMMANDS" (hex), with extra threads parked, then
// prints every thread's capability lines and those of a command it runs.
func child(v string) int {
	d, c, _ := strings.Cut(v, ":")
	daemon, _ := strconv.ParseUint(d, 16, 64)
	commands, _ := strconv.ParseUint(c, 16, 64)
	park := make(chan struct{})
	for range 4 {
		go func() { runtime.LockOSThread(); <-park }()
	}
	if _, err := Drop(Plan{Daemon: Set(daemon), Commands: Set(commands)}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		fmt.Print(capLines("task", string(b)))
	}
	out, err := exec.Command("/bin/sh", "-c", "cat /proc/self/status").Output()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Print(capLines("command", string(out)))
	close(park)
	return 0
}

func capLines(who, status string) string {
	var b strings.Builder
	for _, l := range strings.Split(status, "\n") {
		for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd"} {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				fmt.Fprintf(&b, "%s %s %s\n", who, k, strings.TrimSpace(v))
			}
		}
	}
	return b.String()
}

// TestDrop checks, in a child process running as root, that every thread ends up with
// exactly the daemon's capabilities and a command it starts with exactly the
// commands' ones (which also shows that root's privilege at exec is gone).
func TestDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []Plan{
		{Daemon: NetBindService},
		{Daemon: NetRaw | NetAdmin},
		{Daemon: NetBindService, Commands: NetAdmin | NetRaw},
		{},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%x:%x", childEnv, uint64(p.Daemon), uint64(p.Commands)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("plan %+v: child: %v\n%s", p, err, out)
		}
		want := map[string]Set{"task CapEff": p.Daemon, "task CapPrm": p.Daemon | p.Commands,
			"task CapAmb": p.Commands, "task CapBnd": p.Daemon | p.Commands,
			"command CapEff": p.Commands, "command CapPrm": p.Commands, "command CapBnd": p.Daemon | p.Commands}
		tasks := 0
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 {
				t.Fatalf("plan %+v: child said %q", p, l)
			}
			if f[0]+" "+f[1] == "task CapEff" {
				tasks++
			}
			got, _ := strconv.ParseUint(f[2], 16, 64)
			if w, ok := want[f[0]+" "+f[1]]; ok && Set(got) != w {
				t.Errorf("plan %+v: %s %s = %s, want %s", p, f[0], f[1], Set(got), w)
			}
		}
		if tasks < 5 {
			t.Errorf("plan %+v: only %d threads seen, want the parked ones too", p, tasks)
		}
	}
}

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/caps"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

// threadCaps reads one capability line (CapEff, CapAmb, ...) of every thread of pid.
func threadCaps(t *testing.T, pid int, key string) []caps.Set {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of %d: %v", pid, err)
	}
	var out []caps.Set
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has exited
		}
		out = append(out, capLine(t, string(b), key))
	}
	return out
}

func capLine(t *testing.T, status, key string) caps.Set {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return caps.Set(n)
		}
	}
	t.Fatalf("no %s in %q", key, status)
	return 0
}

// TestDroppedCapabilities runs the daemon as root for each kind of mode and backend and
// reads what every one of its threads holds once it is listening: only what it still
// uses, and for its commands (as ambient capabilities) only what they need, only when
// commands are configured. A KILL_RUN_CMD reports its own capabilities, and its
// KILL_ROUTE still works.
func TestDroppedCapabilities(t *testing.T) {
	needDaemon(t)
	noCmds := []testnet.Setting{{Key: "KILL_ROUTE", Value: ""}, {Key: "KILL_RUN_CMD", Value: ""}}
	cmdCaps := caps.NetAdmin | caps.NetRaw
	for _, c := range []struct {
		name     string
		modes    []string
		settings []testnet.Setting
		eff, amb caps.Set
	}{
		{"tcp/classic", []string{"tcp"}, noCmds, caps.NetBindService, 0},
		{"stcp+sudp/nftables", []string{"stcp", "sudp"}, append(noCmds, testnet.Setting{Key: "BLOCK_BACKEND", Value: "nftables"}), caps.NetRaw | caps.NetAdmin, 0},
		{"tcp+udp/route", []string{"tcp", "udp"}, append(noCmds, testnet.Setting{Key: "BLOCK_BACKEND", Value: "route"}), caps.NetBindService | caps.NetAdmin, 0},
		{"atcp/ipset", []string{"atcp"}, append(noCmds, testnet.Setting{Key: "BLOCK_BACKEND", Value: "ipset"}), caps.NetRaw | caps.NetAdmin, cmdCaps},
		{"tcp/classic+commands", []string{"tcp"}, nil, caps.NetBindService, cmdCaps},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if strings.Contains(c.name, "ipset") {
				testnet.Require(t, "ipset", "iptables")
			}
			p := testnet.NewPair(t)
			f := newFiles(t)
			settings := c.settings
			if c.settings == nil {
				settings = []testnet.Setting{{Key: "BLOCK_TCP", Value: "1"}, {Key: "KILL_ROUTE", Value: killRoute},
					{Key: "KILL_RUN_CMD", Value: "grep ^Cap /proc/self/status >> " + f.CmdOut}}
			}
			f.write(t, nil, settings...)
			d := startOurs(t, p, f, c.modes...)
			want := fmt.Sprintf("adminalert: capabilities kept: %s; commands get: %s", c.eff, c.amb)
			waitMsg(t, d.Log, 0, want)
			for key, w := range map[string]caps.Set{"CapEff": c.eff, "CapPrm": c.eff | c.amb, "CapAmb": c.amb, "CapBnd": c.eff | c.amb} {
				for i, got := range threadCaps(t, d.Pid(), key) {
					if got != w {
						t.Errorf("thread %d: %s = %s, want %s", i, key, got, w)
					}
				}
			}
			if c.settings != nil {
				return
			}
			hit(t, p, p.ScanV4, p.DefV4, 143)
			testnet.Eventually(t, eventTimeout, func() (bool, string) {
				b, _ := os.ReadFile(f.CmdOut)
				return strings.Contains(string(b), "CapEff:"), string(b)
			})
			b, _ := os.ReadFile(f.CmdOut)
			if got := capLine(t, string(b), "CapEff"); got != cmdCaps {
				t.Errorf("KILL_RUN_CMD ran with %s, want %s", got, cmdCaps)
			}
			if r := blackholes(t, p); len(r) != 1 {
				t.Errorf("KILL_ROUTE with the commands' capabilities: routes %q, want the scanner's", r)
			}
		})
	}
}

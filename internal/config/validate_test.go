package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/probe"
)

func TestValidateDefault(t *testing.T) {
	if list := Default().Validate(probe.Modes); len(list) != 0 {
		t.Errorf("Default() in every mode: %v", list)
	}
}

func TestValidate(t *testing.T) {
	const file = "BLOCK_TCP=\"2\"\nTCP_PORTS=\"\"\nBLOCK_UDP=\"1\"\nHISTORY_FILE=\"/h\"\nBLOCKED_FILE=\"/b\"\n"
	tcp, stcp, udp, sudp := probe.ModeTCP, probe.ModeSTCP, probe.ModeUDP, probe.ModeSUDP
	atcp, audp := probe.ModeATCP, probe.ModeAUDP
	for _, tc := range []struct {
		name   string
		file   string // parsed as v.conf; empty means Default()
		change func(c *Config)
		modes  []probe.Mode
		want   []string
	}{
		{name: "no modes: only value rules", file: file},
		{name: "tcp needs ports and a command", file: file, modes: []probe.Mode{tcp, stcp, tcp},
			want: []string{
				"v.conf:2: error: TCP_PORTS is empty: no port to watch in -tcp, -stcp",
				`v.conf:1: error: BLOCK_TCP="2" runs only KILL_RUN_CMD, which is not set`,
			}},
		{name: "atcp needs no TCP_PORTS", file: file, modes: []probe.Mode{atcp},
			want: []string{`v.conf:1: error: BLOCK_TCP="2" runs only KILL_RUN_CMD, which is not set`}},
		{name: "udp: blocking with nothing to run, files unset", file: "BLOCK_UDP=\"1\"\nUDP_PORTS=\"1\"\n", modes: []probe.Mode{sudp},
			want: []string{
				`v.conf:1: warning: BLOCK_UDP="1" but none of KILL_ROUTE, KILL_HOSTS_DENY, KILL_RUN_CMD is set and BLOCK_BACKEND is "classic": nothing will be blocked`,
				"v.conf: warning: HISTORY_FILE is not set",
				"v.conf: warning: BLOCKED_FILE is not set",
			}},
		{name: "udp needs UDP_PORTS", file: "HISTORY_FILE=\"/h\"\nBLOCKED_FILE=\"/b\"\n", modes: []probe.Mode{udp},
			want: []string{"v.conf: error: UDP_PORTS is empty: no port to watch in -udp"}},
		{name: "BLOCK 2 with a command is fine",
			change: func(c *Config) { c.BlockTCP, c.BlockUDP, c.KillRunCmd = BlockRunCmd, BlockRunCmd, "/bin/true" },
			modes:  probe.Modes},
		{name: "BLOCK 1 with a native backend needs no KILL_ line",
			change: func(c *Config) {
				c.BlockTCP, c.KillRoute, c.KillHostsDeny, c.KillRunCmd, c.BlockBackend = BlockKill, "", "", "", "nftables"
			},
			modes: []probe.Mode{tcp}},
		{name: "BLOCK 1 with one action is fine",
			change: func(c *Config) {
				c.BlockTCP, c.KillRoute, c.KillHostsDeny = BlockKill, "", ""
				c.KillRunCmd, c.KillRunCmdUndo = "x", "y"
			},
			modes: []probe.Mode{tcp}},
		{name: "what stays without the undo keys, and an IPv4-only KILL_ROUTE",
			change: func(c *Config) { c.BlockUDP, c.KillRouteUndo, c.KillRunCmd = BlockKill, "", "/bin/page $TARGET$" },
			modes:  []probe.Mode{tcp, udp},
			want: []string{
				"built-in defaults: warning: the routes KILL_ROUTE adds stay when a ban ends (BAN_TIME, portsentry unblock): set KILL_ROUTE_UNDO to lift them",
				"built-in defaults: warning: what KILL_RUN_CMD does stays when a ban ends (BAN_TIME, portsentry unblock): set KILL_RUN_CMD_UNDO to undo it",
				`built-in defaults: warning: KILL_ROUTE cannot take IPv6 addresses (route needs "-A inet6" for IPv6 hosts): IPv6 scanners get no route; "/sbin/ip route add blackhole $TARGET$" takes both families (KILL_ROUTE_UNDO "/sbin/ip route del blackhole $TARGET$"), or use a native BLOCK_BACKEND`,
			}},
		{name: "ip route with its undo is fine",
			change: func(c *Config) {
				c.BlockTCP = BlockKill
				c.KillRoute, c.KillRouteUndo = "/sbin/ip route add blackhole $TARGET$", "/sbin/ip route del blackhole $TARGET$"
			},
			modes: []probe.Mode{tcp}},
		{name: "advanced watching nothing",
			change: func(c *Config) {
				c.AdvancedPortsTCP = 1
				c.AdvancedPortsUDP = 4
				c.AdvancedExcludeUDP = []uint16{3, 1, 2, 9}
			},
			modes: []probe.Mode{atcp, audp},
			want: []string{
				"built-in defaults: warning: -atcp watches no port: ADVANCED_PORTS_TCP is 1 and there is no port below 1",
				"built-in defaults: warning: -audp watches no port: ADVANCED_EXCLUDE_UDP excludes every port below ADVANCED_PORTS_UDP (4)",
			}},
		{name: "advanced watching one port", change: func(c *Config) { c.AdvancedPortsUDP = 4; c.AdvancedExcludeUDP = []uint16{3, 1} },
			modes: []probe.Mode{audp}},
		{name: "value rules on a hand-made config", change: func(c *Config) {
			c.TCPPorts = []uint16{5, 0, 5}
			c.AdvancedPortsUDP = 0
			c.BlockTCP = 3
			c.ScanTrigger = -1
			c.KillRoute = "route add"
			c.HostsDenyFile = ""
			c.CommandTimeout = 1500 * time.Millisecond
		}, want: []string{
			"built-in defaults: error: TCP_PORTS holds port 0, which is not a port",
			"built-in defaults: error: TCP_PORTS holds port 5 more than once",
			"built-in defaults: error: ADVANCED_PORTS_UDP is 0; it must be from 1 to 65535",
			"built-in defaults: error: BLOCK_TCP is 3; it must be from 0 to 2",
			"built-in defaults: error: SCAN_TRIGGER is -1; it must be from 0 to 2147483647",
			"built-in defaults: error: KILL_ROUTE must contain $TARGET$ (replaced by the attacker's address)",
			"built-in defaults: error: HOSTS_DENY_FILE must not be empty (leave it out to use /etc/hosts.deny)",
			"built-in defaults: error: KILL_CMD_TIMEOUT is 1.5s; it must be whole seconds from 1 to 3600",
		}},
		{name: "value rules sorted by line", file: "SCAN_TRIGGER=\"1\"\nTCP_PORTS=\"1\"\n",
			change: func(c *Config) { c.TCPPorts = append(c.TCPPorts, 0); c.ScanTrigger = -5; c.CommandTimeout = 0 },
			want: []string{
				"v.conf: error: KILL_CMD_TIMEOUT is 0s; it must be whole seconds from 1 to 3600",
				"v.conf:1: error: SCAN_TRIGGER is -5; it must be from 0 to 2147483647",
				"v.conf:2: error: TCP_PORTS holds port 0, which is not a port",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if tc.file != "" {
				var err error
				if c, _, err = Parse("v.conf", strings.NewReader(tc.file)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.change != nil {
				tc.change(c)
			}
			got := diagStrings(c.Validate(tc.modes))
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Validate (-want +got):\n%s", d)
			}
		})
	}
}

// TestPackagedConfig: the annotated config we ship loads without a diagnostic, equals
// the built-in defaults but for the KILL_ROUTE_UNDO of its KILL_ROUTE, and mentions
// every key the parser knows, so that it cannot fall behind the code.
func TestPackagedConfig(t *testing.T) {
	const path = "../../packaging/debian/portsentry.conf"
	cfg, diags, err := Load(path)
	if err != nil || len(diags) > 0 {
		t.Fatalf("%v %v", err, diags)
	}
	want := Default()
	want.KillRouteUndo = "/sbin/route del -host $TARGET$ reject"
	cfg.Source, want.Source = "", ""
	cfg.lines, want.lines = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("packaged config differs from the built-in defaults:\n%+v\n%+v", cfg, want)
	}
	data, _ := os.ReadFile(path)
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)^#?` + k.name + `\s*=`).Match(data) {
			t.Errorf("packaged config does not mention %s", k.name)
		}
	}
}

func TestIPv4Only(t *testing.T) {
	for cmd, want := range map[string]string{
		"/sbin/route add -host $TARGET$ reject":           `route needs "-A inet6" for IPv6 hosts`,
		"route -A inet6 add $TARGET$/128 reject":          "",
		"/sbin/route -6 add $TARGET$ reject":              "",
		"/sbin/iptables -I INPUT -s $TARGET$ -j DROP":     "iptables is IPv4 only",
		"/sbin/ipchains -I input -s $TARGET$ -j DENY":     "ipchains is IPv4 only",
		"/sbin/ip route add blackhole $TARGET$":           "",
		"/usr/local/sbin/block-both-families.sh $TARGET$": "",
		"": "",
	} {
		if got := ipv4Only(cmd); got != want {
			t.Errorf("ipv4Only(%q) = %q, want %q", cmd, got, want)
		}
	}
}

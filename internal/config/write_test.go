package config

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"
)

const debianFile = "../../testdata/config/debian-portsentry.conf"

func TestDebianFileIsDefault(t *testing.T) {
	c, list, err := Load(debianFile)
	if err != nil || len(list) != 0 {
		t.Fatalf("Load(%s): %v\n%v", debianFile, err, list)
	}
	if d := cmp.Diff(Default(), c, ignoreLines, cmpopts.IgnoreFields(Config{}, "Source")); d != "" {
		t.Errorf("Debian's file differs from Default() (-default +file):\n%s", d)
	}
	if c.Line("TCP_PORTS") == 0 || c.Line("KILL_HOSTS_DENY") == 0 {
		t.Errorf("key lines not recorded: TCP_PORTS %d, KILL_HOSTS_DENY %d", c.Line("TCP_PORTS"), c.Line("KILL_HOSTS_DENY"))
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a := Default()
	a.TCPPorts[0] = 9999
	a.AdvancedExcludeUDP[0] = 9999
	if b := Default(); b.TCPPorts[0] != 1 || b.AdvancedExcludeUDP[0] != 520 || b.Source != DefaultsSource {
		t.Errorf("Default() shares state between calls: %v", b)
	}
}

// roundTrip writes c, parses the output, and fails unless it is clean and equal.
func roundTrip(t interface {
	Helper()
	Fatalf(string, ...any)
}, c *Config) string {
	t.Helper()
	var buf bytes.Buffer
	n, err := c.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	back, list, err := Parse("again.conf", bytes.NewReader(buf.Bytes()))
	if err != nil || len(list) != 0 {
		t.Fatalf("output does not parse cleanly: %v\n%v\n%s", err, list, buf.String())
	}
	if d := cmp.Diff(c, back, ignoreLines, cmpopts.IgnoreFields(Config{}, "Source")); d != "" {
		t.Fatalf("round trip changed the config (-before +after):\n%s\n%s", d, buf.String())
	}
	return buf.String()
}

func TestWriteDefault(t *testing.T) {
	out := roundTrip(t, Default())
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if want := 1 + len(keys); len(lines) != want {
		t.Fatalf("got %d lines, want a header and one line per key (%d):\n%s", len(lines), want, out)
	}
	for _, want := range []string{
		`# Effective portsentry configuration, read from "built-in defaults"`,
		`UDP_PORTS="1,7,9,69,161,162,513,635,640,641,700,37444,34555,31335,32770-32774,31337,54321"`,
		`ADVANCED_EXCLUDE_UDP="520,138,137,67"`,
		`KILL_ROUTE="/sbin/route add -host $TARGET$ reject"`,
		`KILL_RUN_CMD=""`,
		`HOSTS_DENY_FILE="/etc/hosts.deny"`,
		`KILL_CMD_TIMEOUT="30"`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks line %s:\n%s", want, out)
		}
	}
}

func TestWriteEveryField(t *testing.T) {
	c := Default()
	c.Source = "/etc/x\n\"odd\" name"
	c.ResolveHost, c.KillRunCmdFirst = true, true
	c.BlockTCP, c.BlockUDP = BlockKill, BlockRunCmd
	c.KillRunCmd = "/usr/local/bin/page\t$TARGET$ $PORT$ $MODE$ # not a comment"
	c.ScanTrigger = 2
	c.PortBanner = "  Gå væk = # "
	c.HostsDenyFile = "/tmp/hosts.deny"
	c.CommandTimeout = 5 * time.Second
	c.KillRouteUndo, c.KillRunCmdUndo = "/sbin/route del -host $TARGET$ reject", "/usr/local/bin/unpage $TARGET$"
	c.AdvancedPortsTCP, c.AdvancedPortsUDP = 1, 65535
	c.TCPPorts = nil
	c.UDPPorts = []uint16{65535, 1, 2, 3, 5}
	roundTrip(t, c)
}

func TestWriteRefuses(t *testing.T) {
	for name, change := range map[string]func(c *Config){
		"quote":           func(c *Config) { c.PortBanner = `say "hi"` },
		"newline":         func(c *Config) { c.KillRunCmd = "a\nb" },
		"NUL":             func(c *Config) { c.IgnoreFile = "a\x00" },
		"partial seconds": func(c *Config) { c.CommandTimeout = 1500 * time.Millisecond },
		"line too long":   func(c *Config) { c.HistoryFile = strings.Repeat("x", maxLineLen) },
		"list too long": func(c *Config) {
			c.TCPPorts = nil
			for p := 2; p <= 65535; p += 2 {
				c.TCPPorts = append(c.TCPPorts, uint16(p))
			}
		},
	} {
		c := Default()
		change(c)
		var buf bytes.Buffer
		if n, err := c.WriteTo(&buf); err == nil || n != 0 || buf.Len() != 0 {
			t.Errorf("%s: WriteTo = %d, %v; want an error and nothing written", name, n, err)
		}
	}
}

func TestFormatPorts(t *testing.T) {
	for _, tc := range []struct {
		in            string // a list as parsed
		want, compact string
	}{
		{"", "", ""},
		{"80", "80", "80"},
		{"1,2", "1,2", "1,2"},
		{"1,2,3", "1-3", "1-3"},
		{"1,2,5", "1,2,5", "1,2,5"},
		{"1-5,7,6", "1-5,7,6", "1-5,7,6"},
		{"65533-65535,1", "65533-65535,1", "65533-65535,1"},
		{"2,4,6,8,1-9", "2,4,6,8,1-9", "2,4,6,8,1-9"},
		{"10-19,1-20", "10-19,1-20", "10-19,1-20"},
		{"5,3,4", "5,3,4", "5,3,4"},
		{"1000-1010,1-2000", "1000-1010,1-2000", "1000-1010,1-2000"},
		{"10-99,100,5-101", "10-100,5-101", "10-100,5-101"},
		{"100-200,10,99-250", "100-200,10,99-250", "100-200,10,99-250"},
		{"50-200,10,20-300", "50-200,10,20-300", "50-200,10,20-300"},
		// Compact starts a range below its first new port when that saves digits.
		{"10-99,1,100-110", "10-99,1,100-110", "10-99,1,99-110"},
		{"1-9,20,10-11", "1-9,20,10,11", "1-9,20,9-11"},
		{"1-9,20,10-19,21", "1-9,20,10-21", "1-9,20,9-21"},
	} {
		c, list, err := Parse("t", strings.NewReader(`TCP_PORTS="`+tc.in+`"`))
		if err != nil || len(list) != 0 {
			t.Fatalf("%q: %v", tc.in, list)
		}
		for _, compact := range []bool{false, true} {
			want := tc.want
			if compact {
				want = tc.compact
			}
			got := formatPorts(c.TCPPorts, compact)
			if got != want {
				t.Errorf("formatPorts(parse(%q), %v) = %q, want %q", tc.in, compact, got, want)
			}
			back, _, _ := Parse("t", strings.NewReader(`TCP_PORTS="`+got+`"`))
			if !cmp.Equal(c.TCPPorts, back.TCPPorts) {
				t.Errorf("%q does not parse back to %v", got, c.TCPPorts)
			}
		}
	}
}

// A list whose readable form is over the line limit is written compactly.
func TestWriteCompactWhenLong(t *testing.T) {
	// "9-10004" after 1..10002 are listed yields 10003,10004: readable "10003,10004",
	// compact "9-10004". The 6xxxx ports keep the ranges from merging.
	var b strings.Builder
	b.WriteString("1-9999")
	for k := 1; k <= 4500; k++ {
		fmt.Fprintf(&b, ",9-%d,%d", 10000+2*k, 60000+k)
	}
	c, list, err := Parse("t", strings.NewReader(`TCP_PORTS="`+b.String()+`"`))
	if err != nil || len(list) != 0 {
		t.Fatal(err, list)
	}
	if n := len(formatPorts(c.TCPPorts, false)); n <= maxLineLen {
		t.Fatalf("test list too short to matter: readable form is %d bytes", n)
	}
	out := roundTrip(t, c)
	if !strings.Contains(out, `TCP_PORTS="1-10002,60001,9-10004,60002,9-10006,`) {
		t.Errorf("long list not written compactly")
	}
}

// portListText generates the text of a port list as an operator might write it:
// singles and ranges, overlapping, in any order, with blanks and leading zeros.
func portListText(t *rapid.T) string {
	n := rapid.IntRange(0, 40).Draw(t, "entries")
	entries := make([]string, n)
	for i := range entries {
		lo := rapid.OneOf(rapid.IntRange(1, 20), rapid.IntRange(1, 65535)).Draw(t, "lo")
		text := strconv.Itoa(lo)
		if rapid.Bool().Draw(t, "range") {
			hi := min(65535, lo+rapid.IntRange(0, 30).Draw(t, "span"))
			text = fmt.Sprintf("%d-%d", lo, hi)
		}
		if rapid.IntRange(0, 9).Draw(t, "pad") == 0 {
			text = " 0" + text + " "
		}
		entries[i] = text
	}
	return strings.Join(entries, ",")
}

// Output of formatPorts parses to the same list and is never longer than the input:
// what was short enough to read is short enough to write.
func TestFormatPortsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		text := portListText(t)
		c, list, err := Parse("t", strings.NewReader(`UDP_PORTS="`+text+`"`))
		if err != nil || len(list) != 0 {
			t.Fatalf("generated list %q: %v", text, list)
		}
		out := formatPorts(c.UDPPorts, true)
		if len(out) > len(text) {
			t.Fatalf("formatPorts grew %q (%d) to %q (%d)", text, len(text), out, len(out))
		}
		back, _, _ := Parse("t", strings.NewReader(`UDP_PORTS="`+out+`"`))
		if !cmp.Equal(c.UDPPorts, back.UDPPorts, cmpopts.EquateEmpty()) {
			t.Fatalf("%q -> %v, written %q -> %v", text, c.UDPPorts, out, back.UDPPorts)
		}
	})
}

// valueText draws a string a value may hold: anything but a double quote or a control
// character other than tab, favouring the characters most likely to confuse a parser.
func valueText(t *rapid.T, label string) string {
	r := rapid.OneOf(rapid.RuneFrom([]rune(" \t#=,-$'\\/aZ09é€😀")), rapid.RuneFrom(nil, unicode.PrintRanges...))
	return string(rapid.SliceOfN(r.Filter(func(r rune) bool { return r != '"' }), 0, 30).Draw(t, label))
}

func portList(t *rapid.T, label string) []uint16 {
	text := portListText(t)
	c, _, _ := Parse("t", strings.NewReader(`TCP_PORTS="`+text+`"`))
	if rapid.Bool().Draw(t, label+" shuffled") { // also lists no text would give in this order
		return rapid.Permutation(c.TCPPorts).Draw(t, label)
	}
	return c.TCPPorts
}

func genConfig(t *rapid.T) *Config {
	withTarget := func(label string) string {
		if rapid.Bool().Draw(t, label+" empty") {
			return ""
		}
		return valueText(t, label+" a") + "$TARGET$" + valueText(t, label+" b")
	}
	c := empty("gen")
	c.TCPPorts, c.UDPPorts = portList(t, "tcp"), portList(t, "udp")
	c.AdvancedExcludeTCP, c.AdvancedExcludeUDP = portList(t, "extcp"), portList(t, "exudp")
	c.AdvancedPortsTCP = rapid.IntRange(1, 65535).Draw(t, "advtcp")
	c.AdvancedPortsUDP = rapid.IntRange(1, 65535).Draw(t, "advudp")
	c.IgnoreFile, c.HistoryFile = valueText(t, "ignore"), valueText(t, "history")
	c.BlockedFile, c.KillRunCmd = valueText(t, "blocked"), valueText(t, "runcmd")
	c.PortBanner = valueText(t, "banner")
	c.HostsDenyFile = "/" + valueText(t, "hostsdeny")
	c.KillRoute, c.KillHostsDeny = withTarget("route"), withTarget("deny")
	c.KillRouteUndo, c.KillRunCmdUndo = withTarget("routeundo"), valueText(t, "runcmdundo")
	c.ResolveHost, c.KillRunCmdFirst = rapid.Bool().Draw(t, "resolve"), rapid.Bool().Draw(t, "first")
	c.BlockTCP = BlockLevel(rapid.IntRange(0, 2).Draw(t, "blocktcp"))
	c.BlockUDP = BlockLevel(rapid.IntRange(0, 2).Draw(t, "blockudp"))
	c.ScanTrigger = rapid.OneOf(rapid.IntRange(0, 5), rapid.IntRange(0, maxScanTrigger)).Draw(t, "trigger")
	c.CommandTimeout = time.Duration(rapid.IntRange(1, maxCommandSeconds).Draw(t, "timeout")) * time.Second
	return c
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		if errs := c.Validate(nil).Errors(); len(errs) != 0 {
			t.Fatalf("generated config is invalid: %v", errs)
		}
		roundTrip(t, c)
	})
}

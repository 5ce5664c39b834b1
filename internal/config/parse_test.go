package config

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/diag"
)

// ignoreLines compares Configs on their exported fields only.
var ignoreLines = cmpopts.IgnoreUnexported(Config{})

func diagStrings(l diag.List) []string {
	out := make([]string, 0, len(l))
	for _, d := range l {
		out = append(out, d.String())
	}
	return out
}

// parseCase: the input file "f.conf", the diagnostics expected (exact text), and the
// expected Config as a change to the Config of an empty file.
type parseCase struct {
	name  string
	in    string
	diags []string
	want  func(c *Config)
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, list, err := Parse("f.conf", strings.NewReader(tc.in))
			if d := cmp.Diff(tc.diags, diagStrings(list), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("diagnostics (-want +got):\n%s", d)
			}
			if list.HasErrors() != (err != nil) {
				t.Errorf("err = %v, but diagnostics have errors = %v", err, list.HasErrors())
			}
			if tc.want == nil {
				return
			}
			want := empty("f.conf")
			tc.want(want)
			if d := cmp.Diff(want, got, ignoreLines); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseSyntax(t *testing.T) {
	runParseCases(t, []parseCase{
		{name: "empty file", in: "", want: func(*Config) {}},
		{name: "comments and blank lines", in: "# c\n\n   \n\t# indented comment\n#TCP_PORTS=\"1\"\n", want: func(*Config) {}},
		{name: "plain", in: `TCP_PORTS="1,2"` + "\n", want: func(c *Config) { c.TCPPorts = []uint16{1, 2} }},
		{name: "no final newline", in: `SCAN_TRIGGER="3"`, want: func(c *Config) { c.ScanTrigger = 3 }},
		{name: "blanks around =", in: "RESOLVE_HOST = \"1\"\nSCAN_TRIGGER\t=\t\"2\"\n",
			want: func(c *Config) { c.ResolveHost = true; c.ScanTrigger = 2 }},
		{name: "indented key accepted", in: "  \tBLOCK_TCP=\"1\"\n", want: func(c *Config) { c.BlockTCP = BlockKill }},
		{name: "trailing comment", in: `BLOCK_UDP="2" # run the pager` + "\n" + `BLOCK_TCP="1"# tight` + "\n",
			want: func(c *Config) { c.BlockUDP = BlockRunCmd; c.BlockTCP = BlockKill }},
		{name: "tab and hash inside value", in: "PORT_BANNER=\"go\taway # now\"\n",
			want: func(c *Config) { c.PortBanner = "go\taway # now" }},
		{name: "value kept verbatim", in: `KILL_RUN_CMD="  /bin/x $TARGET$  "`,
			want: func(c *Config) { c.KillRunCmd = "  /bin/x $TARGET$  " }},
		{name: "BOM and CRLF", in: bom + "TCP_PORTS=\"1\"\r\n# c\r\nUDP_PORTS=\"2\"\r\n",
			want: func(c *Config) { c.TCPPorts = []uint16{1}; c.UDPPorts = []uint16{2} }},
		{name: "BOM only counts on line 1", in: "\n" + bom + `TCP_PORTS="1"`,
			diags: []string{`f.conf:2: warning: line not understood, ignored: "\ufeffTCP_PORTS=\"1\""`},
			want:  func(*Config) {}},
		{name: "missing = after a blank is accepted", in: `SCAN_TRIGGER "4"`,
			diags: []string{"f.conf:1: warning: missing '=' between SCAN_TRIGGER and its value (accepted)"},
			want:  func(c *Config) { c.ScanTrigger = 4 }},
		{name: "missing = and blank", in: `SCAN_TRIGGER"4"`,
			diags: []string{"f.conf:1: error: missing '=' between SCAN_TRIGGER and its value"}},
		{name: "quotes missing", in: "\n" + `TCP_PORTS=1,2,3`,
			diags: []string{"f.conf:2: error: Quotes missing from TCP_PORTS token"}},
		{name: "quotes missing, key alone", in: "TCP_PORTS\n",
			diags: []string{"f.conf:1: error: Quotes missing from TCP_PORTS token"}},
		{name: "quotes missing, empty after =", in: "TCP_PORTS=  \n",
			diags: []string{"f.conf:1: error: Quotes missing from TCP_PORTS token"}},
		{name: "opening quote missing", in: `TCP_PORTS=1,2"`,
			diags: []string{`f.conf:1: error: Quotes missing from TCP_PORTS token: the value must follow '=' in double quotes`}},
		{name: "closing quote missing", in: `TCP_PORTS="1,2`,
			diags: []string{"f.conf:1: error: Quotes missing from TCP_PORTS token: no closing quote"}},
		{name: "text after closing quote", in: `KILL_RUN_CMD="echo "hi""`,
			diags: []string{`f.conf:1: error: KILL_RUN_CMD: unexpected text after the closing quote: "hi\"\"" (a value cannot hold a double quote)`}},
		{name: "control character", in: "PORT_BANNER=\"a\x07b\"",
			diags: []string{`f.conf:1: error: PORT_BANNER: value contains control character '\a'`}},
		{name: "lone CR inside the line", in: "PORT_BANNER=\"a\rb\"\n",
			diags: []string{`f.conf:1: error: PORT_BANNER: value contains control character '\r'`}},
		{name: "line numbers count every line", in: "# 1\n\n#3\nBLOCK_TCP=\"9\"\n",
			diags: []string{`f.conf:4: error: BLOCK_TCP must be "0" (log only), "1" (block) or "2" (run KILL_RUN_CMD only), not "9"`}},
	})
}

func TestParseKeys(t *testing.T) {
	runParseCases(t, []parseCase{
		{name: "duplicate: first wins, both lines named",
			in: "SCAN_TRIGGER=\"1\"\n#\nSCAN_TRIGGER=\"5\"\n",
			diags: []string{"f.conf:3: warning: SCAN_TRIGGER is set twice, on line 1 and line 3: " +
				"the first (line 1) is used, line 3 is ignored"},
			want: func(c *Config) { c.ScanTrigger = 1 }},
		{name: "duplicate with bad value is not interpreted",
			in: "BLOCK_TCP=\"1\"\nBLOCK_TCP=\"x\"\n",
			diags: []string{"f.conf:2: warning: BLOCK_TCP is set twice, on line 1 and line 2: " +
				"the first (line 1) is used, line 2 is ignored"},
			want: func(c *Config) { c.BlockTCP = BlockKill }},
		{name: "broken first line still wins",
			in: "BLOCK_TCP=1\nBLOCK_TCP=\"1\"\n",
			diags: []string{"f.conf:1: error: Quotes missing from BLOCK_TCP token",
				"f.conf:2: warning: BLOCK_TCP is set twice, on line 1 and line 2: " +
					"the first (line 1) is used, line 2 is ignored"},
			want: func(*Config) {}},
		{name: "unknown key", in: `FOO="1"`,
			diags: []string{"f.conf:1: warning: unknown key FOO ignored"}, want: func(*Config) {}},
		{name: "lower case key", in: `tcp_ports="1"`,
			diags: []string{"f.conf:1: warning: unknown key tcp_ports ignored (keys are upper case: TCP_PORTS)"},
			want:  func(*Config) {}},
		{name: "exact names, no substring match", in: "TCP_PORTS_OLD=\"1\"\nXTCP_PORTS=\"2\"\n",
			diags: []string{"f.conf:1: warning: unknown key TCP_PORTS_OLD ignored",
				"f.conf:2: warning: unknown key XTCP_PORTS ignored (did you mean TCP_PORTS?)"},
			want: func(*Config) {}},
		{name: "typo", in: "BLOCK_TPC=\"1\"\nKILL_RUN_COMMAND=\"x\"\nresolve_hots=\"1\"\n",
			diags: []string{"f.conf:1: warning: unknown key BLOCK_TPC ignored (did you mean BLOCK_TCP?)",
				"f.conf:2: warning: unknown key KILL_RUN_COMMAND ignored",
				"f.conf:3: warning: unknown key resolve_hots ignored (did you mean RESOLVE_HOST?)"},
			want: func(*Config) {}},
		{name: "junk line", in: "=oops\n",
			diags: []string{`f.conf:1: warning: line not understood, ignored: "=oops"`}, want: func(*Config) {}},
		{name: "junk line quoted short",
			in:    "-" + strings.Repeat("x", 100),
			diags: []string{`f.conf:1: warning: line not understood, ignored: "-` + strings.Repeat("x", 39) + `"...`},
			want:  func(*Config) {}},
		{name: "strings", in: "IGNORE_FILE=\"/i\"\nHISTORY_FILE=\"/h\"\nBLOCKED_FILE=\"/b\"\nKILL_RUN_CMD=\"/p $TARGET$ $PORT$ $MODE$\"\nPORT_BANNER=\"go away\"\nHOSTS_DENY_FILE=\"/tmp/deny\"\n",
			want: func(c *Config) {
				c.IgnoreFile, c.HistoryFile, c.BlockedFile = "/i", "/h", "/b"
				c.KillRunCmd, c.PortBanner, c.HostsDenyFile = "/p $TARGET$ $PORT$ $MODE$", "go away", "/tmp/deny"
			}},
		{name: "kill actions need $TARGET$",
			in: "KILL_ROUTE=\"/sbin/route add -host reject\"\nKILL_HOSTS_DENY=\"ALL: $target$\"\nKILL_ROUTE=\"x\"\n",
			diags: []string{"f.conf:1: error: KILL_ROUTE must contain $TARGET$ (replaced by the attacker's address)",
				"f.conf:2: error: KILL_HOSTS_DENY must contain $TARGET$ (replaced by the attacker's address)",
				"f.conf:3: warning: KILL_ROUTE is set twice, on line 1 and line 3: the first (line 1) is used, line 3 is ignored"}},
		{name: "$TARGET$ needs both dollars", in: `KILL_HOSTS_DENY="ALL: $TARGET"`,
			diags: []string{"f.conf:1: error: KILL_HOSTS_DENY must contain $TARGET$ (replaced by the attacker's address)"}},
		{name: "kill actions with $TARGET$, or empty",
			in:   "KILL_ROUTE=\"/sbin/ip route add blackhole $TARGET$\"\nKILL_HOSTS_DENY=\"\"\n",
			want: func(c *Config) { c.KillRoute = "/sbin/ip route add blackhole $TARGET$" }},
		{name: "empty HOSTS_DENY_FILE", in: `HOSTS_DENY_FILE=""`,
			diags: []string{"f.conf:1: error: HOSTS_DENY_FILE must not be empty (leave it out to use /etc/hosts.deny)"}},
	})
}

func TestParseNumbers(t *testing.T) {
	blockMsg := `must be "0" (log only), "1" (block) or "2" (run KILL_RUN_CMD only), not `
	runParseCases(t, []parseCase{
		{name: "valid", in: "BLOCK_TCP=\"2\"\nBLOCK_UDP=\" 1 \"\nRESOLVE_HOST=\"1\"\nKILL_RUN_CMD_FIRST=\"1\"\n" +
			"SCAN_TRIGGER=\"007\"\nADVANCED_PORTS_TCP=\"65535\"\nADVANCED_PORTS_UDP=\"1\"\nKILL_CMD_TIMEOUT=\"3600\"\n",
			want: func(c *Config) {
				c.BlockTCP, c.BlockUDP, c.ResolveHost, c.KillRunCmdFirst = BlockRunCmd, BlockKill, true, true
				c.ScanTrigger, c.AdvancedPortsTCP, c.AdvancedPortsUDP = 7, 65535, 1
				c.CommandTimeout = time.Hour
			}},
		{name: "zeros", in: "RESOLVE_HOST=\"0\"\nKILL_RUN_CMD_FIRST=\"0\"\nBLOCK_TCP=\"0\"\nSCAN_TRIGGER=\"0\"\n",
			want: func(*Config) {}},
		{name: "BLOCK out of range", in: "BLOCK_TCP=\"3\"\nBLOCK_UDP=\"-1\"\nBLOCK_TCP=\"\"\n",
			diags: []string{`f.conf:1: error: BLOCK_TCP ` + blockMsg + `"3"`, `f.conf:2: error: BLOCK_UDP ` + blockMsg + `"-1"`,
				"f.conf:3: warning: BLOCK_TCP is set twice, on line 1 and line 3: the first (line 1) is used, line 3 is ignored"}},
		{name: "BLOCK empty", in: `BLOCK_UDP=""`, diags: []string{`f.conf:1: error: BLOCK_UDP ` + blockMsg + `""`}},
		{name: "booleans", in: "RESOLVE_HOST=\"yes\"\nKILL_RUN_CMD_FIRST=\"2\"\n",
			diags: []string{`f.conf:1: error: RESOLVE_HOST must be "0" (off) or "1" (on), not "yes"`,
				`f.conf:2: error: KILL_RUN_CMD_FIRST must be "0" (off) or "1" (on), not "2"`}},
		{name: "SCAN_TRIGGER", in: "SCAN_TRIGGER=\"-1\"\n",
			diags: []string{`f.conf:1: error: SCAN_TRIGGER must be a whole number, 0 or more, not "-1"`}},
		{name: "SCAN_TRIGGER overflow", in: "SCAN_TRIGGER=\"99999999999999999999999\"\n",
			diags: []string{`f.conf:1: error: SCAN_TRIGGER must be a whole number, 0 or more, not "99999999999999999999999"`}},
		{name: "SCAN_TRIGGER largest", in: "SCAN_TRIGGER=\"2147483647\"\n", want: func(c *Config) { c.ScanTrigger = 1<<31 - 1 }},
		{name: "ADVANCED_PORTS", in: "ADVANCED_PORTS_TCP=\"0\"\nADVANCED_PORTS_UDP=\"65536\"\n",
			diags: []string{`f.conf:1: error: ADVANCED_PORTS_TCP must be a number from 1 to 65535, not "0"`,
				`f.conf:2: error: ADVANCED_PORTS_UDP must be a number from 1 to 65535, not "65536"`}},
		{name: "ADVANCED_PORTS not a number", in: `ADVANCED_PORTS_TCP="1e3"`,
			diags: []string{`f.conf:1: error: ADVANCED_PORTS_TCP must be a number from 1 to 65535, not "1e3"`}},
		{name: "KILL_CMD_TIMEOUT", in: "KILL_CMD_TIMEOUT=\"0\"\n",
			diags: []string{`f.conf:1: error: KILL_CMD_TIMEOUT must be a number of seconds from 1 to 3600, not "0"`}},
		{name: "KILL_CMD_TIMEOUT too long", in: "KILL_CMD_TIMEOUT=\"3601\"\n",
			diags: []string{`f.conf:1: error: KILL_CMD_TIMEOUT must be a number of seconds from 1 to 3600, not "3601"`}},
		{name: "KILL_CMD_TIMEOUT unit not accepted", in: "KILL_CMD_TIMEOUT=\"5s\"\n",
			diags: []string{`f.conf:1: error: KILL_CMD_TIMEOUT must be a number of seconds from 1 to 3600, not "5s"`}},
	})
}

func TestParsePortLists(t *testing.T) {
	hundred := make([]string, 100)
	want100 := make([]uint16, 100)
	for i := range hundred {
		hundred[i] = strings.Repeat(" ", i%2) + strconv.Itoa(1000+i)
		want100[i] = uint16(1000 + i)
	}
	runParseCases(t, []parseCase{
		{name: "blanks around entries", in: "TCP_PORTS=\" 1 ,\t2,3 \"", want: func(c *Config) { c.TCPPorts = []uint16{1, 2, 3} }},
		{name: "ranges inclusive", in: `UDP_PORTS="10-12,5,7 - 8,9-9"`,
			want: func(c *Config) { c.UDPPorts = []uint16{10, 11, 12, 5, 7, 8, 9} }},
		{name: "duplicates removed, order kept", in: `TCP_PORTS="80,1-3,2,80,443"`,
			want: func(c *Config) { c.TCPPorts = []uint16{80, 1, 2, 3, 443} }},
		{name: "extremes", in: `ADVANCED_EXCLUDE_TCP="65535,1"`,
			want: func(c *Config) { c.AdvancedExcludeTCP = []uint16{65535, 1} }},
		{name: "full range", in: `ADVANCED_EXCLUDE_UDP="1-65535"`,
			want: func(c *Config) {
				c.AdvancedExcludeUDP = make([]uint16, 65535)
				for i := range c.AdvancedExcludeUDP {
					c.AdvancedExcludeUDP[i] = uint16(i + 1)
				}
			}},
		{name: "no 64 entry cap", in: `TCP_PORTS="` + strings.Join(hundred, ",") + `"`,
			want: func(c *Config) { c.TCPPorts = want100 }},
		{name: "empty value", in: `TCP_PORTS=""` + "\n" + `UDP_PORTS="  "`, want: func(*Config) {}},
		{name: "trailing comma tolerated", in: `TCP_PORTS="1,2,"`,
			diags: []string{"f.conf:1: warning: TCP_PORTS: 1 empty entries in the port list ignored (stray comma?)"},
			want:  func(c *Config) { c.TCPPorts = []uint16{1, 2} }},
		{name: "empty entries counted", in: `UDP_PORTS=",1,,2, ,"`,
			diags: []string{"f.conf:1: warning: UDP_PORTS: 4 empty entries in the port list ignored (stray comma?)"},
			want:  func(c *Config) { c.UDPPorts = []uint16{1, 2} }},
		{name: "port 0", in: `TCP_PORTS="0,1"`,
			diags: []string{"f.conf:1: error: TCP_PORTS: port 0 is not a port: ports are 1-65535"}},
		{name: "port 0 in range", in: `TCP_PORTS="0-5"`,
			diags: []string{`f.conf:1: error: TCP_PORTS: port 0 in "0-5" is not a port: ports are 1-65535`}},
		{name: "too big", in: `UDP_PORTS="65536,1-99999999999999999999999"`,
			diags: []string{`f.conf:1: error: UDP_PORTS: port "65536" is out of range: ports are 1-65535`,
				`f.conf:1: error: UDP_PORTS: port "99999999999999999999999" in "1-99999999999999999999999" is out of range: ports are 1-65535`}},
		{name: "backwards range", in: `TCP_PORTS="10-5,6-5"`,
			diags: []string{`f.conf:1: error: TCP_PORTS: range "10-5" runs backwards (write 5-10)`,
				`f.conf:1: error: TCP_PORTS: range "6-5" runs backwards (write 5-6)`}},
		{name: "not numbers", in: `ADVANCED_EXCLUDE_TCP="ssh,-5,5-,+5,1-2-3,1 2"`,
			diags: []string{
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "ssh": want a port 1-65535 or a range like 1-1024`,
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "-5": want a port 1-65535 or a range like 1-1024`,
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "5-": want a port 1-65535 or a range like 1-1024`,
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "+5": want a port 1-65535 or a range like 1-1024`,
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "1-2-3": want a port 1-65535 or a range like 1-1024`,
				`f.conf:1: error: ADVANCED_EXCLUDE_TCP: bad port entry "1 2": want a port 1-65535 or a range like 1-1024`,
			}},
		{name: "bad entries capped", in: `TCP_PORTS="` + strings.Repeat("x,", 12) + `1"`,
			diags: append(repeat(`f.conf:1: error: TCP_PORTS: bad port entry "x": want a port 1-65535 or a range like 1-1024`, 10),
				"f.conf:1: error: TCP_PORTS: 2 more bad entries not shown")},
	})
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestParseLongLines(t *testing.T) {
	pad := func(n int) string { return "# " + strings.Repeat("x", n-2) }
	in := pad(maxLineLen) + "\n" + // exactly at the limit: fine
		pad(maxLineLen+1) + "\r\n" + // one over: error, CRLF not counted either way
		pad(10*maxLineLen) + "\n" + // far over: error, no crash
		"SCAN_TRIGGER=\"2\"\n" + // parsing goes on after
		pad(maxLineLen+1) // over, at end of file without newline
	runParseCases(t, []parseCase{{name: "long lines", in: in,
		diags: []string{"f.conf:2: error: line is longer than 65536 bytes; skipped",
			"f.conf:3: error: line is longer than 65536 bytes; skipped",
			"f.conf:5: error: line is longer than 65536 bytes; skipped"},
		want: func(c *Config) { c.ScanTrigger = 2 }}})

	crlf := pad(maxLineLen) + "\r\nSCAN_TRIGGER=\"1\"\r\n"
	runParseCases(t, []parseCase{{name: "limit excludes CRLF", in: crlf, want: func(c *Config) { c.ScanTrigger = 1 }}})
}

// endlessLine is a reader of one huge line, made up as it is read.
type endlessLine struct{ left int }

func (r *endlessLine) Read(b []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(b), r.left)
	for i := range n {
		b[i] = 'x'
	}
	r.left -= n
	return n, nil
}

// A huge line costs about one line's worth of memory, not its own size.
func TestParseHugeLineMemory(t *testing.T) {
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, list, _ := Parse("f.conf", &endlessLine{left: size})
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 8*maxLineLen {
		t.Errorf("parsing a %d byte line allocated %d bytes", size, got)
	}
	if want := []string{"f.conf:1: error: line is longer than 65536 bytes; skipped"}; !cmp.Equal(want, diagStrings(list)) {
		t.Errorf("diagnostics = %v", list)
	}
}

func TestLineOfKey(t *testing.T) {
	c, _, err := Parse("f.conf", strings.NewReader("#\nBLOCK_TCP=\"1\"\n  SCAN_TRIGGER = \"0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"BLOCK_TCP": 2, "SCAN_TRIGGER": 3, "TCP_PORTS": 0} {
		if got := c.Line(key); got != want {
			t.Errorf("Line(%s) = %d, want %d", key, got, want)
		}
	}
	if c.Source != "f.conf" {
		t.Errorf("Source = %q", c.Source)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.conf")
	if _, _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v, want ErrNotExist naming the path", err)
	}
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load(directory) error = %v, want an error naming the path", err)
	}

	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("FOO=\"1\"\nTCP_PORTS=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, list, err := Load(bad)
	var errs diag.List
	if !errors.As(err, &errs) {
		t.Fatalf("Load(bad) error = %v (%T), want a diag.List", err, err)
	}
	wantErrs := []string{bad + ":2: error: Quotes missing from TCP_PORTS token"}
	if d := cmp.Diff(wantErrs, diagStrings(errs)); d != "" {
		t.Errorf("error list (-want +got):\n%s", d)
	}
	if len(list) != 2 || c == nil || c.Source != bad {
		t.Errorf("Load(bad) = %v, %v: want the partial config and both diagnostics", c, list)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseReadError(t *testing.T) {
	c, _, err := Parse("f.conf", failingReader{})
	if c != nil || err == nil || !strings.Contains(err.Error(), "f.conf") || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Parse(failing reader) = %v, %v; want nil and an error naming the file", c, err)
	}
}

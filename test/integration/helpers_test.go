package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// Timeouts. Everything happens between two namespaces on one machine: these are bounds
// for a loaded CI box, not expected durations.
const (
	readyTimeout = 15 * time.Second // daemon start until "now active and listening"
	eventTimeout = 10 * time.Second // a hit until its log line / file line / route
	dialTimeout  = 2 * time.Second  // a connect that should succeed
	blockedDial  = time.Second      // a connect that should fail (blackholed)
)

// Ready is the line both daemons log once listening.
const Ready = "adminalert: PortSentry is now active and listening."

// killRoute is the KILL_ROUTE used everywhere: a real route in the defended namespace.
const killRoute = "/sbin/ip route add blackhole $TARGET$"

// files are the paths a daemon run writes, all in one temp dir.
type files struct {
	Dir       string
	Conf      string // portsentry.conf
	Ignore    string
	History   string
	Blocked   string // BLOCKED_FILE (the daemon appends "."+mode)
	HostsDeny string // HOSTS_DENY_FILE (ours); classic's is Classic.HostsDeny
	CmdOut    string // where KILL_RUN_CMD appends
}

func newFiles(t *testing.T) files {
	dir := t.TempDir()
	return files{
		Dir:       dir,
		Conf:      filepath.Join(dir, "portsentry.conf"),
		Ignore:    filepath.Join(dir, "portsentry.ignore"),
		History:   filepath.Join(dir, "portsentry.history"),
		Blocked:   filepath.Join(dir, "portsentry.blocked"),
		HostsDeny: filepath.Join(dir, "hosts.deny"),
		CmdOut:    filepath.Join(dir, "cmd.out"),
	}
}

// settings are the settings every test uses: Debian's file with all paths in the temp
// dir, log-only blocking and no trigger, then extra (later ones override earlier ones).
func (f files) settings(extra ...testnet.Setting) []testnet.Setting {
	base := []testnet.Setting{
		{Key: "IGNORE_FILE", Value: f.Ignore},
		{Key: "HISTORY_FILE", Value: f.History},
		{Key: "BLOCKED_FILE", Value: f.Blocked},
		{Key: "BLOCK_TCP", Value: "0"},
		{Key: "BLOCK_UDP", Value: "0"},
		{Key: "SCAN_TRIGGER", Value: "0"},
		{Key: "HOSTS_DENY_FILE", Value: f.HostsDeny},
		{Key: "KILL_CMD_TIMEOUT", Value: "10"},
		{Key: "CONTROL_SOCKET", Value: filepath.Join(f.Dir, "control.sock")},
	}
	return append(base, extra...)
}

// blocking are the settings of a fully blocking daemon: route, hosts.deny and command.
func (f files) blocking() []testnet.Setting {
	return []testnet.Setting{
		{Key: "BLOCK_TCP", Value: "1"},
		{Key: "BLOCK_UDP", Value: "1"},
		{Key: "KILL_ROUTE", Value: killRoute},
		{Key: "KILL_HOSTS_DENY", Value: "ALL: $TARGET$ : DENY"},
		{Key: "KILL_RUN_CMD", Value: "/bin/echo $TARGET$ $PORT$ $MODE$ >> " + f.CmdOut},
	}
}

// denyHost is a host as KILL_HOSTS_DENY writes it: an IPv6 address in brackets, the
// form tcp_wrappers matches.
func denyHost(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// write writes the config (Debian's shipped file with settings applied) and the ignore
// file (Debian's static entries plus extra lines).
func (f files) write(t *testing.T, ignoreExtra []string, settings ...testnet.Setting) string {
	t.Helper()
	conf := testnet.DebianConfig(t, f.settings(settings...)...)
	writeFile(t, f.Conf, conf)
	writeFile(t, f.Ignore, strings.Join(append([]string{"127.0.0.1/32", "0.0.0.0"}, ignoreExtra...), "\n")+"\n")
	return conf
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startOurs starts our daemon in the defended namespace with f.Conf and the modes
// ("tcp", "udp", ...) and waits until it is listening.
func startOurs(t *testing.T, p *testnet.Pair, f files, modes ...string) *testnet.Daemon {
	t.Helper()
	needDaemon(t)
	args := []string{"-c", f.Conf}
	for _, m := range modes {
		args = append(args, "-"+m)
	}
	d := p.Start(t, p.Defended, daemonBin, args...)
	d.WaitFor(t, Ready, readyTimeout)
	return d
}

// messageRE finds the classic message in a log line, whatever our logger puts before it.
var messageRE = regexp.MustCompile(`(?:attackalert|adminalert|securityalert): .*$`)

// messages returns the classic messages in lines (lines without one are dropped).
func messages(lines []string) []string {
	var out []string
	for _, l := range lines {
		if m := messageRE.FindString(l); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// waitMsg waits for a log line ending in exactly msg (after mark).
func waitMsg(t *testing.T, l *testnet.Log, mark int, msg string) {
	t.Helper()
	l.WaitForSince(t, mark, func(s string) bool { return strings.HasSuffix(s, msg) }, eventTimeout)
}

// hasMsg reports whether some line (after mark) ends in exactly msg.
func hasMsg(l *testnet.Log, mark int, msg string) bool {
	return len(l.Matching(mark, func(s string) bool { return strings.HasSuffix(s, msg) })) > 0
}

// connectMsg is the classic detection line of the connect modes.
func connectMsg(host netip.Addr, proto string, port int) string {
	return fmt.Sprintf("attackalert: Connect from host: %s/%s to %s port: %d", host, host, proto, port)
}

// historyRE is SPEC §6: "%ld - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked".
var historyRE = regexp.MustCompile(`^(\d+) - (\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) Host: ([^/ ]+)/([^/ ]+) Port: (\d+) (TCP|UDP) Blocked$`)

// record is one parsed history or blocked-file line.
type record struct {
	Name, Addr string
	Port       int
	Proto      string
}

// parseRecords parses history-format lines, failing the test on a malformed one. It also
// checks that the epoch and the local date/time fields agree.
func parseRecords(t *testing.T, lines []string) []record {
	t.Helper()
	var out []record
	for _, l := range lines {
		m := historyRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line does not match the history format %s:\n%q", historyRE, l)
			continue
		}
		epoch, _ := strconv.ParseInt(m[1], 10, 64)
		if want := time.Unix(epoch, 0).Local().Format("01/02/2006 15:04:05"); m[2] != want {
			t.Errorf("history line %q: date/time %s does not match epoch %d (%s)", l, m[2], epoch, want)
		}
		port, _ := strconv.Atoi(m[5])
		out = append(out, record{Name: m[3], Addr: m[4], Port: port, Proto: m[6]})
	}
	return out
}

// stripTime removes the epoch and date/time fields of history-format lines, keeping
// "Host: ... Blocked"; a line of another shape is kept whole, so a diff shows it.
func stripTime(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if m := historyRE.FindStringSubmatch(l); m != nil {
			l = l[strings.Index(l, "Host: "):]
		}
		out = append(out, l)
	}
	return out
}

// waitLines waits until the file has at least n lines and returns them.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	testnet.Eventually(t, eventTimeout, func() (bool, string) {
		lines = testnet.ReadLines(path)
		return len(lines) >= n, fmt.Sprintf("%s has %d lines, want %d:\n%s", path, len(lines), n, strings.Join(lines, "\n"))
	})
	return lines
}

// blackholes returns the blackhole routes of the defended namespace (IPv4 and IPv6),
// one destination per entry.
func blackholes(t *testing.T, p *testnet.Pair) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(p.Run(t, p.Defended, "ip", fam, "route", "show", "type", "blackhole"), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "blackhole" {
				out = append(out, f[1])
			}
		}
	}
	return out
}

// isRefused reports whether err is a refused TCP connection (nothing listening).
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// portState tries one TCP connection from the scanner and says "open", "refused" or
// "error: ...".
func portState(p *testnet.Pair, from netip.Addr, to netip.Addr, port int) string {
	c, err := testnet.Dial(p.Scanner, "tcp", from, netip.AddrPortFrom(to, uint16(port)), dialTimeout)
	switch {
	case err == nil:
		c.Close()
		return "open"
	case isRefused(err):
		return "refused"
	}
	return "error: " + err.Error()
}

// hit makes one full TCP connection (a connect-mode hit) and fails the test if it
// cannot. It returns what the server sent before closing.
func hit(t *testing.T, p *testnet.Pair, from, to netip.Addr, port int) string {
	t.Helper()
	got, err := testnet.Connect(p.Scanner, from, netip.AddrPortFrom(to, uint16(port)), dialTimeout)
	if err != nil {
		t.Fatalf("connect %v -> [%v]:%d: %v", from, to, port, err)
	}
	return got
}

// sendUDP sends one datagram from the scanner and fails the test if it cannot.
func sendUDP(t *testing.T, p *testnet.Pair, from, to netip.Addr, port int) {
	t.Helper()
	if err := testnet.SendUDP(p.Scanner, from, netip.AddrPortFrom(to, uint16(port)), []byte("portsentry-test\n")); err != nil {
		t.Fatalf("udp %v -> [%v]:%d: %v", from, to, port, err)
	}
}

// nmap runs nmap from the scanner with bounded timing and returns its output.
func nmap(t *testing.T, p *testnet.Pair, args ...string) string {
	t.Helper()
	testnet.Require(t, "nmap")
	base := []string{"-n", "-Pn", "--max-retries", "0", "--max-rtt-timeout", "300ms", "--host-timeout", "30s"}
	return p.Run(t, p.Scanner, "nmap", append(base, args...)...)
}

// family returns the defended address and the scanner address of one family.
func family(p *testnet.Pair, v6 bool) (def, scan netip.Addr) {
	if v6 {
		return p.DefV6, p.ScanV6
	}
	return p.DefV4, p.ScanV4
}

// famName names a family for subtests.
func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// firstHitPort waits for the first connect-mode detection of host and returns its port,
// failing the test if it is not one of ports.
func firstHitPort(t *testing.T, l *testnet.Log, host netip.Addr, proto string, ports ...int) int {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("attackalert: Connect from host: %s/%s to %s port: ", host, host, proto)) + `(\d+)$`)
	m := re.FindStringSubmatch(l.WaitFor(t, re, eventTimeout))
	port, _ := strconv.Atoi(m[1])
	if !slices.Contains(ports, port) {
		t.Fatalf("first detection of %s on port %d, not one of the scanned %v", host, port, ports)
	}
	return port
}

// actingPort waits for the history line of host and returns its port, failing the test
// if it is not one of ports. With several near-simultaneous hits the daemon may take
// them in any order; the history says which one acted.
func actingPort(t *testing.T, history string, host netip.Addr, ports ...int) int {
	t.Helper()
	for _, r := range parseRecords(t, waitLines(t, history, 1)) {
		if r.Addr == host.String() {
			if !slices.Contains(ports, r.Port) {
				t.Fatalf("%s recorded on port %d, not one of the scanned %v", host, r.Port, ports)
			}
			return r.Port
		}
	}
	t.Fatalf("no history line for %s", host)
	return 0
}

// checkLogOrder checks that the log tells a host's story in order: its first detection
// is followed by that detection's outcome, not by "already blocked" (which would say it
// was blocked before anything was logged about it). Classic logs each detection with
// its outcome; an operator (or a log parser) reads the log top to bottom.
func checkLogOrder(t *testing.T, lines []string, host netip.Addr) {
	t.Helper()
	h := host.String()
	var mine []string
	for _, m := range attackLines(lines) {
		if strings.Contains(m, " "+h+"/") || strings.Contains(m, " "+h+" ") || strings.Contains(m, "Host: "+h+" ") {
			mine = append(mine, m)
		}
	}
	if len(mine) >= 2 && strings.HasPrefix(mine[0], "attackalert: Connect from host:") &&
		strings.HasSuffix(mine[1], "is already blocked. Ignoring") {
		t.Errorf("log order: the first detection of %s is followed by \"already blocked\"; "+
			"the detection that acted was logged later (lines of one host must stay in order):\n%s",
			h, strings.Join(mine, "\n"))
	}
}

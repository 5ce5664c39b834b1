package report

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// classicLine formats a history line the way SPEC §6 gives it (the printf format of
// classic PortSentry), independently of Record.String.
func classicLine(t time.Time, name, addr string, port int, proto string) string {
	return fmt.Sprintf("%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: %d %s Blocked",
		t.Unix(), int(t.Month()), t.Day(), t.Year(), t.Hour(), t.Minute(), t.Second(), name, addr, port, proto)
}

func TestParseLineGood(t *testing.T) {
	cases := []struct {
		line string
		want Record
	}{
		{ // Debian's binary, SPEC §6.
			"1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked",
			Record{1795535595, "11/24/2026", "15:53:15", "10.99.0.2", "10.99.0.2", 143, "TCP"},
		},
		{ // Debian's binary with RESOLVE_HOST="1", in EET (UTC+2).
			"1795539729 - 11/24/2026 19:02:09 Host: name.example/10.99.0.2 Port: 143 TCP Blocked\n",
			Record{1795539729, "11/24/2026", "19:02:09", "name.example", "10.99.0.2", 143, "TCP"},
		},
		{ // IPv6, unresolved, CRLF.
			"1795443273 - 11/23/2026 16:14:33 Host: 2001:db8:0:2::15/2001:db8:0:2::15 Port: 143 TCP Blocked\r\n",
			Record{1795443273, "11/23/2026", "16:14:33", "2001:db8:0:2::15", "2001:db8:0:2::15", 143, "TCP"},
		},
		{ // IPv6 with a name, UDP.
			"1795426443 - 11/23/2026 11:34:03 Host: v6-scanner.example/2001:db8::bad:1 Port: 161 UDP Blocked",
			Record{1795426443, "11/23/2026", "11:34:03", "v6-scanner.example", "2001:db8::bad:1", 161, "UDP"},
		},
		{ // Markup in a corrupted name is data, and a slash in the name is kept.
			`1795539737 - 11/24/2026 19:02:17 Host: <script>alert(1)</script>/10.99.0.4 Port: 6667 TCP Blocked`,
			Record{1795539737, "11/24/2026", "19:02:17", "<script>alert(1)</script>", "10.99.0.4", 6667, "TCP"},
		},
		{ // Port 0 and 65535, zero-padded fields, far west zone (UTC-12).
			"1795582800 - 11/24/2026 17:00:00 Host: a/0.0.0.0 Port: 65535 UDP Blocked",
			Record{1795582800, "11/24/2026", "17:00:00", "a", "0.0.0.0", 65535, "UDP"},
		},
		{ // An IPv6 zone.
			"1795535595 - 11/24/2026 15:53:15 Host: x/fe80::1%eth0 Port: 0 TCP Blocked",
			Record{1795535595, "11/24/2026", "15:53:15", "x", "fe80::1%eth0", 0, "TCP"},
		},
	}
	for _, c := range cases {
		got, err := ParseLine(c.line)
		if err != nil {
			t.Errorf("ParseLine(%q): %v", c.line, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseLine(%q) (-want +got):\n%s", c.line, diff)
		}
		if s := got.String(); s != strings.TrimRight(c.line, "\r\n") {
			t.Errorf("String() = %q, want the line back", s)
		}
	}
}

func TestParseLineBad(t *testing.T) {
	good := "1795535595 - 11/24/2026 15:53:15 Host: name/10.99.0.2 Port: 143 TCP Blocked"
	cases := []struct {
		line, reason string
	}{
		{"", reasonEnd},
		{"garbage", reasonEnd},
		{good[:50], reasonEnd}, // cut short by a crash
		{strings.Replace(good, "TCP", "ICMP", 1), reasonEnd},
		{strings.Replace(good, "TCP", "tcp", 1), reasonEnd},
		{strings.Replace(good, "Blocked", "Blocked ", 1), reasonEnd},
		{strings.Replace(good, "143", "70000", 1), reasonPort},
		{strings.Replace(good, "143", "0143", 1), reasonPort},
		{strings.Replace(good, "143", "", 1), reasonPort},
		{strings.Replace(good, "Port: ", "Port:", 1), reasonPort},
		{strings.Replace(good, "1795535595", "-1795535595", 1), reasonEpoch},
		{strings.Replace(good, "1795535595", "01795535595", 1), reasonEpoch},
		{strings.Replace(good, " - ", " + ", 1), reasonEpoch},
		{strings.Replace(good, "11/24/2026", "13/24/2026", 1), reasonDate},
		{strings.Replace(good, "11/24/2026", "11/31/2026", 1), reasonDate},
		{strings.Replace(good, "11/24/2026", "11-24-2026", 1), reasonDate},
		{strings.Replace(good, "15:53:15", "24:53:15", 1), reasonDate},
		{strings.Replace(good, "15:53:15", "15:53:1x", 1), reasonDate},
		{strings.Replace(good, "Host: ", "Host:", 1), reasonDate},
		{strings.Replace(good, "name/", "name_", 1), reasonHost},
		{strings.Replace(good, "name/", "/", 1), reasonName},
		{strings.Replace(good, "name/", "two words/", 1), reasonName},
		{strings.Replace(good, "name/", "tab\there/", 1), reasonName},
		{strings.Replace(good, "name/", "nul\x00/", 1), reasonName},
		{strings.Replace(good, "10.99.0.2", "10.99.0.256", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "10.99.0.02", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "10.99.0", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "10.99.0.2.", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "host.example", 1), reasonAddr},
		{strings.Replace(good, "10.99.0.2", "2001:db8::g", 1), reasonAddr},
		{strings.Replace(good, "11/24/2026", "11/25/2026", 1), reasonMismatch},
		{strings.Replace(good, "11/24/2026", "01/01/2020", 1), reasonMismatch},
	}
	for _, c := range cases {
		_, err := ParseLine(c.line)
		if err == nil {
			t.Errorf("ParseLine(%q) accepted a bad line", c.line)
			continue
		}
		if err.Error() != c.reason {
			t.Errorf("ParseLine(%q): reason %q, want %q", c.line, err, c.reason)
		}
	}
}

// TestParseLineMatchesClassicFormat: any line formatted with SPEC §6's printf format,
// in any zone, parses back to what was formatted.
func TestParseLineMatchesClassicFormat(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		epoch := rapid.Int64Range(0, 253402214400-50400).Draw(t, "epoch") // to 9999-12-31 minus 14h
		offset := rapid.IntRange(-12*4, 14*4).Draw(t, "quarterHours") * 900
		when := time.Unix(epoch, 0).In(time.FixedZone("Z", offset))
		var addr string
		if rapid.Bool().Draw(t, "v6") {
			var b [16]byte
			for i := range b {
				b[i] = rapid.Byte().Draw(t, "b")
			}
			addr = netip.AddrFrom16(b).String()
		} else {
			addr = netip.AddrFrom4([4]byte{rapid.Byte().Draw(t, "a"), rapid.Byte().Draw(t, "b"),
				rapid.Byte().Draw(t, "c"), rapid.Byte().Draw(t, "d")}).String()
		}
		name := addr
		if rapid.Bool().Draw(t, "resolved") {
			name = rapid.StringMatching(`[a-z0-9][a-z0-9.\-]{0,60}`).Draw(t, "name")
		}
		port := rapid.IntRange(0, 65535).Draw(t, "port")
		proto := rapid.SampledFrom([]string{"TCP", "UDP"}).Draw(t, "proto")
		line := classicLine(when, name, addr, port, proto)
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", line, err)
		}
		want := Record{epoch, when.Format("01/02/2006"), when.Format("15:04:05"), name, addr, uint16(port), proto}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("ParseLine(%q) (-want +got):\n%s", line, diff)
		}
	})
}

// TestParseDateCivil checks the day arithmetic against the time package.
func TestParseDateCivil(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sec := rapid.Int64Range(-62135596800, 253402300799).Draw(t, "sec") // years 1..9999
		u := time.Unix(sec, 0).UTC()
		got, ok := parseDate([]byte(u.Format("01/02/2006 15:04:05")))
		if !ok || got != sec {
			t.Fatalf("parseDate(%s) = %d, %v; want %d", u, got, ok, sec)
		}
	})
}

func TestParseLineNoAllocs(t *testing.T) {
	line := []byte("1795539729 - 11/24/2026 19:02:09 Host: name.example/10.99.0.2 Port: 143 TCP Blocked\n")
	if n := testing.AllocsPerRun(100, func() { parseLine(line) }); n != 0 {
		t.Errorf("parseLine of an IPv4 line allocates %v times", n)
	}
}

// FuzzParseLine: the parser never panics, and an accepted line formats back to itself
// (the parser only accepts the canonical text), parsing again to the same record.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"1795535595 - 11/24/2026 15:53:15 Host: 10.99.0.2/10.99.0.2 Port: 143 TCP Blocked",
		"1795539737 - 11/24/2026 19:02:17 Host: <script>alert(1)</script>/10.99.0.4 Port: 6667 TCP Blocked\n",
		"1795443273 - 11/23/2026 16:14:33 Host: 2001:db8:0:2::15/2001:db8:0:2::15 Port: 143 UDP Blocked\r\n",
		"1795535595 - 11/24/2026 15:53:15 Host: x/fe80::1%eth0 Port: 0 TCP Blocked",
		"1795535595 - 11/24/2026 15:53:15 Host: a/b/::ffff:1.2.3.4 Port: 65535 UDP Blocked",
		"1795539100 - 11/24/2026 18:51:40 Host: static-7.isp.exa",
		"0 - 01/01/1970 00:00:00 Host: a/1.1.1.1 Port: 1 TCP Blocked",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseLine(line)
		if err != nil {
			return
		}
		canon := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if s := r.String(); s != canon {
			t.Fatalf("accepted %q but it formats as %q", line, s)
		}
		again, err := ParseLine(r.String())
		if err != nil || again != r {
			t.Fatalf("re-parse of %q: %+v, %v; want %+v", r.String(), again, err, r)
		}
		if _, err := netip.ParseAddr(r.Addr); err != nil {
			t.Fatalf("accepted address %q: %v", r.Addr, err)
		}
		if r.Proto != "TCP" && r.Proto != "UDP" {
			t.Fatalf("protocol %q", r.Proto)
		}
	})
}

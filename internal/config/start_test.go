package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portsentry-go/portsentry/internal/probe"
)

func TestValidateStart(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ignore", "static-only.static"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("192.0.2.1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"dir"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tcp, stcp, atcp := probe.ModeTCP, probe.ModeSTCP, probe.ModeATCP
	// The file is an IGNORE_FILE line (D/ignore unless said otherwise, D standing for
	// dir), the case's lines, then base.
	const base = "TCP_PORTS=\"1\"\nHISTORY_FILE=\"/h\"\nBLOCKED_FILE=\"/b\"\n"
	for _, tc := range []struct {
		name   string
		file   string // after the IGNORE_FILE line
		ignore string // IGNORE_FILE's value instead of D/ignore
		modes  []probe.Mode
		reload bool
		want   []string
	}{
		{name: "nothing to say", file: `DASHBOARD="127.0.0.1:9117"` + "\n" + `INTERFACES="lo"`, modes: []probe.Mode{tcp, stcp}},
		{name: "loopback dashboards", modes: []probe.Mode{tcp},
			file: `DASHBOARD="[::1]:1"`},
		{name: "localhost", modes: []probe.Mode{tcp}, file: `DASHBOARD="LocalHost:65535"`},
		{name: "IPv4-mapped loopback", modes: []probe.Mode{tcp}, file: `DASHBOARD="[::ffff:127.0.0.9]:80"`},
		{name: "remote dashboard without the key that allows it", file: "\n" + `DASHBOARD="0.0.0.0:9117"`,
			want: []string{`s.conf:3: error: DASHBOARD "0.0.0.0:9117" listens on 0.0.0.0, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that, or use 127.0.0.1`}},
		{name: "every interface", file: `DASHBOARD=":9117"`, modes: []probe.Mode{tcp},
			want: []string{`s.conf:2: error: DASHBOARD ":9117" listens on every interface, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that, or use 127.0.0.1`}},
		{name: "a name is not loopback", file: `DASHBOARD="portsentry.example:9117"`,
			want: []string{`s.conf:2: error: DASHBOARD "portsentry.example:9117" listens on portsentry.example, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that, or use 127.0.0.1`}},
		{name: "remote dashboard allowed", file: `DASHBOARD="[::]:9117"` + "\n" + `DASHBOARD_ALLOW_REMOTE="1"`},
		{name: "missing interface", file: `INTERFACES="lo, nonexist0,"`, modes: []probe.Mode{tcp, stcp, atcp},
			want: []string{`s.conf:2: error: INTERFACES names "nonexist0", which is not an interface of this host: -stcp, -atcp cannot capture on it (leave INTERFACES empty to capture on every interface)`}},
		{name: "missing interface on reload", file: `INTERFACES="nonexist0"`, modes: []probe.Mode{stcp}, reload: true,
			want: []string{`s.conf:2: warning: INTERFACES names "nonexist0", which is not an interface of this host: -stcp would not start with it (the running daemon goes on capturing where it started)`}},
		{name: "interfaces do not matter to the connect modes", file: `INTERFACES="nonexist0"`, modes: []probe.Mode{tcp}},
		{name: "no ignore file at all", ignore: "D/none", modes: []probe.Mode{tcp},
			want: []string{"s.conf:1: warning: IGNORE_FILE: neither D/none nor D/none.static exists: only this host's own addresses, gateways and resolvers are ignored"}},
		{name: "only the static file (Debian's layout)", ignore: "D/static-only"},
		// A directory exists: it is refused when it is read (daemon.LoadIgnore).
		{name: "ignore file is a directory", ignore: "D/dir", reload: true},
		{name: "no IGNORE_FILE", ignore: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ignore := filepath.Join(dir, "ignore")
			switch tc.ignore {
			case "":
			case "-":
				ignore = ""
			default:
				ignore = strings.Replace(tc.ignore, "D", dir, 1)
			}
			text := `IGNORE_FILE="` + ignore + `"` + "\n" + tc.file + "\n" + base
			c, _, err := Parse("s.conf", strings.NewReader(text))
			if err != nil {
				t.Fatal(err)
			}
			check := c.ValidateStart
			if tc.reload {
				check = c.ValidateReload
			}
			var got []string
			for _, d := range check(tc.modes) {
				got = append(got, strings.ReplaceAll(d.String(), dir, "D"))
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestValidateStartHasValidate: ValidateStart reports what Validate does, and re-checks
// DASHBOARD's value rule on a config built in code.
func TestValidateStartHasValidate(t *testing.T) {
	c := Default()
	c.IgnoreFile = ""
	c.TCPPorts = nil
	c.Dashboard = "127.0.0.1:99999"
	var got []string
	for _, d := range c.ValidateStart([]probe.Mode{probe.ModeTCP}) {
		got = append(got, d.String())
	}
	want := []string{
		`built-in defaults: error: DASHBOARD must be host:port with a port from 1 to 65535, e.g. "127.0.0.1:9117", not "127.0.0.1:99999"`,
		"built-in defaults: error: TCP_PORTS is empty: no port to watch in -tcp",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParseDashboard(t *testing.T) {
	for val, ok := range map[string]bool{
		"127.0.0.1:9117": true, "[::1]:1": true, "localhost:65535": true, ":80": true, "0.0.0.0:9117": true,
		"127.0.0.1:99999": false, "127.0.0.1:0": false, "127.0.0.1": false, "127.0.0.1:http": false,
		"127.0.0.1: 80": false, "::1:80": false, "local host:80": false, "127.0.0.1:+80": false,
	} {
		c, list, err := Parse("d.conf", strings.NewReader(`DASHBOARD="`+val+`"`))
		if (err == nil) != ok {
			t.Errorf("%q: %v", val, list)
			continue
		}
		if !ok {
			if want := `d.conf:1: error: DASHBOARD must be host:port with a port from 1 to 65535, e.g. "127.0.0.1:9117", not "` + val + `"`; list[0].String() != want {
				t.Errorf("%q: %s, want %s", val, list[0], want)
			}
			if c.Dashboard != "" {
				t.Errorf("%q: kept as %q", val, c.Dashboard)
			}
		}
	}
}

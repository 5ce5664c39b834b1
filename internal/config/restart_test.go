package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPendingRestart(t *testing.T) {
	const started = `HISTORY_FILE="/var/lib/portsentry/portsentry.history"
DASHBOARD="127.0.0.1:9117"
JSON_LOG="/var/log/portsentry.json"
TCP_PORTS="1,2"
BLOCK_BACKEND="hostsdeny"
`
	for _, tc := range []struct {
		name    string
		started string // parsed as s.conf
		next    string // parsed as n.conf
		want    []string
	}{
		{name: "nothing changed", started: started, next: started},
		{name: "reloadable keys only", started: started,
			next: strings.Replace(started, `TCP_PORTS="1,2"`, `TCP_PORTS="3"`+"\nSCAN_TRIGGER=\"2\"\nBAN_TIME=\"60\"", 1)},
		{name: "restart-only keys, in the table's order", started: started,
			next: `JSON_LOG="/tmp/j"
DASHBOARD="127.0.0.1:9118"
HISTORY_FILE="/var/lib/portsentry/portsentry.history"
BLOCK_BACKEND="nftables"
CONTROL_SOCKET="/tmp/s"
`,
			want: []string{
				`BLOCK_BACKEND changed in n.conf:4: takes effect at the next restart (still "hostsdeny")`,
				`CONTROL_SOCKET changed in n.conf:5: takes effect at the next restart (still "/run/portsentry/portsentry.sock")`,
				`DASHBOARD changed in n.conf:2: takes effect at the next restart (still "127.0.0.1:9117")`,
				`JSON_LOG changed in n.conf:1: takes effect at the next restart (still "/var/log/portsentry.json")`,
			}},
		{name: "a key taken out of the file", started: started,
			next: strings.Replace(started, "JSON_LOG=\"/var/log/portsentry.json\"\n", "", 1),
			want: []string{`JSON_LOG changed in n.conf (not set there: ""): takes effect at the next restart (still "/var/log/portsentry.json")`}},
		{name: "moving the history moves the journal beside it, and the dashboard's report stays", started: started,
			next: strings.Replace(started, "/var/lib/portsentry/", "/srv/ps/", 1),
			want: []string{
				`HISTORY_FILE changed in n.conf:1: takes effect for the dashboard's /report at the next restart (still "/var/lib/portsentry/portsentry.history")`,
				`BAN_JOURNAL changed (it follows HISTORY_FILE) in n.conf:1: takes effect at the next restart (still "/var/lib/portsentry/portsentry.bans")`,
			}},
		{name: "the history without a dashboard, the journal set apart",
			started: "HISTORY_FILE=\"/a/h\"\nBAN_JOURNAL=\"/j/bans\"\n", next: "HISTORY_FILE=\"/b/h\"\nBAN_JOURNAL=\"/j/bans\"\n"},
		{name: "the journal named where it already was", started: "HISTORY_FILE=\"/a/h\"\n",
			next: "HISTORY_FILE=\"/a/h\"\nBAN_JOURNAL=\"/a/portsentry.bans\"\n"},
		{name: "HOSTS_DENY_FILE only matters to the hostsdeny backend",
			started: "HOSTS_DENY_FILE=\"/etc/hosts.deny\"\n", next: "HOSTS_DENY_FILE=\"/tmp/hosts.deny\"\n"},
		{name: "HOSTS_DENY_FILE with the hostsdeny backend",
			started: "BLOCK_BACKEND=\"hostsdeny\"\n", next: "BLOCK_BACKEND=\"hostsdeny\"\nHOSTS_DENY_FILE=\"/tmp/hosts.deny\"\n",
			want: []string{`HOSTS_DENY_FILE changed in n.conf:2: takes effect for BLOCK_BACKEND "hostsdeny" at the next restart (still "/etc/hosts.deny")`}},
		{name: "INTERFACES and the dashboard's other keys",
			started: "DASHBOARD=\"127.0.0.1:1\"\n",
			next:    "DASHBOARD=\"127.0.0.1:1\"\nINTERFACES=\"eth0\"\nDASHBOARD_ALLOW_REMOTE=\"1\"\nDASHBOARD_TOKEN_FILE=\"-\"\n",
			want: []string{
				`INTERFACES changed in n.conf:2: takes effect at the next restart (still "")`,
				`DASHBOARD_ALLOW_REMOTE changed in n.conf:3: takes effect at the next restart (still "0")`,
				`DASHBOARD_TOKEN_FILE changed in n.conf:4: takes effect at the next restart (still "/run/portsentry/dashboard.token")`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := Parse("s.conf", strings.NewReader(tc.started))
			if err != nil {
				t.Fatal(err)
			}
			n, _, err := Parse("n.conf", strings.NewReader(tc.next))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range PendingRestart(s, n) {
				got = append(got, p.String())
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("PendingRestart (-want +got):\n%s", d)
			}
		})
	}
}

// TestPendingAgainstStart: a key changed by one reload is still pending at the next,
// and no longer once the file has its start value again.
func TestPendingAgainstStart(t *testing.T) {
	parse := func(text string) *Config {
		c, _, err := Parse("p.conf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	started := parse(`JSON_LOG="/a"`)
	if got := PendingRestart(started, parse(`JSON_LOG="/b"`)); len(got) != 1 || got[0].Key != "JSON_LOG" || got[0].Old != "/a" || got[0].New != "/b" {
		t.Errorf("first reload: %v", got)
	}
	if got := PendingRestart(started, parse(`JSON_LOG="/b"`)); len(got) != 1 {
		t.Errorf("second reload of the same file: %v", got)
	}
	if got := PendingRestart(started, parse(`JSON_LOG="/a"`)); len(got) != 0 {
		t.Errorf("back to the start value: %v", got)
	}
}

func TestRestartOnly(t *testing.T) {
	want := []string{"INTERFACES", "BLOCK_BACKEND", "BAN_JOURNAL", "CONTROL_SOCKET", "DASHBOARD",
		"DASHBOARD_ALLOW_REMOTE", "DASHBOARD_TOKEN_FILE", "JSON_LOG", "FLEET_NATS", "FLEET_CREDS", "FLEET_TLS_CA",
		"FLEET_TLS_CERT", "FLEET_TLS_KEY", "FLEET_MODE", "FLEET_NAME", "FLEET_STREAM"}
	if d := cmp.Diff(want, RestartOnly()); d != "" {
		t.Errorf("RestartOnly (-want +got):\n%s", d)
	}
}

package config

import (
	"slices"
	"strings"
	"testing"
)

func TestFleetKeys(t *testing.T) {
	for _, tc := range []struct {
		conf, want string // want: part of the error; empty: none
	}{
		{`FLEET_NATS="nats://10.0.0.1:4222, tls://n2.example:4222 n3:4222"`, ""},
		{`FLEET_NATS="http://10.0.0.1:4222"`, "FLEET_NATS must list NATS server URLs"},
		{`FLEET_NATS="nats://"`, "FLEET_NATS must list NATS server URLs"},
		{`FLEET_MODE="publish"`, ""},
		{`FLEET_MODE="pub"`, "FLEET_MODE must be one of both, publish, subscribe"},
		{`FLEET_NAME="web-1_a"`, ""},
		{`FLEET_NAME="web1.example.com"`, "FLEET_NAME must be at most 64 letters"},
		{`FLEET_NAME="` + strings.Repeat("a", 65) + `"`, "FLEET_NAME must be at most 64 letters"},
		{`FLEET_STREAM="BANS.X"`, "FLEET_STREAM must be a JetStream stream name"},
		{`FLEET_STREAM=""`, "FLEET_STREAM must be a JetStream stream name"},
	} {
		_, _, err := Parse("f.conf", strings.NewReader(tc.conf+"\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.conf, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.conf, err, tc.want)
		}
	}
}

func TestFleetDefaultsAndServers(t *testing.T) {
	c, _, err := Parse("f.conf", strings.NewReader("FLEET_NATS=\"a:1,b:2  c:3\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.FleetServers(); !slices.Equal(got, []string{"a:1", "b:2", "c:3"}) {
		t.Errorf("servers %q", got)
	}
	if c.FleetMode != "both" || c.FleetStream != "PORTSENTRY_BANS" {
		t.Errorf("defaults: mode %q stream %q", c.FleetMode, c.FleetStream)
	}
	if h := c.FleetHost(); h == "" || fleetNameProblem("FLEET_NAME", h) != "" {
		t.Errorf("FleetHost %q is not a valid FLEET_NAME", h)
	}
	if got := FleetToken("web1.example.com"); got != "web1_example_com" {
		t.Errorf("FleetToken = %q", got)
	}
}

func TestFleetCertNeedsKey(t *testing.T) {
	c := Default()
	c.FleetTLSCert = "/etc/portsentry/host.pem"
	l := c.Validate(nil)
	if !l.HasErrors() || !strings.Contains(l.Errors().Error(), "FLEET_TLS_CERT and FLEET_TLS_KEY go together") {
		t.Errorf("cert without key: %v", l)
	}
	c.FleetTLSKey = "/etc/portsentry/host.key"
	if l := c.Validate(nil); l.HasErrors() {
		t.Errorf("cert and key: %v", l)
	}
}

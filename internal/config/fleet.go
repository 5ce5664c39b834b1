package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/portsentry-go/portsentry/internal/diag"
)

// Fleet defaults. FLEET_NAME has none here: unset, the host's name is used (FleetHost),
// which a written-back file must not freeze.
const (
	DefaultFleetMode   = "both"
	DefaultFleetStream = "PORTSENTRY_BANS"
)

// FleetModes are the values FLEET_MODE may take.
var FleetModes = []string{"both", "publish", "subscribe"}

// maxFleetName bounds FLEET_NAME: it is one token of every subject this host publishes.
const maxFleetName = 64

// fleetKeys are the FLEET_ keys, restart-only: the NATS connection, its credentials and
// the stream are set up once, at start.
func fleetKeys() []keySpec {
	return []keySpec{
		stringKey("FLEET_NATS", fleetNATSProblem, func(c *Config) *string { return &c.FleetNATS }).atStart(),
		stringKey("FLEET_CREDS", nil, func(c *Config) *string { return &c.FleetCreds }).atStart(),
		stringKey("FLEET_TLS_CA", nil, func(c *Config) *string { return &c.FleetTLSCA }).atStart(),
		stringKey("FLEET_TLS_CERT", nil, func(c *Config) *string { return &c.FleetTLSCert }).atStart(),
		stringKey("FLEET_TLS_KEY", nil, func(c *Config) *string { return &c.FleetTLSKey }).atStart(),
		stringKey("FLEET_MODE", fleetModeProblem, func(c *Config) *string { return &c.FleetMode }).atStart(),
		stringKey("FLEET_NAME", fleetNameProblem, func(c *Config) *string { return &c.FleetName }).atStart(),
		stringKey("FLEET_STREAM", fleetStreamProblem, func(c *Config) *string { return &c.FleetStream }).atStart(),
	}
}

// FleetServers lists FLEET_NATS's server URLs (comma or blank separated); none: the
// fleet is off.
func (c *Config) FleetServers() []string {
	return strings.FieldsFunc(c.FleetNATS, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// FleetHost is this host's name in the fleet: FLEET_NAME, or the host name with every
// character a subject token cannot hold (dots among them) turned into "_".
func (c *Config) FleetHost() string {
	if c.FleetName != "" {
		return c.FleetName
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return FleetToken(h)
}

// FleetToken turns s into a valid FLEET_NAME: letters, digits, "-" and "_" kept, any
// other character "_", cut to 64 bytes.
func FleetToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !tokenByte(c) {
			b[i] = '_'
		}
	}
	if len(b) > maxFleetName {
		b = b[:maxFleetName]
	}
	return string(b)
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func fleetNATSProblem(key, val string) string {
	c := Config{FleetNATS: val}
	for _, s := range c.FleetServers() {
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			return fmt.Sprintf(`%s must list NATS server URLs (nats://HOST:PORT, tls://HOST:PORT or HOST:PORT), comma or blank separated, not %s`, key, shown(s))
		}
	}
	return ""
}

func fleetModeProblem(key, val string) string {
	if slices.Contains(FleetModes, val) {
		return ""
	}
	return fmt.Sprintf("%s must be one of %s, not %s", key, strings.Join(FleetModes, ", "), shown(val))
}

func fleetNameProblem(key, val string) string {
	if val == "" {
		return "" // the host name
	}
	if len(val) <= maxFleetName && strings.IndexFunc(val, func(r rune) bool { return r > 0x7f || !tokenByte(byte(r)) }) < 0 {
		return ""
	}
	return fmt.Sprintf(`%s must be at most %d letters, digits, "-" or "_" (it is a NATS subject token), not %s`, key, maxFleetName, shown(val))
}

// fleetStreamProblem: JetStream refuses stream names with blanks, ".", "*", ">", "/"
// or "\".
func fleetStreamProblem(key, val string) string {
	if val != "" && len(val) <= 255 && !strings.ContainsAny(val, " \t.*>/\\") {
		return ""
	}
	return fmt.Sprintf(`%s must be a JetStream stream name (no blanks, ".", "*", ">", "/" or "\"), not %s`, key, shown(val))
}

// fleet checks what one key alone cannot: a client certificate needs its key.
func (v *validator) fleet() {
	c := v.c
	for _, kv := range [][2]string{{"FLEET_NATS", fleetNATSProblem("FLEET_NATS", c.FleetNATS)},
		{"FLEET_MODE", fleetModeProblem("FLEET_MODE", c.FleetMode)},
		{"FLEET_NAME", fleetNameProblem("FLEET_NAME", c.FleetName)},
		{"FLEET_STREAM", fleetStreamProblem("FLEET_STREAM", c.FleetStream)}} {
		if kv[1] != "" {
			v.add(diag.Error, kv[0], "%s", kv[1])
		}
	}
	if (c.FleetTLSCert == "") != (c.FleetTLSKey == "") {
		key := "FLEET_TLS_KEY"
		if c.FleetTLSCert == "" {
			key = "FLEET_TLS_CERT"
		}
		v.add(diag.Error, key, "FLEET_TLS_CERT and FLEET_TLS_KEY go together: set both or neither")
	}
}

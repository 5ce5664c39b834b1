package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// keySpec ties a key name to its field: how to read its value and how to write it back,
// and whether a reload applies it. Keeping all of it in one table is what makes WriteTo
// and Parse agree key by key, and what makes every key either reloadable or not.
type keySpec struct {
	name   string
	parse  func(p *parser, line int, val string)
	format func(c *Config) (string, error)
	// restart is set for a key that a reload does not apply (see PendingRestart);
	// nil: a reload applies it.
	restart *restartRule
}

// restartRule describes a key whose value the daemon uses once, at start: to open a
// listener, a file or the ban backend. A reload that changes it leaves the old value in
// force until the next start.
type restartRule struct {
	// when, if set, limits the rule to daemons started with such a configuration;
	// nil: always.
	when func(started *Config) bool
	// part names what keeps the old value when that is not everything the key governs
	// ("for the dashboard's /report"); empty: the whole key.
	part string
	// value is the effective value compared; nil: the value as written.
	value func(c *Config) string
	// via names the key whose line to show when the key itself is not in the file and
	// its effective value comes from that one.
	via string
}

// atStart marks k as applied at start only.
func (k keySpec) atStart() keySpec {
	k.restart = &restartRule{}
	return k
}

// atStartIf marks k as applied at start only in daemons started with a configuration
// for which when is true, and then only in part.
func (k keySpec) atStartIf(when func(started *Config) bool, part string) keySpec {
	k.restart = &restartRule{when: when, part: part}
	return k
}

const (
	maxBanSeconds     = 10 * 365 * 24 * 3600
	maxScanTrigger    = math.MaxInt32 // keeps the value portable to 32-bit counters
	maxCommandSeconds = 3600
)

// keys lists every key in the order of Debian's shipped file, then our own; WriteTo uses
// this order.
var keys = append([]keySpec{
	portsKey("TCP_PORTS", func(c *Config) *[]uint16 { return &c.TCPPorts }),
	portsKey("UDP_PORTS", func(c *Config) *[]uint16 { return &c.UDPPorts }),
	intKey("ADVANCED_PORTS_TCP", 1, 65535, "a number from 1 to 65535", func(c *Config) *int { return &c.AdvancedPortsTCP }),
	intKey("ADVANCED_PORTS_UDP", 1, 65535, "a number from 1 to 65535", func(c *Config) *int { return &c.AdvancedPortsUDP }),
	portsKey("ADVANCED_EXCLUDE_TCP", func(c *Config) *[]uint16 { return &c.AdvancedExcludeTCP }),
	portsKey("ADVANCED_EXCLUDE_UDP", func(c *Config) *[]uint16 { return &c.AdvancedExcludeUDP }),
	stringKey("IGNORE_FILE", nil, func(c *Config) *string { return &c.IgnoreFile }),
	// The history is reopened on reload; the dashboard is given its path at start.
	stringKey("HISTORY_FILE", nil, func(c *Config) *string { return &c.HistoryFile }).
		atStartIf(func(c *Config) bool { return c.Dashboard != "" }, "for the dashboard's /report"),
	stringKey("BLOCKED_FILE", nil, func(c *Config) *string { return &c.BlockedFile }),
	boolKey("RESOLVE_HOST", func(c *Config) *bool { return &c.ResolveHost }),
	blockKey("BLOCK_UDP", func(c *Config) *BlockLevel { return &c.BlockUDP }),
	blockKey("BLOCK_TCP", func(c *Config) *BlockLevel { return &c.BlockTCP }),
	stringKey("KILL_ROUTE", targetProblem, func(c *Config) *string { return &c.KillRoute }),
	stringKey("KILL_HOSTS_DENY", targetProblem, func(c *Config) *string { return &c.KillHostsDeny }),
	boolKey("KILL_RUN_CMD_FIRST", func(c *Config) *bool { return &c.KillRunCmdFirst }),
	stringKey("KILL_RUN_CMD", nil, func(c *Config) *string { return &c.KillRunCmd }),
	intKey("SCAN_TRIGGER", 0, maxScanTrigger, "a whole number, 0 or more", func(c *Config) *int { return &c.ScanTrigger }),
	stringKey("PORT_BANNER", nil, func(c *Config) *string { return &c.PortBanner }),
	// The hostsdeny backend is opened on its file at start; KILL_HOSTS_DENY follows a
	// reload.
	stringKey("HOSTS_DENY_FILE", hostsDenyFileProblem, func(c *Config) *string { return &c.HostsDenyFile }).
		atStartIf(func(c *Config) bool { return c.BlockBackend == "hostsdeny" }, `for BLOCK_BACKEND "hostsdeny"`),
	{name: "KILL_CMD_TIMEOUT", parse: parseTimeout, format: formatTimeout},
	stringKey("KILL_ROUTE_UNDO", targetProblem, func(c *Config) *string { return &c.KillRouteUndo }),
	stringKey("KILL_RUN_CMD_UNDO", nil, func(c *Config) *string { return &c.KillRunCmdUndo }),
	stringKey("INTERFACES", nil, func(c *Config) *string { return &c.Interfaces }).atStart(),
	stringKey("BLOCK_BACKEND", backendProblem, func(c *Config) *string { return &c.BlockBackend }).atStart(),
	intKey("BAN_TIME", 0, maxBanSeconds, "a number of seconds (0: permanent)", func(c *Config) *int { return &c.BanTime }),
	intKey("BAN_TIME_MAX", 0, maxBanSeconds, "a number of seconds (0: no maximum)", func(c *Config) *int { return &c.BanTimeMax }),
	intKey("BAN_RATE", 0, 1000000, "new responses per minute (0: no limit)", func(c *Config) *int { return &c.BanRate }),
	intKey("BAN_CAP", 0, 10000000, "a number of bans (0: no limit)", func(c *Config) *int { return &c.BanCap }),
	intKey("BAN_IPV6_PREFIX", 48, 128, "a prefix length from 48 to 128", func(c *Config) *int { return &c.BanIPv6Prefix }),
	// Unset, the journal lives beside HISTORY_FILE: moving that moves the journal.
	banJournalKey(),
	stringKey("CONTROL_SOCKET", nil, func(c *Config) *string { return &c.ControlSocket }).atStart(),
	boolKey("UNSPOOFABLE_ONLY", func(c *Config) *bool { return &c.UnspoofableOnly }),
	stringKey("DASHBOARD", dashboardProblem, func(c *Config) *string { return &c.Dashboard }).atStart(),
	boolKey("DASHBOARD_ALLOW_REMOTE", func(c *Config) *bool { return &c.DashboardAllowRemote }).atStart(),
	stringKey("DASHBOARD_TOKEN_FILE", nil, func(c *Config) *string { return &c.DashboardTokenFile }).atStart(),
	stringKey("JSON_LOG", nil, func(c *Config) *string { return &c.JSONLog }).atStart(),
}, fleetKeys()...)

var keyIndex = func() map[string]keySpec {
	m := make(map[string]keySpec, len(keys))
	for _, k := range keys {
		m[k.name] = k
	}
	return m
}()

func portsKey(name string, field func(*Config) *[]uint16) keySpec {
	return keySpec{
		name: name,
		parse: func(p *parser, line int, val string) {
			*field(p.cfg) = p.ports(line, name, val)
		},
		format: func(c *Config) (string, error) {
			s := formatPorts(*field(c), false)
			if len(name)+len(`=""`)+len(s) > maxLineLen {
				s = formatPorts(*field(c), true)
			}
			return s, nil
		},
	}
}

// intKey reads a decimal number in [lo, hi]; want describes the range for the error.
func intKey(name string, lo, hi int, want string, field func(*Config) *int) keySpec {
	return keySpec{
		name: name,
		parse: func(p *parser, line int, val string) {
			if v, ok := parseUint(val, lo, hi); ok {
				*field(p.cfg) = v
				return
			}
			p.errorf(line, "%s must be %s, not %s", name, want, shown(val))
		},
		format: func(c *Config) (string, error) { return strconv.Itoa(*field(c)), nil },
	}
}

func boolKey(name string, field func(*Config) *bool) keySpec {
	return keySpec{
		name: name,
		parse: func(p *parser, line int, val string) {
			v, ok := parseUint(val, 0, 1)
			if !ok {
				p.errorf(line, `%s must be "0" (off) or "1" (on), not %s`, name, shown(val))
				return
			}
			*field(p.cfg) = v == 1
		},
		format: func(c *Config) (string, error) {
			if *field(c) {
				return "1", nil
			}
			return "0", nil
		},
	}
}

func blockKey(name string, field func(*Config) *BlockLevel) keySpec {
	return keySpec{
		name: name,
		parse: func(p *parser, line int, val string) {
			v, ok := parseUint(val, int(BlockLogOnly), int(BlockRunCmd))
			if !ok {
				p.errorf(line, `%s must be "0" (log only), "1" (block) or "2" (run KILL_RUN_CMD only), not %s`,
					name, shown(val))
				return
			}
			*field(p.cfg) = BlockLevel(v)
		},
		format: func(c *Config) (string, error) { return strconv.Itoa(int(*field(c))), nil },
	}
}

// stringKey keeps the value verbatim: paths and shell commands may legitimately have
// leading or trailing blanks. check, when set, returns a problem with a non-empty value.
func stringKey(name string, check func(key, val string) string, field func(*Config) *string) keySpec {
	return keySpec{
		name: name,
		parse: func(p *parser, line int, val string) {
			if check != nil {
				if msg := check(name, val); msg != "" {
					p.errorf(line, "%s", msg)
					return
				}
			}
			*field(p.cfg) = val
		},
		format: func(c *Config) (string, error) { return *field(c), nil },
	}
}

// targetProblem: a blocking action without $TARGET$ would block nobody (or everybody).
func targetProblem(key, val string) string {
	if val != "" && !strings.Contains(val, "$TARGET$") {
		return fmt.Sprintf("%s must contain $TARGET$ (replaced by the attacker's address)", key)
	}
	return ""
}

func hostsDenyFileProblem(key, val string) string {
	if val == "" {
		return fmt.Sprintf("%s must not be empty (leave it out to use %s)", key, DefaultHostsDenyFile)
	}
	return ""
}

func parseTimeout(p *parser, line int, val string) {
	v, ok := parseUint(val, 1, maxCommandSeconds)
	if !ok {
		p.errorf(line, "KILL_CMD_TIMEOUT must be a number of seconds from 1 to %d, not %s",
			maxCommandSeconds, shown(val))
		return
	}
	p.cfg.CommandTimeout = time.Duration(v) * time.Second
}

func formatTimeout(c *Config) (string, error) {
	if c.CommandTimeout%time.Second != 0 {
		return "", fmt.Errorf("KILL_CMD_TIMEOUT %v is not a whole number of seconds", c.CommandTimeout)
	}
	return strconv.FormatInt(int64(c.CommandTimeout/time.Second), 10), nil
}

// parseUint reads a plain decimal number (blanks around it allowed, no sign) in [lo, hi].
func parseUint(s string, lo, hi int) (int, bool) {
	s = trimBlanks(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < uint64(lo) || v > uint64(hi) {
		return 0, false
	}
	return int(v), true
}

// Backends that BLOCK_BACKEND may name.
var backends = []string{"classic", "nftables", "route", "ipset", "hostsdeny"}

func backendProblem(key, val string) string {
	if slices.Contains(backends, val) {
		return ""
	}
	return fmt.Sprintf("%s must be one of %s, not %q", key, strings.Join(backends, ", "), val)
}

// banJournalKey is BAN_JOURNAL; what a reload compares is the journal's path, which
// HISTORY_FILE decides when BAN_JOURNAL is unset.
func banJournalKey() keySpec {
	k := stringKey("BAN_JOURNAL", nil, func(c *Config) *string { return &c.BanJournal })
	k.restart = &restartRule{value: (*Config).BanJournalPath, via: "HISTORY_FILE"}
	return k
}

// Package config reads portsentry.conf, the configuration file of classic PortSentry 1.2,
// and checks it, naming file and line for every problem.
//
// # Syntax
//
// One setting per line, KEY="value". Blanks and tabs may surround "=" and precede the
// key; a line whose first non-blank character is "#" is a comment; blank lines are
// ignored; a comment may follow the closing quote. The value runs to the next double
// quote, so it may hold tabs and "#" but never a double quote. A UTF-8 byte order mark
// and CRLF line endings are accepted. Lines longer than 64 KiB are reported and skipped.
//
// Where this parser deliberately differs from classic PortSentry (which matched keys by
// substring, ignored indented keys, ended values at a tab and capped port lists at 64):
// keys must match exactly, indented keys count, tabs stay in the value, port lists have
// no cap and accept ranges ("1-1024"). When a key is set twice the first line still wins,
// as in classic, but a warning names both lines. Unknown keys are warnings. Numeric keys
// are checked strictly: classic read RESOLVE_HOST="yes" as 0 without a word, here it is
// an error. So are text after the closing quote and control characters in a value, which
// classic silently cut the value at. KEY "value" without "=" worked in classic and still
// does, with a warning.
//
// Port lists are comma separated ports 1..65535 and inclusive ranges a-b, blanks allowed
// around entries; duplicates are dropped and the order kept. Empty entries (a trailing
// comma) are a warning.
//
// # Defaults
//
// A key absent from the file takes these values:
//
//	ADVANCED_PORTS_TCP, ADVANCED_PORTS_UDP  1024 (as classic)
//	HOSTS_DENY_FILE                         /etc/hosts.deny (our key)
//	KILL_CMD_TIMEOUT                        30 seconds (our key)
//
// Every other absent key is empty or zero (no ports, no files, no commands, BLOCK_x=0,
// SCAN_TRIGGER=0), which is what classic PortSentry does with a file that omits it.
// [Default] is something else: the settings of Debian's shipped portsentry.conf, for use
// when there is no file at all.
package config

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// BlockLevel is the value of BLOCK_TCP and BLOCK_UDP: what to do once a host triggers.
type BlockLevel int

const (
	BlockLogOnly BlockLevel = 0 // log the detection, run nothing
	BlockKill    BlockLevel = 1 // run the KILL_ actions (KILL_RUN_CMD, KILL_HOSTS_DENY, KILL_ROUTE)
	BlockRunCmd  BlockLevel = 2 // run KILL_RUN_CMD only
)

func (b BlockLevel) String() string {
	switch b {
	case BlockLogOnly:
		return "log only"
	case BlockKill:
		return "block"
	case BlockRunCmd:
		return "run KILL_RUN_CMD only"
	}
	return fmt.Sprintf("BlockLevel(%d)", int(b))
}

// Defaults for keys absent from a file.
const (
	DefaultAdvancedPorts  = 1024
	DefaultHostsDenyFile  = "/etc/hosts.deny"
	DefaultCommandTimeout = 30 * time.Second
)

// DefaultsSource is the Source of the Config returned by Default.
const DefaultsSource = "built-in defaults"

// Config is the effective content of one portsentry.conf.
type Config struct {
	Source string // file path, or "built-in defaults"

	// TCP_PORTS / UDP_PORTS: ranges expanded, duplicates removed, order kept.
	TCPPorts, UDPPorts []uint16
	// ADVANCED_PORTS_TCP/UDP: advanced modes watch the ports below N, 1..65535.
	AdvancedPortsTCP, AdvancedPortsUDP int
	// ADVANCED_EXCLUDE_TCP/UDP: ports advanced modes never watch.
	AdvancedExcludeTCP, AdvancedExcludeUDP []uint16

	IgnoreFile, HistoryFile, BlockedFile string
	ResolveHost                          bool

	BlockTCP, BlockUDP BlockLevel

	KillRoute, KillHostsDeny, KillRunCmd string
	KillRunCmdFirst                      bool

	ScanTrigger int    // hits from one host before acting; 0 and 1 both mean the first hit
	PortBanner  string // written to clients in the connect modes, no newline added

	// HOSTS_DENY_FILE (ours): where KILL_HOSTS_DENY lines go.
	HostsDenyFile string
	// KILL_CMD_TIMEOUT (ours, whole seconds 1..3600): how long a KILL_ command may run.
	CommandTimeout time.Duration
	// KILL_ROUTE_UNDO, KILL_RUN_CMD_UNDO (ours): shell commands that undo KILL_ROUTE
	// and KILL_RUN_CMD for a host when its ban ends; empty: what those did stays.
	KillRouteUndo, KillRunCmdUndo string
	// Interfaces (INTERFACES): comma-separated names the stealth modes capture on;
	// empty means every interface, including ones that appear later.
	Interfaces string

	// Bans (ours, see docs/configuration.md).
	BlockBackend    string // BLOCK_BACKEND: "classic" (KILL_ commands only) or "nftables"
	BanTime         int    // BAN_TIME: seconds a first ban lasts; 0 = permanent
	BanTimeMax      int    // BAN_TIME_MAX: repeat offenders' bans double up to this
	BanRate         int    // BAN_RATE: new responses per minute at most; 0 = no limit
	BanCap          int    // BAN_CAP: active bans at most; 0 = no limit
	BanIPv6Prefix   int    // BAN_IPV6_PREFIX: an IPv6 scanner is banned with this prefix
	BanJournal      string // BAN_JOURNAL: the ban journal file; empty: see BanJournalPath
	ControlSocket   string // CONTROL_SOCKET: the operators' control socket
	UnspoofableOnly bool   // UNSPOOFABLE_ONLY: act only on completed TCP handshakes

	// Visibility (ours, see docs/dashboard.md and docs/api.md).
	Dashboard            string // DASHBOARD: host:port of the dashboard, API and metrics; empty = off
	DashboardAllowRemote bool   // DASHBOARD_ALLOW_REMOTE: permit a non-loopback DASHBOARD
	DashboardTokenFile   string // DASHBOARD_TOKEN_FILE: where the unblock token is written
	JSONLog              string // JSON_LOG: file receiving one JSON object per event; empty = off

	// Fleet (ours, see docs/fleet.md): bans shared with other hosts through NATS.
	FleetNATS                             string // FLEET_NATS: server URLs; empty = off
	FleetCreds                            string // FLEET_CREDS: NATS credentials (or nkey seed) file
	FleetTLSCA, FleetTLSCert, FleetTLSKey string // FLEET_TLS_*: PEM files
	FleetMode                             string // FLEET_MODE: "both", "publish" or "subscribe"
	FleetName                             string // FLEET_NAME: this host's name; empty: FleetHost
	FleetStream                           string // FLEET_STREAM: the JetStream stream

	// lines maps each key set in the file to the line that set it, so that Validate can
	// point at the line to fix. Keys never set are absent.
	lines map[string]int
}

// Line returns the line of c.Source that set key, or 0 when the key was not in the file.
func (c *Config) Line(key string) int {
	return c.lines[key]
}

// Debian's shipped port lists (/etc/portsentry/portsentry.conf, "just be aware" set).
var (
	debianTCPPorts = []uint16{1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742,
		6667, 12345, 12346, 20034, 27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320}
	debianUDPPorts = []uint16{1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 37444, 34555,
		31335, 32770, 32771, 32772, 32773, 32774, 31337, 54321}
)

// Default returns exactly the settings of Debian's shipped portsentry.conf (plus our own
// keys at their defaults). Each call returns a fresh value the caller may modify.
func Default() *Config {
	return (&Config{
		Source:             DefaultsSource,
		TCPPorts:           slices.Clone(debianTCPPorts),
		UDPPorts:           slices.Clone(debianUDPPorts),
		AdvancedPortsTCP:   DefaultAdvancedPorts,
		AdvancedPortsUDP:   DefaultAdvancedPorts,
		AdvancedExcludeTCP: []uint16{113, 139},
		AdvancedExcludeUDP: []uint16{520, 138, 137, 67},
		IgnoreFile:         "/etc/portsentry/portsentry.ignore",
		HistoryFile:        "/var/lib/portsentry/portsentry.history",
		BlockedFile:        "/var/lib/portsentry/portsentry.blocked",
		KillRoute:          "/sbin/route add -host $TARGET$ reject",
		KillHostsDeny:      "ALL: $TARGET$ : DENY",
		HostsDenyFile:      DefaultHostsDenyFile,
		CommandTimeout:     DefaultCommandTimeout,
		lines:              map[string]int{},
	}).withBanDefaults()
}

// Defaults of our ban keys, shared by Default and by files that omit them.
const (
	DefaultBlockBackend  = "classic"
	DefaultBanTime       = 3600
	DefaultBanTimeMax    = 7 * 24 * 3600
	DefaultBanRate       = 60
	DefaultBanCap        = 10000
	DefaultBanIPv6Prefix = 64
	DefaultBanJournal    = "" // beside HISTORY_FILE: see BanJournalPath
	DefaultControlSocket = "/run/portsentry/portsentry.sock"

	DefaultDashboardTokenFile = "/run/portsentry/dashboard.token"
)

// BanJournalPath is BAN_JOURNAL, or when unset "portsentry.bans" in HISTORY_FILE's
// directory (/var/lib/portsentry on Debian): state lives with state.
func (c *Config) BanJournalPath() string {
	if c.BanJournal != "" {
		return c.BanJournal
	}
	return filepath.Join(filepath.Dir(c.HistoryFile), "portsentry.bans")
}

func (c *Config) withBanDefaults() *Config {
	c.BlockBackend = DefaultBlockBackend
	c.BanTime, c.BanTimeMax = DefaultBanTime, DefaultBanTimeMax
	c.BanRate, c.BanCap = DefaultBanRate, DefaultBanCap
	c.BanIPv6Prefix = DefaultBanIPv6Prefix
	c.BanJournal, c.ControlSocket = DefaultBanJournal, DefaultControlSocket
	c.DashboardTokenFile = DefaultDashboardTokenFile
	c.FleetMode, c.FleetStream = DefaultFleetMode, DefaultFleetStream
	return c
}

// empty returns the Config of a file with no settings: see the package comment.
func empty(source string) *Config {
	return (&Config{
		Source:           source,
		AdvancedPortsTCP: DefaultAdvancedPorts,
		AdvancedPortsUDP: DefaultAdvancedPorts,
		HostsDenyFile:    DefaultHostsDenyFile,
		CommandTimeout:   DefaultCommandTimeout,
		lines:            map[string]int{},
	}).withBanDefaults()
}

// Load reads and parses the file at path. The error is non-nil for I/O problems (it names
// the path) and when the diagnostics hold errors (it is then the diag.List of errors).
// The diagnostics, warnings included, are returned in both cases.
//
// The file must be a regular file of at most MaxFileSize bytes: a FIFO, a device or a
// directory is refused without waiting or reading (see package regfile), and so is a
// larger file, before anything is parsed.
func Load(path string) (*Config, diag.List, error) {
	data, err := regfile.ReadAll(path, MaxFileSize)
	if err != nil {
		// *PathError already names the path; %w keeps errors.Is(err, fs.ErrNotExist).
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, bytes.NewReader(data))
}

// MaxFileSize bounds a config file. Debian's shipped one is about 12 KiB.
const MaxFileSize = 1 << 20

// Parse reads a config from r; name is used as Source and in diagnostics. On an I/O error
// the Config is nil. When the diagnostics hold errors, err is the diag.List of errors and
// the Config holds whatever did parse: good for showing, not for running.
func Parse(name string, r io.Reader) (*Config, diag.List, error) {
	p := &parser{name: name, cfg: empty(name)}
	if err := p.run(r); err != nil {
		return nil, p.diags, fmt.Errorf("%s: %w", name, err)
	}
	if p.diags.HasErrors() {
		return p.cfg, p.diags, p.diags.Errors()
	}
	return p.cfg, p.diags, nil
}

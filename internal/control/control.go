// Package control is the daemon's local control socket and its client: the operator
// commands "portsentry list", "status", "block" and "unblock" talk to a running daemon
// through it.
//
// # Transport and protocol
//
// The daemon listens on a Unix stream socket (CONTROL_SOCKET, by default
// config.DefaultControlSocket).
// A client sends one JSON request per line and reads one JSON response per line:
//
//	{"cmd":"list"}
//	{"cmd":"status"}
//	{"cmd":"block","prefix":"203.0.113.7","duration":"1h"}
//	{"cmd":"unblock","prefix":"203.0.113.0/24"}
//	{"cmd":"unblock","origin":"web2"}      every ban fleet host web2 made ("*": every remote ban)
//
//	{"ok":true,"bans":[...]}          list and unblock
//	{"ok":true,"status":{...}}        status
//	{"ok":true,"ban":{...}}           block
//	{"ok":false,"error":"..."}        any failure
//
// A prefix is an address (taken as /32 or /128) or a CIDR (normalised: host bits are
// cleared, IPv4-mapped IPv6 becomes IPv4). A duration is a Go duration ("90m", "1h30m"),
// a number of days with an optional Go duration after it ("7d", "1d12h"), "permanent",
// or empty or "0" for the daemon's configured default. A request line may be at most
// MaxRequest bytes: a longer one is answered with an error and the connection closed.
// A connection that sends nothing for IdleTimeout is closed. A bad request is answered
// with an error and the connection stays usable.
//
// # Permissions
//
// Only root may use the socket; it can lift and impose bans, so it is as powerful as
// the firewall. Two independent checks enforce this:
//
//   - The socket file is created with mode 0600 and owned by root (its directory is
//     created 0750 if missing), so the kernel refuses connect(2) from other users.
//   - Every accepted connection's peer credentials are read with SO_PEERCRED; a peer
//     whose uid is neither 0 nor the daemon's own effective uid gets the single
//     response {"ok":false,"error":"permission denied"} and the connection is closed.
//     This holds even if the file's mode is later loosened or the connection raced
//     the chmod after bind(2).
//
// There is no authentication beyond the peer's uid; anything running as root (or as
// the daemon's user) is trusted.
//
// # Lifetime
//
// Listen refuses to start when another daemon answers on the socket path ("another
// portsentry is running") and removes a stale socket file that nothing answers on; it
// never removes a path that is not a socket. Close stops accepting, closes live
// connections, waits for every goroutine and removes the socket file.
package control

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/duration"
	"github.com/portsentry-go/portsentry/internal/netaddr"
)

// Protocol limits.
const (
	MaxRequest  = 64 << 10        // bytes in one request line, newline included
	IdleTimeout = 5 * time.Second // a connection idle this long is closed
)

// Permanent, passed as the duration to Service.Block (and Client.Block), asks for a ban
// that never expires. Any negative duration means the same.
const Permanent time.Duration = -1

// Ban is one active ban as the daemon reports it.
type Ban struct {
	Prefix netip.Prefix `json:"prefix"`
	Start  time.Time    `json:"start"`
	Until  time.Time    `json:"until,omitzero"` // zero: permanent
	Mode   string       `json:"mode,omitempty"` // sensor mode that saw the scan: "stcp", ...
	Port   uint16       `json:"port,omitempty"` // port that triggered it
	Scan   string       `json:"scan,omitempty"` // scan type, e.g. "TCP SYN/Normal scan"
	By     string       `json:"by,omitempty"`   // "detect", "operator" or "fleet"
	// Origin is the fleet host that made the ban; empty: this host.
	Origin   string `json:"origin,omitempty"`
	Offences int    `json:"offences"`
	// Stays, in an unblock's answer, says what the classic KILL_ commands did for the
	// ban that stays in place because no undo key is set, and which key would lift it.
	Stays []string `json:"stays,omitempty"`
	// NotEnforced, when set, says why the ban is recorded but not enforced by the
	// blocking backend (the route backend leaves a route that is not its own alone).
	NotEnforced string `json:"not_enforced,omitempty"`
}

// Permanent reports whether the ban never expires.
func (b Ban) Permanent() bool { return b.Until.IsZero() }

// Status is the daemon's summary.
type Status struct {
	Version    string            `json:"version"`
	Modes      []string          `json:"modes"`
	Backend    string            `json:"backend"`
	ActiveBans int               `json:"active_bans"`
	Counters   map[string]uint64 `json:"counters"`
	Started    time.Time         `json:"started"`
	// NotEnforced counts the active bans the backend records but does not enforce
	// (see Ban.NotEnforced).
	NotEnforced int `json:"not_enforced_bans,omitempty"`
}

// Service is what the daemon provides to the control socket. Its methods are called
// from the connection goroutines, concurrently.
type Service interface {
	// List returns every active ban.
	List() []Ban
	// Block bans p for d: d == 0 means the configured default duration, d < 0
	// (Permanent) a ban that never expires. p is already normalised (ParsePrefix).
	Block(p netip.Prefix, d time.Duration) (Ban, error)
	// Unblock lifts every active ban inside or covering p and returns them; lifting
	// nothing is not an error.
	Unblock(p netip.Prefix) ([]Ban, error)
	// UnblockOrigin lifts every active ban that fleet host origin made ("*": every
	// remote ban) and returns them. origin is already checked (ParseOrigin).
	UnblockOrigin(origin string) ([]Ban, error)
	// Status summarises the daemon.
	Status() Status
}

// Command names on the wire.
const (
	CmdList    = "list"
	CmdStatus  = "status"
	CmdBlock   = "block"
	CmdUnblock = "unblock"
)

// request is one line from a client.
type request struct {
	Cmd      string `json:"cmd"`
	Prefix   string `json:"prefix,omitempty"`
	Duration string `json:"duration,omitempty"`
	Origin   string `json:"origin,omitempty"`
}

// response is one line to a client.
type response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Bans   []Ban   `json:"bans,omitzero"`
	Ban    *Ban    `json:"ban,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// errPermission is the answer to a peer that is not root.
const errPermission = "permission denied"

// ParsePrefix accepts an address (giving a /32 or /128) or a CIDR (normalised with
// Masked). IPv4-mapped IPv6 addresses and prefixes of /96 or longer become IPv4;
// addresses with a zone are refused.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("missing address or CIDR")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: addresses with a zone cannot be banned", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netaddr.Canonical(p), nil
}

// AnyOrigin, as the origin of an unblock, means every remote ban.
const AnyOrigin = "*"

// ParseOrigin checks a fleet host's name (FLEET_NAME: letters, digits, "-", "_", at
// most 64) or AnyOrigin.
func ParseOrigin(s string) (string, error) {
	if s == AnyOrigin {
		return s, nil
	}
	ok := s != "" && len(s) <= 64
	for _, c := range []byte(s) {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}
	if !ok {
		return "", fmt.Errorf("%q is not a fleet host's name (FLEET_NAME) nor %q", s, AnyOrigin)
	}
	return s, nil
}

// ParseDuration parses a ban duration: "" or "0" is 0 (the daemon's default),
// "permanent" is Permanent, anything else a positive duration (see duration.Parse:
// "90m", "7d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "0":
		return 0, nil
	case "permanent", "forever":
		return Permanent, nil
	}
	d, err := duration.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want e.g. 90m, 12h, 7d or permanent", s)
	}
	return d, nil
}

// formatDuration is ParseDuration's inverse on the wire.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d < 0:
		return "permanent"
	}
	return d.String()
}

// Package probe holds the value that every sensor produces and every later stage
// consumes: one observation of a host touching a watched port.
package probe

import (
	"fmt"
	"net/netip"
	"time"
)

// Proto is the transport protocol of a probe.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
)

// String gives the upper-case name used in the history file ("TCP", "UDP").
func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// Mode is one of the six classic detection modes. Its string is the name used for the
// $MODE$ macro and the blocked-file suffix.
type Mode string

const (
	ModeTCP  Mode = "tcp"  // connect: listeners on TCP_PORTS
	ModeUDP  Mode = "udp"  // connect: listeners on UDP_PORTS
	ModeSTCP Mode = "stcp" // stealth: packets to TCP_PORTS
	ModeSUDP Mode = "sudp" // stealth: packets to UDP_PORTS
	ModeATCP Mode = "atcp" // advanced stealth: unused TCP ports below ADVANCED_PORTS_TCP
	ModeAUDP Mode = "audp" // advanced stealth: unused UDP ports below ADVANCED_PORTS_UDP
)

// Modes lists every mode in the classic order.
var Modes = modes[:]

var modes = [...]Mode{ModeTCP, ModeUDP, ModeSTCP, ModeSUDP, ModeATCP, ModeAUDP}

// ModeCount is len(Modes), as a constant for arrays indexed by Mode.Index.
const ModeCount = len(modes)

// Index is the mode's position in Modes, or len(Modes) for a string that is no mode,
// for tables indexed by mode (a switch on the string is cheaper than a map lookup).
func (m Mode) Index() int {
	switch m {
	case ModeTCP:
		return 0
	case ModeUDP:
		return 1
	case ModeSTCP:
		return 2
	case ModeSUDP:
		return 3
	case ModeATCP:
		return 4
	case ModeAUDP:
		return 5
	}
	return ModeCount
}

// Proto is the protocol the mode watches.
func (m Mode) Proto() Proto {
	switch m {
	case ModeUDP, ModeSUDP, ModeAUDP:
		return UDP
	}
	return TCP
}

// Connect reports whether the mode binds real listeners (tcp, udp).
func (m Mode) Connect() bool { return m == ModeTCP || m == ModeUDP }

// Probe is one observation. Addresses are canonical: IPv4 is never IPv4-mapped IPv6.
type Probe struct {
	Src, Dst netip.AddrPort
	Proto    Proto
	Mode     Mode
	// ScanType is the classic classification string for stealth probes
	// (" TCP NULL scan", "TCP SYN/Normal scan", ...); empty for connect-mode hits.
	ScanType string
	// IPOptions is set when the IPv4 header carried options.
	IPOptions bool
	Time      time.Time
	// Spoofable is false only for a completed TCP handshake.
	Spoofable bool
}

// Canonical returns a with any IPv4-mapped IPv6 form unmapped and the zone dropped, the
// only form that may reach logs, files and command macros.
func Canonical(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a // what the decoders produce for IPv4: nothing to undo
	}
	return a.Unmap().WithZone("")
}

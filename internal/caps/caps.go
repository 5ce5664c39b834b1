// Package caps narrows the daemon's Linux capabilities, once its sockets are open, to
// what it still uses, and decides what the commands it runs (KILL_ROUTE, KILL_RUN_CMD,
// the ipset backend's ipset and iptables) may have.
//
// A process running as root regains its whole bounding set at every execve, whatever
// its own sets hold, so lowering the daemon's sets alone would leave every command
// fully privileged. Drop therefore also shrinks the bounding set and sets the
// "noroot" securebit when it may (CAP_SETPCAP); under systemd the unit does both, and
// hands the capabilities in as ambient ones. Commands then get exactly the ambient
// set: the capabilities they need when commands are configured, nothing otherwise.
//
// The changes are made on every thread of the process (libcap's psx mechanism): the
// Go runtime runs goroutines on many threads, and a capability dropped on one thread
// only is not dropped.
package caps

import (
	"fmt"
	"math/bits"
	"strings"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// Set is a set of capabilities as the kernel shows them in /proc/PID/status: bit N
// is capability N (linux/capability.h).
type Set uint64

// The capabilities the daemon and its commands use.
const (
	NetBindService Set = 1 << cap.NET_BIND_SERVICE // the connect modes' listeners below port 1024
	NetAdmin       Set = 1 << cap.NET_ADMIN        // nftables, routes, ipset (netlink writes)
	NetRaw         Set = 1 << cap.NET_RAW          // the stealth modes' packet sockets; iptables
)

// String lists the capabilities in the kernel's names, "none" for the empty set.
func (s Set) String() string {
	if s == 0 {
		return "none"
	}
	var names []string
	for v := range s.values() {
		names = append(names, v.String())
	}
	return strings.Join(names, ",")
}

func (s Set) values() func(yield func(cap.Value) bool) {
	return func(yield func(cap.Value) bool) {
		for b := uint64(s); b != 0; b &= b - 1 {
			if !yield(cap.Value(bits.TrailingZeros64(b))) {
				return
			}
		}
	}
}

func (s Set) list() []cap.Value {
	var out []cap.Value
	for v := range s.values() {
		out = append(out, v)
	}
	return out
}

// Needs is what a configuration uses after start-up.
type Needs struct {
	Connect  bool // a connect mode: listeners are rebound on reload
	Stealth  bool // a stealth or advanced mode: capture sockets open as interfaces come
	Netlink  bool // a blocking backend that writes to the kernel (nftables, route, ipset)
	Commands bool // commands run that change the firewall or routes
}

// Plan is what the daemon keeps for itself and what its commands get.
type Plan struct {
	Daemon, Commands Set
}

// For returns the plan for n. Commands get NET_ADMIN (route, ip, iptables, ipset
// change kernel tables over netlink or ioctls) and NET_RAW (iptables opens a raw
// socket to talk to the kernel).
func For(n Needs) Plan {
	var p Plan
	if n.Connect {
		p.Daemon |= NetBindService
	}
	if n.Stealth {
		p.Daemon |= NetRaw
	}
	if n.Netlink {
		p.Daemon |= NetAdmin
	}
	if n.Commands {
		p.Commands = NetAdmin | NetRaw
	}
	return p
}

// Result says what the process holds after Drop, for the log.
type Result struct {
	Kept Set // effective in the daemon
	// Commands is what a command started by the daemon gets: the ambient set, or,
	// when root's privilege at exec could not be turned off, the bounding set.
	Commands Set
}

func (r Result) String() string {
	return fmt.Sprintf("capabilities kept: %s; commands get: %s", r.Kept, r.Commands)
}

// Drop gives the process the capabilities of p and nothing else: p.Daemon effective,
// p.Commands inheritable and ambient (so commands get them), both permitted. A
// capability the process does not hold cannot be gained: Drop keeps what of p it has.
func Drop(p Plan) (Result, error) {
	held := permitted()
	p.Daemon &= held
	p.Commands &= held
	keep := p.Daemon | p.Commands
	res := Result{Kept: p.Daemon, Commands: bounding()}
	if held&(1<<cap.SETPCAP) != 0 {
		if err := bound(keep); err != nil {
			return res, err
		}
	}
	c := cap.NewSet()
	for _, f := range []struct {
		flag cap.Flag
		set  Set
	}{{cap.Permitted, keep}, {cap.Effective, p.Daemon}, {cap.Inheritable, p.Commands}} {
		if err := c.SetFlag(f.flag, true, f.set.list()...); err != nil {
			return res, err
		}
	}
	if err := c.SetProc(); err != nil {
		return res, fmt.Errorf("cannot set capabilities %s: %w", keep, err)
	}
	if err := cap.ResetAmbient(); err != nil {
		return res, fmt.Errorf("cannot clear the ambient capabilities: %w", err)
	}
	if err := cap.SetAmbient(true, p.Commands.list()...); err != nil {
		return res, fmt.Errorf("cannot pass %s to commands: %w", p.Commands, err)
	}
	res.Commands = p.Commands
	if cap.GetSecbits()&cap.SecbitNoRoot == 0 {
		res.Commands = bounding()
	}
	return res, nil
}

// all is every capability the kernel knows.
func all() Set { return ^Set(0) >> (64 - uint(cap.MaxBits())) }

func permitted() Set {
	cur, held := cap.GetProc(), Set(0)
	for v := range all().values() {
		if on, err := cur.GetFlag(cap.Permitted, v); err == nil && on {
			held |= 1 << v
		}
	}
	return held
}

func bounding() Set {
	var b Set
	for v := range all().values() {
		if on, err := cap.GetBound(v); err == nil && on {
			b |= 1 << v
		}
	}
	return b
}

// bound drops every capability but keep from the bounding set and locks the noroot
// securebit on, so that no later execve grants more than the ambient set. It needs
// CAP_SETPCAP, which the libcap calls raise while they run.
func bound(keep Set) error {
	var drop []cap.Value
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		if keep&(1<<v) == 0 {
			drop = append(drop, v)
		}
	}
	if err := cap.DropBound(drop...); err != nil {
		return fmt.Errorf("cannot reduce the bounding set: %w", err)
	}
	if err := (cap.GetSecbits() | cap.SecbitNoRoot | cap.SecbitNoRootLocked).Set(); err != nil {
		return fmt.Errorf("cannot set the noroot securebit: %w", err)
	}
	return nil
}

package listening

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// listener is one local socket that takes packets: a TCP socket in LISTEN state or a
// bound UDP socket.
type listener struct {
	proto probe.Proto
	// addr is the local address, canonical (unmapped, no zone). The unspecified address
	// of a family is a wildcard bind.
	addr netip.Addr
	port uint16
	// dual marks an IPv6 wildcard socket without IPV6_V6ONLY: it takes IPv4 too. It is
	// always false for any other socket, so that equal sockets compare equal.
	dual bool
}

// newListener canonicalises a socket as the kernel reports it. A dual-stack IPv6
// socket bound to an IPv4-mapped address takes IPv4 packets for that address only, so
// unmapping makes it an IPv4 listener.
func newListener(proto probe.Proto, addr netip.Addr, port uint16, v6only bool) listener {
	addr = probe.Canonical(addr)
	dual := addr.Is6() && addr.IsUnspecified() && !v6only
	return listener{proto: proto, addr: addr, port: port, dual: dual}
}

func compareListener(a, b listener) int {
	if c := cmp.Compare(a.proto, b.proto); c != 0 {
		return c
	}
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.port, b.port); c != 0 {
		return c
	}
	switch {
	case a.dual == b.dual:
		return 0
	case b.dual:
		return -1
	}
	return 1
}

// normalise sorts ls and drops duplicates (SO_REUSEPORT groups, repeated binds), so
// two snapshots of the same sockets compare equal with slices.Equal.
func normalise(ls []listener) []listener {
	slices.SortFunc(ls, compareListener)
	return slices.Compact(ls)
}

// portSet is a bitmap of all 65536 ports: one load and a mask per lookup.
type portSet [65536 / 64]uint64

func (s *portSet) add(p uint16)      { s[p>>6] |= 1 << (p & 63) }
func (s *portSet) has(p uint16) bool { return s[p>>6]&(1<<(p&63)) != 0 }

// sorted lists the ports in the set in ascending order.
func (s *portSet) sorted() []uint16 {
	var out []uint16
	for i, w := range s {
		for ; w != 0; w &= w - 1 { // clear the lowest set bit each round
			out = append(out, uint16(i*64+bits.TrailingZeros64(w)))
		}
	}
	return out
}

// specKey is an address-specific bind. The address is in 16-byte form (IPv4 mapped),
// and the struct has no padding, so the map hashes it as plain memory.
type specKey struct {
	addr [16]byte
	port uint16
}

// table answers InUse for one protocol.
type table struct {
	any4 portSet // IPv4 wildcard binds, plus dual-stack IPv6 wildcard binds
	any6 portSet // IPv6 wildcard binds
	// some holds the ports with at least one address-specific bind, so that most
	// lookups never reach the map.
	some     portSet
	specific map[specKey]struct{}
	ports    []uint16 // union over all addresses, sorted
}

func (t *table) add(l listener, all *portSet) {
	all.add(l.port)
	switch {
	case l.addr.IsUnspecified() && l.addr.Is4():
		t.any4.add(l.port)
	case l.addr.IsUnspecified():
		t.any6.add(l.port)
		if l.dual {
			t.any4.add(l.port)
		}
	default:
		t.some.add(l.port)
		t.specific[specKey{l.addr.As16(), l.port}] = struct{}{}
	}
}

func (t *table) inUse(dst netip.AddrPort) bool {
	a, port := dst.Addr().Unmap(), dst.Port()
	switch {
	case a.Is4():
		if t.any4.has(port) {
			return true
		}
	case a.Is6():
		if t.any6.has(port) {
			return true
		}
	default:
		return false // the zero Addr
	}
	if !t.some.has(port) {
		return false
	}
	// As16 ignores the zone: a link-local bind matches on every interface, which errs
	// on the side of "in use" (not a hit).
	_, ok := t.specific[specKey{a.As16(), port}]
	return ok
}

// snapshot is an immutable view of the listening sockets at one moment.
type snapshot struct {
	listeners []listener // normalised: the identity used to detect changes
	tcp, udp  *table
}

func newSnapshot(ls []listener) *snapshot {
	s := &snapshot{
		listeners: ls,
		tcp:       &table{specific: map[specKey]struct{}{}},
		udp:       &table{specific: map[specKey]struct{}{}},
	}
	var allTCP, allUDP portSet
	for _, l := range ls {
		switch l.proto {
		case probe.TCP:
			s.tcp.add(l, &allTCP)
		case probe.UDP:
			s.udp.add(l, &allUDP)
		}
	}
	s.tcp.ports, s.udp.ports = allTCP.sorted(), allUDP.sorted()
	return s
}

func (s *snapshot) table(p probe.Proto) *table {
	switch p {
	case probe.TCP:
		return s.tcp
	case probe.UDP:
		return s.udp
	}
	return nil
}

// String renders a listener as "TCP [::]:22 dual" for logs and test failures.
func (l listener) String() string {
	s := l.proto.String() + " " + netip.AddrPortFrom(l.addr, l.port).String()
	if l.dual {
		s += " dual"
	}
	return s
}

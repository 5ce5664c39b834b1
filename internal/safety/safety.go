// Package safety is the one gate every ban passes, whatever made it: a detection, an
// operator's block, the widening of an IPv6 ban to its network, or the replay of the
// ban journal at start. A spoofed packet names any source the attacker likes, so a ban
// must never cover the host itself, its gateways, its resolvers, the hosts it was told
// to ignore, or an address no real scanner can send from (multicast, broadcast,
// reserved space); banning one of those is how a single forged packet cuts the host
// off its own network.
//
// A View is an immutable picture of what is protected, rebuilt by the daemon when an
// address, a route, a resolver or the ignore file changes. Its lookups do no I/O and
// never block; Source sits on the per-packet path and does not allocate.
package safety

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/portsentry-go/portsentry/internal/netaddr"
)

// Class is what a source address is to the detector.
type Class uint8

const (
	// Allowed: an ordinary unicast address; probes from it are judged.
	Allowed Class = iota
	// Protected: the host itself, a gateway, a resolver or an ignored host: never
	// acted on, silent (the classic ignore file's contract).
	Protected
	// Impossible: no real host sends from it (multicast, broadcast, reserved,
	// link-local IPv4, a network or broadcast address of the host's own networks).
	// Counted, never logged per packet, never acted on.
	Impossible
)

// Sources that cannot be real. Link-local IPv4 is here because on a network that uses
// it, it is the network of the host itself (zeroconf), and a ban there only isolates it.
var impossibleRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback never arrives on the wire
	netip.MustParsePrefix("169.254.0.0/16"), // IPv4 link-local
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255
	netip.MustParsePrefix("::/96"),          // unspecified, loopback, IPv4-compatible
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// Inputs are what a View is built from. Own addresses should include link-local ones;
// loopback and the unspecified addresses are always protected whatever is passed.
type Inputs struct {
	Own       []netip.Addr
	Networks  []netip.Prefix // the on-link networks of the own addresses
	Gateways  []netip.Addr
	Resolvers []netip.Addr
	Ignore    *netaddr.Set
}

// View is one immutable picture of what is protected.
type View struct {
	in Inputs
	// protected: own, gateways, resolvers, ignore. impossible: the fixed ranges plus
	// the network and broadcast addresses of own networks. either: the union, so the
	// per-packet path makes a single lookup for an ordinary source.
	protected, impossible, either *netaddr.Set
	netEdges                      []netip.Addr // network and broadcast addresses of own networks
}

// always are protected on every host.
var always = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
	netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::"),
}

// NewView builds a view. The inputs' slices are not retained.
func NewView(in Inputs) *View {
	in = Inputs{Own: canon(in.Own), Networks: slices.Clone(in.Networks), Gateways: canon(in.Gateways),
		Resolvers: canon(in.Resolvers), Ignore: in.Ignore}
	v := &View{in: in}
	var prot []netip.Prefix
	for _, list := range [][]netip.Addr{always, in.Own, in.Gateways, in.Resolvers} {
		for _, a := range list {
			prot = append(prot, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if in.Ignore != nil {
		prot = append(prot, in.Ignore.Prefixes()...)
	}
	v.protected = netaddr.NewSet(prot)
	imp := slices.Clone(impossibleRanges)
	for _, n := range in.Networks {
		v.netEdges = append(v.netEdges, edges(n)...)
	}
	for _, a := range v.netEdges {
		imp = append(imp, netip.PrefixFrom(a, a.BitLen()))
	}
	v.impossible = netaddr.NewSet(imp)
	v.either = netaddr.Union(v.protected, v.impossible)
	return v
}

// edges are a network's own address and, for IPv4, its broadcast address; /31 and /32
// networks have neither (RFC 3021), nor do IPv6 /127 and /128.
func edges(n netip.Prefix) []netip.Addr {
	n = n.Masked()
	a := n.Addr()
	if a.Is4() && n.Bits() <= 30 {
		return []netip.Addr{a, last(n)}
	}
	if a.Is6() && n.Bits() <= 126 {
		return []netip.Addr{a} // the subnet-router anycast address
	}
	return nil
}

// last is the highest address of p.
func last(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func canon(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// Source classifies a (canonical) source address. It never allocates.
func (v *View) Source(a netip.Addr) Class {
	if !v.either.Contains(a) {
		return Allowed
	}
	if v.protected.Contains(a) {
		return Protected
	}
	return Impossible
}

// Check refuses a ban on p when p covers anything protected or impossible; the error
// names what (the first few of them).
func (v *View) Check(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%s is not a valid prefix", p)
	}
	p = p.Masked()
	if !v.either.Overlaps(p) {
		return nil
	}
	return fmt.Errorf("%s covers %s: refused", p, strings.Join(v.covered(p), ", "))
}

// covered lists, for a message, what in p is protected.
func (v *View) covered(p netip.Prefix) []string {
	var hits []string
	addrs := func(kind string, list []netip.Addr) {
		for _, a := range list {
			if p.Contains(a) {
				hits = append(hits, kind+" "+a.String())
			}
		}
	}
	addrs("this host's address", v.in.Own)
	addrs("this host's address", always)
	addrs("gateway", v.in.Gateways)
	addrs("resolver", v.in.Resolvers)
	addrs("the network or broadcast address of an own network", v.netEdges)
	for _, q := range v.in.Ignore.Prefixes() {
		if q.Overlaps(p) {
			hits = append(hits, "ignored "+q.String())
		}
	}
	for _, q := range impossibleRanges {
		if q.Overlaps(p) {
			hits = append(hits, "reserved or non-unicast "+q.String())
		}
	}
	slices.Sort(hits)
	hits = slices.Compact(hits)
	if len(hits) > 4 {
		hits = append(hits[:4], fmt.Sprintf("and %d more", len(hits)-4))
	}
	if len(hits) == 0 { // the sets and the lists disagree: say so rather than nothing
		hits = []string{"a protected address"}
	}
	return hits
}

// Widen returns the widest prefix around a, of at least bits bits, that Check lets
// through: an IPv6 scanner's /64 unless that would cover a neighbour that is
// protected, then the widest narrower one, down to a itself. ok is false when even a
// alone is refused.
func (v *View) Widen(a netip.Addr, bits int) (p netip.Prefix, ok bool) {
	a = a.Unmap().WithZone("")
	bits = min(max(bits, 0), a.BitLen())
	for b := bits; b <= a.BitLen(); b++ {
		q, err := a.Prefix(b)
		if err == nil && !v.either.Overlaps(q) {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

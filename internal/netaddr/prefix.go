package netaddr

import (
	"fmt"
	"net/netip"
)

// Canonical makes equal networks compare equal: host bits cleared, zone dropped, and an
// IPv4-mapped IPv6 network of /96 or longer turned into the IPv4 network it stands for,
// because the kernel sees packets from IPv4 hosts in IPv4 form. A shorter IPv4-mapped
// prefix reaches past the mapped range and stays IPv6. An invalid input gives an
// invalid Prefix.
func Canonical(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	p = netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// BanPrefix is p in the canonical form every blocking backend holds, or an error for
// a prefix no backend should be given: an invalid one, and a /0, which would block a
// whole address family.
func BanPrefix(p netip.Prefix) (netip.Prefix, error) {
	q := Canonical(p)
	if !q.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %v", p)
	}
	if q.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("refusing to ban a whole address family (%v)", p)
	}
	return q, nil
}

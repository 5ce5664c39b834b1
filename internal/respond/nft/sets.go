package nft

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
)

// One set per prefix length. Two bans of the same length are either the same prefix
// or disjoint, so no element ever has to cover two bans: each journal ban is exactly
// one element with its own timeout, and an address stays blocked until the last ban
// covering it ends, by the kernel's clock. (With a single interval set, a /24 and a
// /32 inside it could not both be stored; one had to be folded into the other, and
// the fold outlived one of them.) Host bans live in ban4 and ban6; a network of
// length n in ban4_n or ban6_n, created with its rules when the first such ban comes.

// setName is the set that holds bans of p's length.
func setName(p netip.Prefix) string {
	fam, host := set4, 32
	if p.Addr().Is6() {
		fam, host = set6, 128
	}
	if p.Bits() == host {
		return fam
	}
	return fam + "_" + strconv.Itoa(p.Bits())
}

// parseSetName is setName's inverse: whether name is one of our sets, its family
// (true for IPv6) and prefix length.
func parseSetName(name string) (v6 bool, bits int, ok bool) {
	fam, rest, split := strings.Cut(name, "_")
	switch fam {
	case set4:
		bits = 32
	case set6:
		v6, bits = true, 128
	default:
		return false, 0, false
	}
	if !split {
		return v6, bits, true
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || n >= bits || strconv.Itoa(n) != rest {
		return false, 0, false
	}
	return v6, n, true
}

// cmpSets orders sets as their rules are: IPv4 first, then longest prefix first
// (hosts before networks).
func cmpSets(x, y string) int {
	x6, xb, _ := parseSetName(x)
	y6, yb, _ := parseSetName(y)
	if x6 != y6 {
		if x6 {
			return 1
		}
		return -1
	}
	return cmp.Compare(yb, xb)
}

// setsFor lists, sorted, the sets the prefixes of bans belong in.
func setsFor(bans []Ban) []string {
	var names []string
	for _, b := range bans {
		names = append(names, setName(b.Prefix))
	}
	slices.SortFunc(names, cmpSets)
	return slices.Compact(names)
}

// set describes our set of that name.
func (b *Backend) set(name string) *nftables.Set {
	s := &nftables.Set{
		Table:      b.table,
		Name:       name,
		Interval:   true,
		HasTimeout: true,
		KeyType:    nftables.TypeIPAddr,
	}
	if v6, _, _ := parseSetName(name); v6 {
		s.KeyType = nftables.TypeIP6Addr
	}
	return s
}

// missingSets lists those of names that Setup has not found or made.
func (b *Backend) missingSets(names []string) []string {
	var out []string
	for _, n := range names {
		if !b.sets[n] {
			out = append(out, n)
		}
	}
	return out
}

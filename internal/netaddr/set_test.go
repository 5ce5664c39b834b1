package netaddr

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// naiveContains is the reference: a linear scan using the standard library's
// Prefix.Contains on raw, un-normalised prefixes. Only the documented semantics are
// added: addresses are compared unmapped and without zone, and an IPv4-mapped network
// of at least /96 stands for the IPv4 network it maps.
func naiveContains(raw []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range raw {
		if !p.IsValid() {
			continue
		}
		if pa := p.Addr(); pa.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(pa.Unmap(), p.Bits()-96)
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func genBytes(n int) *rapid.Generator[[]byte] {
	return rapid.SliceOfN(rapid.Byte(), n, n)
}

// genAddr draws IPv4, IPv6 and IPv4-mapped addresses. Small values are favoured for the
// last bytes so that networks and addresses collide often.
func genAddr() *rapid.Generator[netip.Addr] {
	return rapid.Custom(func(t *rapid.T) netip.Addr {
		b := genBytes(16).Draw(t, "bytes")
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 0, 1:
			return netip.AddrFrom4([4]byte(b[:4]))
		case 2:
			return netip.AddrFrom16([16]byte(b))
		default:
			return netip.AddrFrom16(netip.AddrFrom4([4]byte(b[:4])).As16()) // mapped
		}
	})
}

// genPrefix draws raw prefixes of any length with host bits left in, including
// mapped ones of any length (below /96 they are ordinary IPv6 networks).
func genPrefix() *rapid.Generator[netip.Prefix] {
	return rapid.Custom(func(t *rapid.T) netip.Prefix {
		a := genAddr().Draw(t, "addr")
		return netip.PrefixFrom(a, rapid.IntRange(0, a.BitLen()).Draw(t, "bits"))
	})
}

// probeAddrs returns addresses at and just beyond the edges of each prefix, where
// range arithmetic goes wrong, plus their mapped and zoned forms.
func probeAddrs(raw []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range raw {
		first := p.Masked().Addr()
		last := lastAddr(p.Masked())
		out = append(out, first, last, first.Prev(), last.Next(), p.Addr())
	}
	for _, a := range slices.Clone(out) {
		if a.Is4() {
			out = append(out, netip.AddrFrom16(a.As16()))
		} else if a.IsValid() {
			out = append(out, a.WithZone("eth0"))
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestSetMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		raw := rapid.SliceOfN(genPrefix(), 0, 20).Draw(t, "prefixes")
		s := NewSet(raw)
		addrs := append(rapid.SliceOfN(genAddr(), 1, 20).Draw(t, "addrs"), probeAddrs(raw)...)
		for _, a := range addrs {
			if got, want := s.Contains(a), naiveContains(raw, a); got != want {
				t.Fatalf("Contains(%s) = %v, naive scan says %v; set %v", a, got, want, s.Prefixes())
			}
		}
		checkPrefixes(t, s)
	})
}

// checkPrefixes checks the printable list is normalised, sorted and free of duplicates.
func checkPrefixes(t *rapid.T, s *Set) {
	ps := s.Prefixes()
	if len(ps) != s.Len() {
		t.Fatalf("Len = %d, len(Prefixes) = %d", s.Len(), len(ps))
	}
	for i, p := range ps {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("prefix %s not normalised", p)
		}
		if i > 0 && ps[i-1].Compare(p) >= 0 {
			t.Fatalf("prefixes not strictly sorted: %s before %s", ps[i-1], p)
		}
	}
}

func TestSetEdges(t *testing.T) {
	tests := []struct {
		prefixes []string
		in, out  []string
	}{
		{nil, nil, []string{"0.0.0.0", "::", "1.2.3.4"}},
		{[]string{"0.0.0.0/0"}, []string{"0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"}, []string{"::", "::1.2.3.4", "2001:db8::1"}},
		{[]string{"::/0"}, []string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::1%eth0"}, []string{"1.2.3.4", "::ffff:1.2.3.4"}},
		{[]string{"255.255.255.255/32", "255.255.255.0/24"}, []string{"255.255.255.255", "255.255.255.0"}, []string{"255.255.254.255"}},
		{[]string{"10.0.0.0/25", "10.0.0.128/25"}, []string{"10.0.0.0", "10.0.0.127", "10.0.0.128", "10.0.0.255"}, []string{"9.255.255.255", "10.0.1.0"}},
		{[]string{"::ffff:0.0.0.0/96"}, []string{"1.2.3.4", "::ffff:5.6.7.8"}, []string{"::1.2.3.4", "2001::"}},
		{[]string{"2001:db8::/64", "2001:db8:0:1::/64"}, []string{"2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff"}, []string{"2001:db8:0:2::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{[]string{"::ffff:ffff:ffff/128"}, []string{"255.255.255.255"}, []string{"::ffff:ffff:fffe"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.prefixes), func(t *testing.T) {
			var ps []netip.Prefix
			for _, p := range tt.prefixes {
				ps = append(ps, netip.MustParsePrefix(p))
			}
			s := NewSet(ps)
			for _, a := range tt.in {
				if !s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("does not contain %s", a)
				}
			}
			for _, a := range tt.out {
				if s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("contains %s", a)
				}
			}
		})
	}
}

func TestSetZeroAndNil(t *testing.T) {
	var nilSet *Set
	var zero Set
	a := netip.MustParseAddr("10.0.0.1")
	if nilSet.Contains(a) || zero.Contains(a) || nilSet.Len() != 0 || zero.Len() != 0 || nilSet.Prefixes() != nil {
		t.Error("nil or zero Set is not empty")
	}
	if NewSet([]netip.Prefix{{}}).Len() != 0 {
		t.Error("invalid prefix kept")
	}
	if NewSet(nil).Contains(netip.Addr{}) {
		t.Error("zero Addr contained")
	}
}

func TestSetPrefixesIsACopy(t *testing.T) {
	s := NewSet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	s.Prefixes()[0] = netip.MustParsePrefix("11.0.0.0/8")
	if got := s.Prefixes()[0].String(); got != "10.0.0.0/8" {
		t.Errorf("Prefixes aliases the set: %s", got)
	}
}

// randomSet builds n random v4 and v6 networks and a mix of addresses to look up.
func randomSet(n int) (*Set, []netip.Addr) {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	ps := make([]netip.Prefix, 0, n)
	for i := range n {
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			ps = append(ps, netip.PrefixFrom(a, 16+r.IntN(17)))
			continue
		}
		var b [16]byte
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97)))
	}
	addrs := make([]netip.Addr, 0, 1024)
	for _, p := range ps {
		if len(addrs) < cap(addrs) {
			addrs = append(addrs, p.Addr(), p.Addr().Next())
		}
	}
	for len(addrs) < cap(addrs) {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(r.Uint32()), 1, 2, 3}))
	}
	addrs = append(addrs, netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("fe80::1%eth0"))
	return NewSet(ps), addrs
}

// Contains is on the per-packet path: it must never allocate, including for mapped
// and zoned addresses.
func TestSetContainsDoesNotAllocate(t *testing.T) {
	s, addrs := randomSet(1000)
	allocs := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			s.Contains(a)
		}
	})
	if allocs != 0 {
		t.Errorf("Contains allocates: %v allocs per run", allocs)
	}
}

func BenchmarkSetContains(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		s, addrs := randomSet(n)
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Contains(addrs[i%len(addrs)])
				i++
			}
		})
	}
}

// BenchmarkNaiveContains is the linear scan the Set replaces, for comparison.
func BenchmarkNaiveContains(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		s, addrs := randomSet(n)
		raw := s.Prefixes()
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				naiveContains(raw, addrs[i%len(addrs)])
				i++
			}
		})
	}
}

func TestUnion(t *testing.T) {
	a := NewSet([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")})
	b := NewSet([]netip.Prefix{netip.MustParsePrefix("198.18.1.7/32"), netip.MustParsePrefix("2001:db8::/64")})
	u := Union(a, nil, b)
	for addr, want := range map[string]bool{
		"198.18.0.9": true, "198.18.1.7": true, "198.18.1.8": false, "2001:db8::5": true, "2001:db8:1::5": false,
	} {
		if got := u.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("union contains %s: %v, want %v", addr, got, want)
		}
	}
	if u.Len() != 3 || Union().Len() != 0 {
		t.Errorf("union of %d and %d networks has %d; empty union has %d", a.Len(), b.Len(), u.Len(), Union().Len())
	}
}

// BenchmarkSetContainsFlood looks up a stream of random sources, as under a spoofed
// flood, in a set the size of the daemon's ignore union.
func BenchmarkSetContainsFlood(b *testing.B) {
	var ps []netip.Prefix
	for _, p := range []string{"127.0.0.0/8", "10.0.0.0/8", "192.168.1.0/24", "198.18.200.1/32", "198.18.200.254/32", "172.16.0.1/32", "::1/128", "fe80::/10", "2001:db8::1/128"} {
		ps = append(ps, netip.MustParsePrefix(p))
	}
	s := NewSet(ps)
	r := rand.New(rand.NewPCG(7, 7))
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		if i%2 == 0 {
			addrs[i] = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			continue
		}
		var a [16]byte
		for j := range a {
			a[j] = byte(r.Uint32())
		}
		addrs[i] = netip.AddrFrom16(a)
	}
	for _, fam := range []struct {
		name string
		off  int
	}{{"v4", 0}, {"v6", 1}} {
		b.Run(fam.name, func(b *testing.B) {
			i := fam.off
			for b.Loop() {
				s.Contains(addrs[i&(len(addrs)-1)])
				i += 2
			}
		})
	}
}

func TestOverlapsMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		raw := rapid.SliceOfN(genPrefix(), 0, 20).Draw(t, "prefixes")
		s := NewSet(raw)
		queries := rapid.SliceOfN(genPrefix(), 1, 10).Draw(t, "queries")
		for _, p := range raw { // edges: the set's own networks, one bit wider and narrower
			queries = append(queries, p, netip.PrefixFrom(p.Addr(), max(p.Bits()-1, 0)),
				netip.PrefixFrom(p.Addr(), min(p.Bits()+1, p.Addr().BitLen())))
		}
		for _, q := range queries {
			want := false
			nq := Canonical(q)
			for _, p := range raw {
				if np := Canonical(p); np.IsValid() && nq.IsValid() && np.Overlaps(nq) {
					want = true
				}
			}
			if got := s.Overlaps(q); got != want {
				t.Fatalf("Overlaps(%s) = %v, naive scan says %v; set %v", q, got, want, s.Prefixes())
			}
		}
	})
}

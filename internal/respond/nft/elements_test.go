package nft

import (
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"pgregory.net/rapid"
)

var P = netip.MustParsePrefix

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "10.1.2.3/32", want: "10.1.2.3/32"},
		{in: "10.1.2.3/24", want: "10.1.2.0/24"},
		{in: "::ffff:10.1.2.3/128", want: "10.1.2.3/32"},
		{in: "::ffff:10.1.2.3/120", want: "10.1.2.0/24"},
		{in: "2001:db8::1234/64", want: "2001:db8::/64"},
		{in: "0.0.0.0/0", bad: true},
		{in: "::/0", bad: true},
		{in: "::ffff:0.0.0.0/96", bad: true},
	} {
		got, err := netaddr.BanPrefix(P(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("netaddr.BanPrefix(%s) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != P(tc.want) {
			t.Errorf("netaddr.BanPrefix(%s) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := netaddr.BanPrefix(netip.Prefix{}); err == nil {
		t.Error("netaddr.BanPrefix(invalid) gave no error")
	}
	zoned := netip.PrefixFrom(netip.MustParseAddr("fe80::1%eth0"), 128)
	if got, err := netaddr.BanPrefix(zoned); err != nil || got != P("fe80::1/128") {
		t.Errorf("netaddr.BanPrefix(zoned) = %v, %v", got, err)
	}
}

func TestElements(t *testing.T) {
	for _, tc := range []struct {
		p     string
		start string
		end   string // "" = open interval, no end element
	}{
		{"10.0.0.1/32", "10.0.0.1", "10.0.0.2"},
		{"10.0.0.0/24", "10.0.0.0", "10.0.1.0"},
		{"10.0.0.255/32", "10.0.0.255", "10.0.1.0"},
		{"255.255.255.255/32", "255.255.255.255", ""},
		{"255.0.0.0/8", "255.0.0.0", ""},
		{"2001:db8::/64", "2001:db8::", "2001:db8:0:1::"},
		{"ffff:ffff:ffff:ffff::/64", "ffff:ffff:ffff:ffff::", ""},
	} {
		els := elements(P(tc.p), time.Minute)
		if got := netip.AddrFrom16([16]byte(pad16(els[0].Key))); unmap(got) != netip.MustParseAddr(tc.start) ||
			els[0].IntervalEnd || els[0].Timeout != time.Minute {
			t.Errorf("%s: start element %+v", tc.p, els[0])
		}
		if tc.end == "" {
			if len(els) != 1 {
				t.Errorf("%s: %d elements, want only a start", tc.p, len(els))
			}
			continue
		}
		if len(els) != 2 || !els[1].IntervalEnd || els[1].Timeout != 0 {
			t.Fatalf("%s: elements %+v", tc.p, els)
		}
		if got, _ := netip.AddrFromSlice(els[1].Key); got != netip.MustParseAddr(tc.end) {
			t.Errorf("%s: end %v, want %s", tc.p, got, tc.end)
		}
	}
}

// elements is elemsOf in the library's form, as a dump returns them.
func elements(p netip.Prefix, timeout time.Duration) []nftables.SetElement {
	var out []nftables.SetElement
	for _, e := range elemsOf(p, timeout) {
		out = append(out, nftables.SetElement{Key: e.key, IntervalEnd: e.end, Timeout: e.timeout})
	}
	return out
}

func pad16(b []byte) []byte {
	if len(b) == 4 {
		return append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, b...)
	}
	return b
}

func unmap(a netip.Addr) netip.Addr { return a.Unmap() }

// genPrefix draws a masked prefix of either family, biased to hosts and to the edges
// of the address space.
func genPrefix(t *rapid.T, label string) netip.Prefix {
	var a netip.Addr
	if rapid.Bool().Draw(t, label+"v6") {
		var b [16]byte
		for i := range b {
			b[i] = rapid.SampledFrom([]byte{0, 1, 0x7f, 0x80, 0xfe, 0xff, rapid.Byte().Draw(t, "b")}).Draw(t, label+"byte")
		}
		a = netip.AddrFrom16(b)
	} else {
		var b [4]byte
		for i := range b {
			b[i] = rapid.SampledFrom([]byte{0, 1, 0x7f, 0x80, 0xfe, 0xff, rapid.Byte().Draw(t, "b")}).Draw(t, label+"byte")
		}
		a = netip.AddrFrom4(b)
	}
	bits := rapid.OneOf(rapid.Just(a.BitLen()), rapid.IntRange(1, a.BitLen())).Draw(t, label+"bits")
	p, _ := a.Prefix(bits)
	return p
}

// Property: the elements of a prefix decode back to exactly that prefix, with its
// timeout, whatever order the kernel returns them in.
func TestElementsRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genPrefix(t, "p")
		to := time.Duration(rapid.IntRange(0, 1000).Draw(t, "s")) * time.Second
		els := elements(p, to)
		rs, err := ranges(rapid.Permutation(els).Draw(t, "perm"))
		if err != nil || len(rs) != 1 {
			t.Fatalf("ranges: %v %v", rs, err)
		}
		if rs[0].timeout != to {
			t.Fatalf("timeout %v, want %v", rs[0].timeout, to)
		}
		if got := prefixes(rs[0].start, rs[0].end); !slices.Equal(got, []netip.Prefix{p}) {
			t.Fatalf("prefixes = %v, want %v", got, p)
		}
	})
}

// Property: disjoint prefixes, adjacent ones included, survive a shuffled dump with
// nft(8)'s extra 0.0.0.0 end element.
func TestRangesMany(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 20).Draw(t, "n")
		var want []netip.Prefix
		var els []nftables.SetElement
		for range n {
			p := genPrefix(t, "p")
			if !p.Addr().Is4() {
				continue // one set per family, as in the kernel
			}
			overlap := false
			for _, q := range want {
				overlap = overlap || q.Overlaps(p)
			}
			if overlap {
				continue
			}
			want = append(want, p)
			els = append(els, elements(p, 0)...)
		}
		els = append(els, nftables.SetElement{Key: make([]byte, 4), IntervalEnd: true})
		rs, err := ranges(rapid.Permutation(els).Draw(t, "perm"))
		if err != nil {
			t.Fatal(err)
		}
		var got []netip.Prefix
		for _, r := range rs {
			got = append(got, prefixes(r.start, r.end)...)
		}
		// Adjacent prefixes come back as separate ranges (each has its own end element),
		// so the prefixes are exactly the ones put in.
		slices.SortFunc(want, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}

func TestPrefixesSplit(t *testing.T) {
	a := netip.MustParseAddr
	got := prefixes(a("10.0.0.1"), a("10.0.0.9"))
	want := []netip.Prefix{P("10.0.0.1/32"), P("10.0.0.2/31"), P("10.0.0.4/30"), P("10.0.0.8/32")}
	if !slices.Equal(got, want) {
		t.Errorf("prefixes = %v, want %v", got, want)
	}
	if got := prefixes(a("128.0.0.0"), netip.Addr{}); !slices.Equal(got, []netip.Prefix{P("128.0.0.0/1")}) {
		t.Errorf("open range = %v", got)
	}
}

func TestResolve(t *testing.T) {
	h := time.Hour
	got, err := resolve([]Ban{
		{Prefix: P("10.0.0.1/32"), Timeout: h},
		{Prefix: P("2001:db8::5/128"), Timeout: 2 * h},
		{Prefix: P("10.0.0.1/32"), Timeout: 3 * h}, // later wins
		{Prefix: P("2001:db8::/64"), Timeout: h},   // overlapping bans stay apart
		{Prefix: P("::ffff:10.0.0.9/128"), Timeout: 0},
		{Prefix: P("10.0.0.8/29"), Timeout: h},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Ban{
		{Prefix: P("10.0.0.1/32"), Timeout: 3 * h},
		{Prefix: P("2001:db8::5/128"), Timeout: 2 * h},
		{Prefix: P("2001:db8::/64"), Timeout: h},
		{Prefix: P("10.0.0.9/32"), Timeout: 0},
		{Prefix: P("10.0.0.8/29"), Timeout: h},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); d != "" {
		t.Errorf("resolve (-want +got):\n%s", d)
	}
	for _, bad := range [][]Ban{
		{{Prefix: P("0.0.0.0/0")}},
		{{Prefix: P("10.0.0.1/32"), Timeout: -time.Second}},
		{{Prefix: P("10.0.0.1/32"), Timeout: 200 * 365 * 24 * time.Hour}},
	} {
		if _, err := resolve(bad); err == nil {
			t.Errorf("resolve(%v) gave no error", bad)
		}
	}
}

// Property: resolve gives each normalised prefix once, with the last timeout given.
func TestResolveProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "n")
		var in []Ban
		for range n {
			in = append(in, Ban{Prefix: genPrefix(t, "p"), Timeout: time.Duration(rapid.IntRange(0, 3).Draw(t, "h")) * time.Hour})
		}
		out, err := resolve(in)
		last := map[netip.Prefix]time.Duration{}
		for _, b := range in {
			p, nerr := netaddr.BanPrefix(b.Prefix)
			if nerr != nil {
				if err == nil {
					t.Fatalf("resolve accepted %v", b.Prefix)
				}
				return
			}
			last[p] = b.Timeout
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(last) {
			t.Fatalf("%d bans out, %d distinct prefixes in", len(out), len(last))
		}
		for _, o := range out {
			if to, ok := last[o.Prefix]; !ok || to != o.Timeout {
				t.Fatalf("%v: timeout %v, want the last given %v", o.Prefix, o.Timeout, to)
			}
		}
	})
}

func TestSetNames(t *testing.T) {
	for _, c := range []struct {
		p    string
		name string
	}{{"10.0.0.1/32", "ban4"}, {"10.0.0.0/24", "ban4_24"}, {"2001:db8::1/128", "ban6"}, {"2001:db8::/64", "ban6_64"}, {"2001:db8::8000/113", "ban6_113"}} {
		name := setName(P(c.p))
		if name != c.name {
			t.Errorf("setName(%s) = %s, want %s", c.p, name, c.name)
		}
		v6, bits, ok := parseSetName(name)
		if !ok || v6 != P(c.p).Addr().Is6() || bits != P(c.p).Bits() {
			t.Errorf("parseSetName(%s) = %v %d %v", name, v6, bits, ok)
		}
	}
	for _, bad := range []string{"ban", "ban4_", "ban4_32", "ban4_0", "ban4_033", "ban6_129", "ban5", "ban4_x", "other"} {
		if _, _, ok := parseSetName(bad); ok {
			t.Errorf("parseSetName(%q) accepted", bad)
		}
	}
	got := []string{"ban6_64", "ban4_24", "ban6", "ban4", "ban4_16"}
	slices.SortFunc(got, cmpSets)
	if want := []string{"ban4", "ban4_24", "ban4_16", "ban6", "ban6_64"}; !slices.Equal(got, want) {
		t.Errorf("sorted %v, want %v", got, want)
	}
}

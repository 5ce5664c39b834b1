package safety

import (
	"net/netip"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/netaddr"
)

// host is the picture of a typical dual-stack host on one LAN.
func host() *View {
	return NewView(Inputs{
		Own: addrs("192.0.2.10", "2001:db8:77::10", "fe80::10"),
		Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"),
			netip.MustParsePrefix("2001:db8:77::/64"), netip.MustParsePrefix("fe80::/64")},
		Gateways:  addrs("192.0.2.1", "fe80::1"),
		Resolvers: addrs("192.0.2.53", "2001:db8:53::53"),
		Ignore:    netaddr.NewSet([]netip.Prefix{netip.MustParsePrefix("2001:db8:77::200/128"), netip.MustParsePrefix("198.51.100.0/24")}),
	})
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestSource(t *testing.T) {
	v := host()
	tests := []struct {
		addr string
		want Class
	}{
		{"203.0.113.7", Allowed},
		{"2001:db8:77::dead", Allowed}, // an on-link neighbour can really scan
		{"fe80::1234", Allowed},
		{"192.0.2.10", Protected},
		{"192.0.2.1", Protected},
		{"fe80::1", Protected},
		{"192.0.2.53", Protected},
		{"2001:db8:53::53", Protected},
		{"2001:db8:77::200", Protected},
		{"198.51.100.9", Protected},
		{"127.0.0.1", Protected},
		{"::1", Protected},
		{"0.0.0.0", Protected},
		{"::", Protected},
		{"255.255.255.255", Impossible},
		{"192.0.2.255", Impossible}, // the LAN's broadcast address
		{"192.0.2.0", Impossible},   // and its network address
		{"224.0.0.251", Impossible},
		{"239.255.255.250", Impossible},
		{"240.1.2.3", Impossible},
		{"169.254.3.4", Impossible},
		{"0.1.2.3", Impossible},
		{"127.5.5.5", Impossible},
		{"ff02::1", Impossible},
		{"::2", Impossible},
		{"2001:db8:77::", Impossible}, // subnet-router anycast
		{"64:ff9b::203.0.113.7", Allowed},
	}
	for _, tt := range tests {
		if got := v.Source(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Source(%s) = %d, want %d", tt.addr, got, tt.want)
		}
	}
}

func TestWiden(t *testing.T) {
	v := host()
	tests := []struct {
		addr string
		bits int
		want string // "" : refused
	}{
		{"2001:db8:99::5", 64, "2001:db8:99::/64"},         // a scanner elsewhere: its /64
		{"2001:db8:77::dead", 64, "2001:db8:77::8000/113"}, // on our /64: misses ::, ::10, ::200
		{"fe80::1234", 64, "fe80::1000/116"},
		{"::2", 64, ""},
		{"2001:db8:53::9", 48, "2001:db8:53::/122"},
		{"203.0.113.7", 32, "203.0.113.7/32"},
		{"192.0.2.10", 32, ""},
		{"2001:db8:53::53", 64, ""},
	}
	for _, tt := range tests {
		p, ok := v.Widen(netip.MustParseAddr(tt.addr), tt.bits)
		got := ""
		if ok {
			got = p.String()
		}
		if got != tt.want {
			t.Errorf("Widen(%s, %d) = %q, want %q", tt.addr, tt.bits, got, tt.want)
		}
	}
}

func TestCheckNamesWhatIsCovered(t *testing.T) {
	v := host()
	for p, want := range map[string]string{
		"192.0.2.0/24":      "gateway 192.0.2.1",
		"2001:db8:77::/64":  "ignored 2001:db8:77::200/128",
		"fe80::/64":         "gateway fe80::1",
		"::/64":             "this host's address ::1",
		"224.0.0.0/24":      "reserved or non-unicast 224.0.0.0/4",
		"192.0.2.255/32":    "the network or broadcast address of an own network 192.0.2.255",
		"198.51.100.128/25": "ignored 198.51.100.0/24",
	} {
		err := v.Check(netip.MustParsePrefix(p))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%s) = %v, want it to name %q", p, err, want)
		}
	}
	for _, p := range []string{"203.0.113.0/24", "2001:db8:99::/48", "10.0.0.0/8"} {
		if err := v.Check(netip.MustParsePrefix(p)); err != nil {
			t.Errorf("Check(%s) = %v, want nil", p, err)
		}
	}
}

// genAddr draws addresses clustered in a few small networks, so that random protected
// addresses and random scanners often share a /64 or a /24.
func genAddr() *rapid.Generator[netip.Addr] {
	return rapid.Custom(func(t *rapid.T) netip.Addr {
		last := byte(rapid.IntRange(0, 255).Draw(t, "last"))
		mid := byte(rapid.IntRange(0, 3).Draw(t, "mid"))
		switch rapid.IntRange(0, 4).Draw(t, "kind") {
		case 0:
			return netip.AddrFrom4([4]byte{10, 0, mid, last})
		case 1:
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, mid, 14: mid, 15: last})
		case 2:
			return netip.AddrFrom16([16]byte{0xfe, 0x80, 14: mid, 15: last})
		case 3:
			return netip.AddrFrom16([16]byte{15: last})
		default:
			return netip.AddrFrom4([4]byte{last, mid, last, mid})
		}
	})
}

func genPrefix() *rapid.Generator[netip.Prefix] {
	return rapid.Custom(func(t *rapid.T) netip.Prefix {
		a := genAddr().Draw(t, "a")
		p, _ := a.Prefix(rapid.IntRange(a.BitLen()/2, a.BitLen()).Draw(t, "bits"))
		return p
	})
}

// TestNoBanCoversAProtectedAddress is the gate's invariant, over random hosts: no
// prefix that any path lets through (a widened detection, an operator's prefix, a
// replayed journal record, all of which go through Check or Widen) covers an own
// address, a gateway, a resolver, an ignored network, loopback, the unspecified
// addresses or a non-unicast range.
func TestNoBanCoversAProtectedAddress(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := Inputs{
			Own:       rapid.SliceOfN(genAddr(), 0, 6).Draw(t, "own"),
			Networks:  rapid.SliceOfN(genPrefix(), 0, 3).Draw(t, "nets"),
			Gateways:  rapid.SliceOfN(genAddr(), 0, 3).Draw(t, "gateways"),
			Resolvers: rapid.SliceOfN(genAddr(), 0, 3).Draw(t, "resolvers"),
			Ignore:    netaddr.NewSet(rapid.SliceOfN(genPrefix(), 0, 4).Draw(t, "ignore")),
		}
		v := NewView(in)
		var bans []netip.Prefix
		for _, a := range rapid.SliceOfN(genAddr(), 1, 8).Draw(t, "scanners") {
			if p, ok := v.Widen(a, rapid.IntRange(0, 128).Draw(t, "bits")); ok {
				if !p.Contains(a) {
					t.Fatalf("Widen(%s) = %s does not hold the scanner", a, p)
				}
				bans = append(bans, p)
			}
		}
		for _, p := range rapid.SliceOfN(genPrefix(), 1, 8).Draw(t, "operator") {
			if v.Check(p) == nil {
				bans = append(bans, p)
			}
		}
		protected := append(append(append(append([]netip.Addr{}, in.Own...), in.Gateways...), in.Resolvers...), always...)
		for _, b := range bans {
			for _, a := range protected {
				if b.Contains(a.Unmap()) {
					t.Fatalf("ban %s covers protected %s", b, a)
				}
			}
			for _, q := range append(in.Ignore.Prefixes(), impossibleRanges...) {
				if q.Overlaps(b) {
					t.Fatalf("ban %s overlaps %s", b, q)
				}
			}
			for _, n := range in.Networks {
				for _, e := range edges(n) {
					if b.Contains(e) {
						t.Fatalf("ban %s covers %s, an edge of own network %s", b, e, n)
					}
				}
			}
		}
	})
}

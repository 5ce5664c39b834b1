package netaddr

import (
	"net/netip"
	"testing"
)

func TestCanonical(t *testing.T) {
	zoned := func(a string, bits int) netip.Prefix {
		return netip.PrefixFrom(netip.MustParseAddr(a), bits)
	}
	for _, c := range []struct {
		in   netip.Prefix
		want string
	}{
		{netip.MustParsePrefix("10.0.0.5/24"), "10.0.0.0/24"},
		{netip.MustParsePrefix("::ffff:10.0.0.9/128"), "10.0.0.9/32"},
		{netip.MustParsePrefix("::ffff:10.0.0.0/104"), "10.0.0.0/8"},
		{netip.MustParsePrefix("::ffff:0.0.0.0/96"), "0.0.0.0/0"},
		{netip.MustParsePrefix("::ffff:0.0.0.0/95"), "::fffe:0:0/95"}, // reaches past the mapped range
		{netip.MustParsePrefix("2001:db8::dead:1/64"), "2001:db8::/64"},
		{zoned("fe80::1%eth0", 64), "fe80::/64"},
		{zoned("::ffff:192.0.2.1%x", 128), "192.0.2.1/32"},
	} {
		if got := Canonical(c.in); got.String() != c.want {
			t.Errorf("Canonical(%s) = %s, want %s", c.in, got, c.want)
		}
	}
	if Canonical(netip.Prefix{}).IsValid() {
		t.Error("an invalid prefix became valid")
	}
}

func TestBanPrefix(t *testing.T) {
	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("::ffff:0.0.0.0/96")} {
		if _, err := BanPrefix(bad); err == nil {
			t.Errorf("BanPrefix(%v) accepted", bad)
		}
	}
	if q, err := BanPrefix(netip.MustParsePrefix("::ffff:10.1.2.3/120")); err != nil || q.String() != "10.1.2.0/24" {
		t.Errorf("BanPrefix = %v, %v", q, err)
	}
}

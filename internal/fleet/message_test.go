package fleet

import (
	"net/netip"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/bans"
)

func TestSubject(t *testing.T) {
	for p, want := range map[string]string{
		"203.0.113.7/32":  "portsentry.ban.web1.v4.203-0-113-7_32",
		"198.51.100.0/24": "portsentry.ban.web1.v4.198-51-100-0_24",
		"2001:db8::/64":   "portsentry.ban.web1.v6.2001-db8--_64",
		"2001:db8::1/128": "portsentry.ban.web1.v6.2001-db8--1_128",
	} {
		if got := Subject("web1", netip.MustParsePrefix(p)); got != want {
			t.Errorf("Subject(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := FromBan("a", OpBan, bans.Ban{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Start: time.Now()}, time.Now())
	if _, err := Decode(Subject("a", good.Prefix), good.Encode()); err != nil {
		t.Fatalf("good message refused: %v", err)
	}
	wide := good
	wide.Prefix = netip.MustParsePrefix("10.0.0.0/7")
	unmasked := good
	unmasked.Prefix = netip.PrefixFrom(netip.MustParseAddr("203.0.113.7"), 24)
	badOp := good
	badOp.Op = "purge"
	for _, tc := range []struct {
		name, subject string
		data          []byte
		want          error
	}{
		{"another origin's subject", Subject("b", good.Prefix), good.Encode(), errForged},
		{"another prefix's subject", Subject("a", netip.MustParsePrefix("203.0.113.8/32")), good.Encode(), errForged},
		{"too wide", Subject("a", wide.Prefix), wide.Encode(), errTooWide},
		{"host bits set", Subject("a", unmasked.Prefix.Masked()), unmasked.Encode(), errMalformed},
		{"unknown op", Subject("a", good.Prefix), badOp.Encode(), errMalformed},
		{"not JSON", Subject("a", good.Prefix), []byte("ban 203.0.113.7"), errMalformed},
	} {
		if _, err := Decode(tc.subject, tc.data); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestMessageRoundTrip: whatever local ban is published, the receiver decodes it on
// its subject into the same ban, and the same change always gets the same id.
func TestMessageRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var a netip.Addr
		if rapid.Bool().Draw(t, "v6") {
			a = netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "a16")))
		} else {
			a = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "a4")))
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		lo := minBits4
		if a.Is6() {
			lo = minBits6
		}
		p := netip.PrefixFrom(a, rapid.IntRange(lo, a.BitLen()).Draw(t, "bits")).Masked()
		start := time.UnixMilli(rapid.Int64Range(1, 4e12).Draw(t, "start"))
		b := bans.Ban{Prefix: p, Start: start, Offences: rapid.IntRange(1, 50).Draw(t, "n")}
		if rapid.Bool().Draw(t, "timed") {
			b.Until = start.Add(time.Duration(rapid.Int64Range(1, 1e12).Draw(t, "d")) * time.Millisecond)
		}
		origin := rapid.StringMatching(`[A-Za-z0-9_-]{1,64}`).Draw(t, "origin")
		m := FromBan(origin, OpBan, b, start)
		got, err := Decode(Subject(origin, p), m.Encode())
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		rb := got.Ban()
		if rb.Prefix != p || !rb.Start.Equal(b.Start) || !rb.Until.Equal(b.Until) || rb.Reason.Origin != origin || got.ID() != m.ID() {
			t.Fatalf("sent %+v, received %+v", b, rb)
		}
	})
}

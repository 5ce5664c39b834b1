package fleet

import (
	"net/netip"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestStateModel: whatever messages arrive, in whatever order, the state enforces on
// each prefix the peers' ban that ends last among those in force (never this host's
// own), and no origin ever has more than PerOrigin bans counted.
func TestStateModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := time.UnixMilli(1_000_000_000)
		const perOrigin = 3
		st := newState("me", Limits{PerOrigin: perOrigin}, nil)
		origins := []string{"me", "a", "b", "c"}
		prefixes := []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.2/32"),
			netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.0.3/32"), netip.MustParsePrefix("2001:db8::/64")}
		model := map[key]Message{}
		counted := map[key]bool{}
		for range rapid.IntRange(1, 60).Draw(t, "n") {
			m := Message{V: 1, Origin: rapid.SampledFrom(origins).Draw(t, "origin"),
				Prefix: rapid.SampledFrom(prefixes).Draw(t, "prefix"),
				Op:     rapid.SampledFrom([]string{OpBan, OpBan, OpUnban, OpExpire}).Draw(t, "op"),
				Start:  now.UnixMilli() - 1000}
			switch rapid.IntRange(0, 2).Draw(t, "end") {
			case 1:
				m.End = now.UnixMilli() - rapid.Int64Range(0, 500).Draw(t, "past")
			case 2:
				m.End = now.UnixMilli() + rapid.Int64Range(1, 5000).Draw(t, "future")
			}
			k := key{m.Origin, m.Prefix}
			counts := m.Origin != "me" && m.Active(now)
			n := 0
			for kk, c := range counted {
				if c && kk.origin == m.Origin {
					n++
				}
			}
			wantRefused := counts && !counted[k] && n >= perOrigin
			if got := st.put(m, now, false); (got != "") != wantRefused {
				t.Fatalf("put %+v: refused %q, want refused %v (%d counted)", m, got, wantRefused, n)
			}
			if !wantRefused {
				model[k] = m
				counted[k] = counts
			}
		}
		for _, p := range prefixes {
			var best Message
			found := false
			for k, m := range model {
				if k.prefix == p && k.origin != "me" && m.Active(now) && (!found || later(m, best)) {
					best, found = m, true
				}
			}
			got, ok := st.effective(p, now)
			if ok != found || ok && (got.Origin != best.Origin || got.End != best.End) {
				t.Fatalf("%s: effective %+v %v, want %+v %v", p, got, ok, best, found)
			}
		}
		for _, o := range origins {
			if st.active[o] > perOrigin {
				t.Fatalf("%s has %d bans counted", o, st.active[o])
			}
		}
	})
}

func TestBucket(t *testing.T) {
	b := &bucket{per: 60}
	now := time.Unix(0, 0)
	for i := range 60 {
		if !b.take(now) {
			t.Fatalf("token %d refused: a minute's worth may come at once", i)
		}
	}
	if b.take(now) {
		t.Fatal("the 61st token in the same instant was granted")
	}
	if !b.take(now.Add(time.Second)) {
		t.Fatal("no token a second later at 60 a minute")
	}
}

package fleet

import (
	"cmp"
	"net/netip"
	"time"
)

// key is one origin's subject about one prefix.
type key struct {
	origin string
	prefix netip.Prefix
}

// Limits bound what one peer can make this host enforce.
type Limits struct {
	// PerOrigin is the most active bans one peer may have enforced here (count).
	PerOrigin int
	// RatePerOrigin is the most new bans a minute one peer may have enforced here
	// live (a minute's worth may come at once); a replay after a reconnect is bound by
	// PerOrigin only, and bans refused for the rate are taken at the next replay.
	RatePerOrigin int
}

// DefaultLimits: a peer's bans are at most BAN_CAP's default, and a peer under a scan
// of a whole network can still pass on its bans within seconds.
var DefaultLimits = Limits{PerOrigin: 10000, RatePerOrigin: 6000}

// state is the fleet's bans as this host knows them: the last message of every
// subject, whether or not it is enforced here. It belongs to the agent's session
// goroutine.
type state struct {
	self   string
	limits Limits
	last   map[key]entry
	// byPrefix indexes the origins that have a message about a prefix.
	byPrefix map[netip.Prefix]map[string]struct{}
	active   map[string]int // active bans per origin, own excluded
	rate     map[string]*bucket
	// dismissedAt is when an operator here last lifted remote bans of a prefix (unix
	// ms): messages made before are not enforced again.
	dismissedAt func(netip.Prefix) int64
}

// entry is a subject's last message, and whether it counts against its origin's
// PerOrigin (an active peer's ban when recorded, until it ends).
type entry struct {
	msg     Message
	counted bool
}

func newState(self string, l Limits, dismissedAt func(netip.Prefix) int64) *state {
	return &state{self: self, limits: l, last: map[key]entry{}, byPrefix: map[netip.Prefix]map[string]struct{}{},
		active: map[string]int{}, rate: map[string]*bucket{}, dismissedAt: dismissedAt}
}

// put records m, the newest message of its subject, and reports why it is not
// enforced ("" if it may be: the local rules still judge it). live is false during a
// replay, which the rate limit does not apply to.
func (s *state) put(m Message, now time.Time, live bool) (refused string) {
	k := key{m.Origin, m.Prefix}
	counts := m.Origin != s.self && m.Active(now)
	if counts && !s.last[k].counted {
		if s.limits.PerOrigin > 0 && s.active[m.Origin] >= s.limits.PerOrigin {
			return "origin_cap"
		}
		if live && !s.bucket(m.Origin).take(now) {
			return "origin_rate"
		}
	}
	s.forget(k)
	s.last[k] = entry{msg: m, counted: counts}
	if s.byPrefix[m.Prefix] == nil {
		s.byPrefix[m.Prefix] = map[string]struct{}{}
	}
	s.byPrefix[m.Prefix][m.Origin] = struct{}{}
	if counts {
		s.active[m.Origin]++
	}
	return ""
}

// forget drops k's message.
func (s *state) forget(k key) {
	old, ok := s.last[k]
	if !ok {
		return
	}
	delete(s.last, k)
	if o := s.byPrefix[k.prefix]; o != nil {
		delete(o, k.origin)
		if len(o) == 0 {
			delete(s.byPrefix, k.prefix)
		}
	}
	if old.counted {
		s.active[k.origin]--
	}
}

// sweep stops counting the peers' bans that have run out since they were recorded.
func (s *state) sweep(now time.Time) {
	for k, e := range s.last {
		if e.counted && !e.msg.Active(now) {
			e.counted = false
			s.last[k] = e
			s.active[k.origin]--
		}
	}
}

// effective is the remote ban to enforce on p: of the peers' active bans not dismissed
// here, the one that ends last (permanent ones last of all), the first origin by name
// among equals; false when none.
func (s *state) effective(p netip.Prefix, now time.Time) (Message, bool) {
	var best Message
	found := false
	var dismissed int64
	if s.dismissedAt != nil && len(s.byPrefix[p]) > 0 {
		dismissed = s.dismissedAt(p)
	}
	for origin := range s.byPrefix[p] {
		m := s.last[key{origin, p}].msg
		if origin == s.self || !m.Active(now) || dismissed > 0 && m.At <= dismissed {
			continue
		}
		if !found || later(m, best) {
			best, found = m, true
		}
	}
	return best, found
}

// later reports whether a should be enforced rather than b.
func later(a, b Message) bool {
	ea, eb := a.End, b.End
	if ea == 0 {
		ea = 1<<63 - 1
	}
	if eb == 0 {
		eb = 1<<63 - 1
	}
	if c := cmp.Compare(ea, eb); c != 0 {
		return c > 0
	}
	return a.Origin < b.Origin
}

// own returns this host's messages, by prefix.
func (s *state) own() map[netip.Prefix]Message {
	out := map[netip.Prefix]Message{}
	for k, e := range s.last {
		if k.origin == s.self {
			out[k.prefix] = e.msg
		}
	}
	return out
}

// prefixes lists every prefix some peer's message is about.
func (s *state) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.byPrefix))
	for p := range s.byPrefix {
		out = append(out, p)
	}
	return out
}

func (s *state) bucket(origin string) *bucket {
	b := s.rate[origin]
	if b == nil {
		b = &bucket{per: s.limits.RatePerOrigin}
		s.rate[origin] = b
	}
	return b
}

// bucket is a token bucket of per tokens a minute, holding at most per; 0 is no limit.
type bucket struct {
	per    int
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time) bool {
	if b.per <= 0 {
		return true
	}
	if b.at.IsZero() {
		b.tokens = float64(b.per)
	} else {
		b.tokens = min(float64(b.per), b.tokens+now.Sub(b.at).Minutes()*float64(b.per))
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
)

// interval is the half-open key range [start, end) of one prefix; end is nil when the
// prefix reaches the top of the address space (an open interval: no end element).
type interval struct {
	start, end []byte
}

func toInterval(p netip.Prefix) interval {
	first := p.Addr()
	start := first.AsSlice()
	last := lastAddr(p)
	next := last.Next()
	if !next.IsValid() {
		return interval{start: start}
	}
	return interval{start: start, end: next.AsSlice()}
}

// lastAddr is the highest address in p (p must be masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// decoded is one range read back from the kernel.
type decoded struct {
	start, end netip.Addr // end is exclusive; invalid when the range is open
	timeout    time.Duration
	expires    time.Duration
}

// ranges pairs the start and end elements of an interval set dump (which the kernel
// returns in no guaranteed order) into ranges. Each start element is closed by the
// lowest end element above it; a start with none is open to the top of the space.
// Lone end elements (such as the 0.0.0.0 end element nft(8) adds) are ignored.
func ranges(els []nftables.SetElement) ([]decoded, error) {
	type key struct {
		addr netip.Addr
		end  bool
		el   *nftables.SetElement
	}
	keys := make([]key, 0, len(els))
	for i := range els {
		a, ok := netip.AddrFromSlice(els[i].Key)
		if !ok {
			return nil, fmt.Errorf("set element with a %d-byte key", len(els[i].Key))
		}
		keys = append(keys, key{addr: a, end: els[i].IntervalEnd, el: &els[i]})
	}
	// Sort by address; at equal addresses the end element (which closes the range
	// below) comes before the start element (which opens the next one).
	slices.SortFunc(keys, func(x, y key) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		default:
			return 1
		}
	})
	var out []decoded
	for i := 0; i < len(keys); i++ {
		if keys[i].end {
			continue
		}
		d := decoded{start: keys[i].addr, timeout: keys[i].el.Timeout, expires: keys[i].el.Expires}
		if i+1 < len(keys) && keys[i+1].end {
			d.end = keys[i+1].addr
			i++
		} else if i+1 < len(keys) {
			return nil, fmt.Errorf("set range starting at %v has no end element before the next range", d.start)
		}
		out = append(out, d)
	}
	return out, nil
}

// prefixes splits the range [start, end) (end invalid: to the top) into the fewest
// CIDR prefixes. A range added by this package is always exactly one prefix.
func prefixes(start, end netip.Addr) []netip.Prefix {
	var last netip.Addr
	if end.IsValid() {
		last = end.Prev()
	} else {
		b := bytes.Repeat([]byte{0xff}, start.BitLen()/8)
		last, _ = netip.AddrFromSlice(b)
	}
	var out []netip.Prefix
	for cur := start; cur.IsValid() && cur.Compare(last) <= 0; {
		// The widest prefix that starts at cur and does not pass last.
		bits := cur.BitLen()
		for bits > 0 {
			p, _ := cur.Prefix(bits - 1)
			if p.Addr() != cur || lastAddr(p).Compare(last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(cur, bits)
		out = append(out, p)
		cur = lastAddr(p).Next()
	}
	return out
}

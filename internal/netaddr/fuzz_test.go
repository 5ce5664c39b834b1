package netaddr

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/portsentry-go/portsentry/internal/diag"
)

// FuzzParseIgnore checks ParseIgnore never panics and only ever returns usable,
// normalised prefixes with diagnostics that point at real lines.
func FuzzParseIgnore(f *testing.F) {
	if b, err := os.ReadFile("testdata/debian.portsentry.ignore.static"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"", "\n", "10.9.9.5/24\n", "0.0.0.0/0\r\n", "::ffff:10.0.0.1/104 # x\n",
		"fe80::1%eth0/64\n", "192.168.0.0/255.255.0.0\n", "\uFEFF1.2.3.4\n", "1.2.3.4 junk\n",
		"2001:db8::/129\n", "/\n#\n/0\n", "::ffff:1.2.3.4/95\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, diags := ParseIgnore("fuzz", bytes.NewReader(data))
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("bad prefix %v (valid %v)", p, p.IsValid())
			}
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, d := range diags {
			if d.File != "fuzz" || d.Line < 1 || d.Line > lines || d.Msg == "" {
				t.Fatalf("bad diagnostic %+v (input has %d lines)", d, lines)
			}
			if d.Severity != diag.Error && d.Severity != diag.Warning {
				t.Fatalf("bad severity in %+v", d)
			}
		}
		if len(ps)+len(diags.Errors()) > lines {
			t.Fatalf("%d prefixes and %d errors from %d lines", len(ps), len(diags.Errors()), lines)
		}
		if !isSubsequence(stdlibExpect(data), ps) {
			t.Fatalf("result %v misses or reorders lines the standard library parses as %v", ps, stdlibExpect(data))
		}
		NewSet(ps) // must not panic either
	})
}

// stdlibExpect is an independent oracle: every line whose address field the standard
// library's strict parsers accept must yield that network, normalised. ParseIgnore
// also accepts a few forms they reject (zones, "/08", a byte order mark); for those
// lines no claim is made.
func stdlibExpect(data []byte) []netip.Prefix {
	var want []netip.Prefix
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p, err := netip.ParsePrefix(f[0])
		if !strings.Contains(f[0], "/") {
			a, aerr := netip.ParseAddr(f[0])
			if aerr != nil || a.Zone() != "" {
				continue
			}
			p, err = netip.PrefixFrom(a, a.BitLen()), nil
		}
		if err != nil {
			continue
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		want = append(want, p)
	}
	return want
}

func isSubsequence(want, got []netip.Prefix) bool {
	i := 0
	for _, p := range got {
		if i < len(want) && p == want[i] {
			i++
		}
	}
	return i == len(want)
}

//go:build linux

package listening

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// A small pool of addresses and ports makes collisions between random listeners and
// random queries likely; it covers wildcards, mapped and zoned forms.
var (
	addrPool = []netip.Addr{
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("::"),
		netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("127.0.0.2"),
		netip.MustParseAddr("::1"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::ffff:127.0.0.1"),
		netip.MustParseAddr("::ffff:0.0.0.0"),
		netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("fe80::1"),
	}
	portPool = []uint16{0, 1, 63, 64, 1001, 65535}
)

func genListener(proto probe.Proto) *rapid.Generator[listener] {
	return rapid.Custom(func(t *rapid.T) listener {
		return newListener(proto,
			rapid.SampledFrom(addrPool).Draw(t, "addr"),
			rapid.SampledFrom(portPool).Draw(t, "port"),
			rapid.Bool().Draw(t, "v6only"))
	})
}

// modelInUse is the specification, written as plainly as possible: some socket of the
// protocol on the port whose address is the destination or a wildcard covering it.
func modelInUse(ls []listener, proto probe.Proto, dst netip.AddrPort) bool {
	a := dst.Addr().Unmap().WithZone("")
	for _, l := range ls {
		if l.proto != proto || l.port != dst.Port() || !a.IsValid() {
			continue
		}
		switch {
		case l.addr == a:
			return true
		case l.addr == netip.IPv4Unspecified() && a.Is4():
			return true
		case l.addr == netip.IPv6Unspecified() && (a.Is6() || l.dual):
			return true
		}
	}
	return false
}

func modelPorts(ls []listener, proto probe.Proto) []uint16 {
	var out []uint16
	for _, l := range ls {
		if l.proto == proto {
			out = append(out, l.port)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestSnapshotMatchesModel compares the bitmap/map index with the plain model on
// random socket sets and random destinations.
func TestSnapshotMatchesModel(t *testing.T) {
	protos := []probe.Proto{probe.TCP, probe.UDP}
	rapid.Check(t, func(t *rapid.T) {
		var ls []listener
		for _, p := range protos {
			ls = append(ls, rapid.SliceOf(genListener(p)).Draw(t, p.String())...)
		}
		s := newSnapshot(normalise(slices.Clone(ls)))
		for _, p := range protos {
			if diff := cmp.Diff(modelPorts(ls, p), s.table(p).ports); diff != "" {
				t.Fatalf("%v ports (-model +index):\n%s", p, diff)
			}
		}
		for range 20 {
			p := rapid.SampledFrom(protos).Draw(t, "qproto")
			dst := netip.AddrPortFrom(rapid.SampledFrom(addrPool).Draw(t, "qaddr"), rapid.SampledFrom(portPool).Draw(t, "qport"))
			if got, want := s.table(p).inUse(dst), modelInUse(ls, p, dst); got != want {
				t.Fatalf("InUse(%v, %s) = %v, model says %v; listeners %v", p, dst, got, want, ls)
			}
		}
	})
}

func TestNewListenerCanonical(t *testing.T) {
	for _, c := range []struct {
		addr   string
		v6only bool
		want   string
	}{
		{"::", false, "TCP [::]:1 dual"},
		{"::", true, "TCP [::]:1"},
		{"0.0.0.0", false, "TCP 0.0.0.0:1"},
		{"::1", false, "TCP [::1]:1"},
		{"::ffff:10.0.0.1", false, "TCP 10.0.0.1:1"},
		{"::ffff:0.0.0.0", false, "TCP 0.0.0.0:1"},
		{"fe80::1%eth0", false, "TCP [fe80::1]:1"},
	} {
		if got := newListener(probe.TCP, netip.MustParseAddr(c.addr), 1, c.v6only).String(); got != c.want {
			t.Errorf("newListener(%s, v6only=%v) = %s, want %s", c.addr, c.v6only, got, c.want)
		}
	}
}

func TestPortSetSorted(t *testing.T) {
	var s portSet
	want := []uint16{0, 1, 63, 64, 127, 128, 4096, 65534, 65535}
	for _, p := range slices.Backward(want) {
		s.add(p)
	}
	if diff := cmp.Diff(want, s.sorted()); diff != "" {
		t.Errorf("sorted (-want +got):\n%s", diff)
	}
	if s.has(2) || !s.has(65535) {
		t.Error("has is wrong")
	}
}

// benchSnapshot is a host with a realistic mix of sockets: a few wildcard services, many
// address-specific ones (containers, DNS on several addresses), in both families.
func benchSnapshot() *snapshot {
	var ls []listener
	for i := range 100 {
		p := uint16(1000 + i)
		ls = append(ls,
			newListener(probe.TCP, netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), p, false),
			newListener(probe.UDP, netip.MustParseAddr("2001:db8::53"), p, false))
	}
	ls = append(ls,
		newListener(probe.TCP, netip.IPv6Unspecified(), 22, false),
		newListener(probe.UDP, netip.IPv4Unspecified(), 68, false))
	return newSnapshot(normalise(ls))
}

var inUseCases = []struct {
	name  string
	proto probe.Proto
	dst   netip.AddrPort
	want  bool
}{
	{"wildcard-dual-v4", probe.TCP, netip.MustParseAddrPort("192.0.2.1:22"), true},
	{"specific-v4", probe.TCP, netip.MustParseAddrPort("10.0.50.1:1050"), true},
	{"specific-v4-other-addr", probe.TCP, netip.MustParseAddrPort("10.0.51.1:1050"), false},
	{"specific-v6", probe.UDP, netip.MustParseAddrPort("[2001:db8::53]:1099"), true},
	{"mapped-v4", probe.TCP, netip.MustParseAddrPort("[::ffff:10.0.7.1]:1007"), true},
	{"zoned-v6-miss", probe.UDP, netip.MustParseAddrPort("[fe80::1%eth0]:1001"), false},
	{"unused-port", probe.TCP, netip.MustParseAddrPort("192.0.2.1:8080"), false},
}

func newBenchTracker() *Tracker {
	tr := New(nil)
	tr.snap.Store(benchSnapshot())
	return tr
}

// TestInUseNoAlloc enforces the per-packet contract in plain go test, not only in the
// benchmark output.
func TestInUseNoAlloc(t *testing.T) {
	tr := newBenchTracker()
	for _, c := range inUseCases {
		if got := tr.InUse(c.proto, c.dst); got != c.want {
			t.Errorf("%s: InUse = %v, want %v", c.name, got, c.want)
		}
		if n := testing.AllocsPerRun(100, func() { tr.InUse(c.proto, c.dst) }); n != 0 {
			t.Errorf("%s: %v allocations per InUse", c.name, n)
		}
	}
}

func BenchmarkInUse(b *testing.B) {
	tr := newBenchTracker()
	for _, c := range inUseCases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tr.InUse(c.proto, c.dst)
			}
		})
	}
}

// BenchmarkInUseParallel: readers on every core never contend (atomic pointer load).
func BenchmarkInUseParallel(b *testing.B) {
	tr := newBenchTracker()
	dst := netip.MustParseAddrPort("10.0.50.1:1050")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.InUse(probe.TCP, dst)
		}
	})
}

// BenchmarkRefresh is the cost of one poll (four sock_diag dumps) in this namespace.
func BenchmarkRefresh(b *testing.B) {
	tr := New(nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Refresh(); err != nil {
			b.Fatal(err)
		}
	}
}

package report

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// histGen produces a synthetic history: a few heavy scanners, a middle class of
// returning hosts, and a long tail of one-off sources (what a random-source flood of
// spoofed packets leaves), some IPv6, some resolved names, one malformed line in
// badEvery. Time advances about 2.6 s a line, so a million lines span a month.
type histGen struct {
	rng      *rand.Rand
	epoch    int64
	badEvery int
	n        int
	// Truth, kept only when track is set.
	track    bool
	perHost  map[string]uint64
	bad      int
	lastLine []byte
}

func newHistGen(seed uint64, track bool) *histGen {
	g := &histGen{rng: rand.New(rand.NewPCG(seed, 42)), epoch: 1793000000, badEvery: 10007, track: track}
	if track {
		g.perHost = map[string]uint64{}
	}
	return g
}

// heavy are the scanners the top list must find.
var heavy = func() []string {
	var out []string
	for i := 0; i < 20; i++ {
		out = append(out, "203.0.113."+strconv.Itoa(i+1))
	}
	return out
}()

// appendLine appends the next line (with newline) to buf.
func (g *histGen) appendLine(buf []byte) []byte {
	g.n++
	g.epoch += int64(1 + g.rng.IntN(4))
	if g.n%g.badEvery == 0 {
		g.bad++
		return append(buf, "1795539100 - 11/24/2026 18:51:40 Host: cut.short.exa\n"...)
	}
	var addr string
	r := g.rng.IntN(100)
	switch {
	case r < 20: // 1% each
		addr = heavy[g.rng.IntN(len(heavy))]
	case r < 60:
		addr = "198.51." + strconv.Itoa(g.rng.IntN(8)) + "." + strconv.Itoa(g.rng.IntN(250))
	case r < 65:
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		b[15] = byte(g.rng.IntN(256))
		b[14] = byte(g.rng.IntN(4))
		addr = netip.AddrFrom16(b).String()
	default: // spoofed, almost always new
		u := g.rng.Uint32()
		addr = netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}).String()
	}
	if g.track {
		g.perHost[addr]++
	}
	name := addr
	if r < 20 {
		name = "scanner-" + addr[len("203.0.113."):] + ".attacker.example"
	}
	port := 1 + g.rng.IntN(1024)
	proto := " TCP Blocked\n"
	if g.rng.IntN(4) == 0 {
		proto = " UDP Blocked\n"
	}
	t := time.Unix(g.epoch, 0).UTC()
	buf = strconv.AppendInt(buf, g.epoch, 10)
	buf = append(buf, " - "...)
	buf = t.AppendFormat(buf, "01/02/2006 15:04:05")
	buf = append(buf, " Host: "...)
	buf = append(buf, name...)
	buf = append(buf, '/')
	buf = append(buf, addr...)
	buf = append(buf, " Port: "...)
	buf = strconv.AppendInt(buf, int64(port), 10)
	return append(buf, proto...)
}

func genHistory(n int, seed uint64) []byte {
	g := newHistGen(seed, false)
	buf := make([]byte, 0, n*80)
	for i := 0; i < n; i++ {
		buf = g.appendLine(buf)
	}
	return buf
}

// TestStreamingBounded pushes 200,000 lines through a pipe and checks the figures
// against the generator's truth and that what the aggregator keeps stays bounded.
func TestStreamingBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("200k lines")
	}
	const lines = 200000
	g := newHistGen(1, true)
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		var buf []byte
		for i := 0; i < lines; i++ {
			buf = g.appendLine(buf[:0])
			w.Write(buf)
		}
		w.Flush()
		pw.Close()
	}()
	opts := Options{HostCapacity: 2000, Rows: 50, MaxBuckets: 300, Location: time.UTC}
	a := newAggregator(opts)
	if err := a.read(pr); err != nil {
		t.Fatal(err)
	}
	s := a.finish()

	// Bounded state: the host table, the buckets, the ring, the malformed list.
	if n := len(a.hosts.m); n > opts.HostCapacity || a.hosts.size() != n {
		t.Errorf("host table holds %d entries (map %d), capacity %d", a.hosts.size(), n, opts.HostCapacity)
	}
	if n := len(a.tl.counts); n > opts.MaxBuckets || a.tl.hi-a.tl.lo >= int64(opts.MaxBuckets) {
		t.Errorf("timeline keeps %d buckets over a span of %d", n, a.tl.hi-a.tl.lo+1)
	}
	if len(a.ring) != opts.Rows || len(s.Rows) != opts.Rows || len(s.Malformed.First) != DefaultMalformed {
		t.Errorf("ring %d rows %d malformed described %d", len(a.ring), len(s.Rows), len(s.Malformed.First))
	}
	for _, r := range a.ring {
		if cap(r.buf) > 256 {
			t.Errorf("ring row buffer grew to %d", cap(r.buf))
		}
	}

	// Figures.
	good := int64(lines - g.bad)
	if s.Probes != good || s.Malformed.Count != int64(g.bad) || s.Protocols.TCP+s.Protocols.UDP != good {
		t.Errorf("probes %d malformed %d (want %d, %d)", s.Probes, s.Malformed.Count, good, g.bad)
	}
	distinct := float64(len(g.perHost))
	if s.DistinctHostsExact || math.Abs(float64(s.DistinctHosts)-distinct) > 0.03*distinct {
		t.Errorf("distinct hosts %d (exact %v), true %v", s.DistinctHosts, s.DistinctHostsExact, distinct)
	}
	if s.TopScannersExact {
		t.Error("top scanners claim to be exact after evictions")
	}
	// The 20 heavy scanners (about 1% of lines each) are the top 20, with bounds that
	// hold the true count.
	for i, sc := range s.TopScanners {
		tr := g.perHost[sc.Address]
		if sc.Probes < tr || sc.Probes-sc.MaxOvercount > tr {
			t.Errorf("%s: %d-%d does not bound the true %d", sc.Address, sc.Probes, sc.MaxOvercount, tr)
		}
		if i < len(heavy) && (sc.Address[:len("203.0.113.")] != "203.0.113." || sc.Name == "") {
			t.Errorf("top scanner %d is %s %q, not a heavy scanner", i+1, sc.Address, sc.Name)
		}
	}
	// The newest line is the generator's last.
	if s.Rows[0].Epoch != g.epoch || *s.Last != g.epoch {
		t.Errorf("newest row %d, last %d, want %d", s.Rows[0].Epoch, *s.Last, g.epoch)
	}
}

// TestBoundedAsInputGrows: with twice the input, the host table and the ring stay at
// their caps and the buckets under theirs.
func TestBoundedAsInputGrows(t *testing.T) {
	if testing.Short() {
		t.Skip("400k lines")
	}
	size := func(n int) (int, int, int) {
		a := newAggregator(Options{HostCapacity: 500, Rows: 10, Location: time.UTC})
		if err := a.read(bytes.NewReader(genHistory(n, 7))); err != nil {
			t.Fatal(err)
		}
		return len(a.hosts.m), len(a.tl.counts), len(a.ring)
	}
	h1, b1, r1 := size(100000)
	h2, b2, r2 := size(200000)
	if h1 != 500 || h2 != 500 || r1 != r2 || b2 > DefaultMaxBuckets || b1 > b2 {
		t.Errorf("100k lines: %d hosts %d buckets %d rows; 200k: %d %d %d", h1, b1, r1, h2, b2, r2)
	}
}

// BenchmarkReport1M summarises a generated million-line history held in memory.
func BenchmarkReport1M(b *testing.B) {
	const lines = 1000000
	data := genHistory(lines, 3)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var s *Summary
	for b.Loop() {
		var err error
		s, err = Build(bytes.NewReader(data), Options{Location: time.UTC})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/lines, "ns/line")
	if s.Probes+s.Malformed.Count != lines {
		b.Fatalf("%d probes + %d malformed", s.Probes, s.Malformed.Count)
	}
}

// BenchmarkWriteHTML renders the default 1,000-row page of a million-line report.
func BenchmarkWriteHTML(b *testing.B) {
	s, err := Build(bytes.NewReader(genHistory(1000000, 3)), Options{Location: time.UTC})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteHTML(io.Discard, s, Options{Location: time.UTC}); err != nil {
			b.Fatal(err)
		}
	}
}

package packet

import (
	"testing"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// benchMix is what a stealth sensor sees during a mixed scan: SYN, FIN and XMAS probes,
// IPv4 with options, IPv6 with and without a hop-by-hop header, UDP of both families.
func benchMix() [][]byte {
	opts := tcp4(FlagSYN)
	opts.ipOpts = 12
	return [][]byte{
		tcp4(FlagSYN).build(),
		opts.build(),
		tcp6(FlagSYN).build(),
		tcp6(FlagSYN, hbh8).build(),
		udp4().build(),
		udp6().build(),
		tcp4(FlagFIN).build(),
		tcp4(FlagFIN | FlagPSH | FlagURG).build(),
	}
}

// TestDecodeNoAllocs covers successes and every error path: a flood of junk must cost
// no garbage either.
func TestDecodeNoAllocs(t *testing.T) {
	frag := tcp4(FlagSYN)
	frag.fragOff = 9
	pkts := append(benchMix(),
		frag.build(),
		tcp6(FlagSYN, frag185).build(),
		spec{src: v6a, dst: v6b, proto: 58, payload: 8}.build(),
		[]byte{0x45, 0, 0},
		[]byte{0x70},
		tcp4(0).build()[:30],
	)
	eth := ethernet(etherTypeIPv6, tcp6(FlagSYN, hbh8).build(), etherTypeVLAN)
	var h Header
	allocs := testing.AllocsPerRun(200, func() {
		for _, p := range pkts {
			if DecodeIP(p, &h) == nil && h.Proto == probe.TCP {
				_ = Classify(h.TCPFlags)
			}
		}
		_ = DecodeEthernet(eth, &h)
	})
	if allocs != 0 {
		t.Errorf("DecodeIP+Classify allocates %.1f times per run", allocs)
	}
}

func BenchmarkDecodeClassify(b *testing.B) {
	pkts := benchMix()
	var h Header
	var hits int
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if DecodeIP(pkts[i%len(pkts)], &h) != nil {
			b.Fatal("decode failed")
		}
		if h.Proto == probe.TCP && Candidate(h.TCPFlags) && len(Classify(h.TCPFlags)) > 0 {
			hits++
		}
	}
	if hits == 0 {
		b.Fatal("no TCP hits classified")
	}
}

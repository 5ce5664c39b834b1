package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// FuzzDecodeIP: any input either decodes to a header whose every field can be read back
// out of the input bytes, or fails with one of the package's errors; never a panic.
func FuzzDecodeIP(f *testing.F) {
	for _, s := range validSpecs() {
		f.Add(s.build())
	}
	f.Add(tcp6(FlagSYN, frag185).build())
	f.Add(spec{src: v6a, dst: v6b, proto: 50, payload: 16}.build())
	f.Add([]byte{0x45})
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		err := DecodeIP(b, &h)
		checkDeterministic(t, b, h, err)
		checkEthernetAgrees(t, b, h, err)
		if err != nil {
			checkFailure(t, b, h, err)
			return
		}
		if h.IPv6 {
			checkIPv6(t, b, h)
		} else {
			checkIPv4(t, b, h)
		}
	})
}

// checkDeterministic decodes again into a header full of stale values: the result must
// not depend on what the header held before.
func checkDeterministic(t *testing.T, b []byte, h Header, err error) {
	stale := Header{Src: v6a, Dst: v4a, Proto: probe.UDP, SrcPort: 1, DstPort: 2, TCPFlags: 0x3f, IPOptions: true, IPv6: true}
	err2 := DecodeIP(b, &stale)
	if err2 != err || stale != h {
		t.Fatalf("second decode differs: %v %+v, first %v %+v", err2, stale, err, h)
	}
}

// checkEthernetAgrees: the same packet behind an Ethernet header with the matching
// EtherType decodes identically.
func checkEthernetAgrees(t *testing.T, b []byte, h Header, err error) {
	if len(b) == 0 || (b[0]>>4 != 4 && b[0]>>4 != 6) {
		return
	}
	et := uint16(etherTypeIPv4)
	if b[0]>>4 == 6 {
		et = etherTypeIPv6
	}
	var e Header
	if err2 := DecodeEthernet(ethernet(et, b, etherTypeVLAN), &e); err2 != err || e != h {
		t.Fatalf("DecodeEthernet = %v %+v, DecodeIP = %v %+v", err2, e, err, h)
	}
}

func checkFailure(t *testing.T, b []byte, h Header, err error) {
	known := []error{ErrTruncated, ErrNotIP, ErrFragment, ErrProto, ErrMalformed}
	found := false
	for _, k := range known {
		found = found || errors.Is(err, k)
	}
	if !found {
		t.Fatalf("unknown error %v", err)
	}
	if h.Proto != 0 || h.SrcPort != 0 || h.DstPort != 0 || h.TCPFlags != 0 {
		t.Fatalf("transport fields set on error %v: %+v", err, h)
	}
	if h.Src.IsValid() {
		checkAddrs(t, b, h)
	} else if h != (Header{}) {
		t.Fatalf("partial header without addresses on %v: %+v", err, h)
	}
}

func checkAddrs(t *testing.T, b []byte, h Header) {
	var src, dst netip.Addr
	if h.IPv6 {
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	} else {
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	}
	if h.Src != src || h.Dst != dst {
		t.Fatalf("addresses %v %v, bytes say %v %v", h.Src, h.Dst, src, dst)
	}
	if src.Is4In6() || dst.Is4In6() {
		t.Fatalf("IPv4-mapped address accepted: %v %v", src, dst)
	}
}

func checkIPv4(t *testing.T, b []byte, h Header) {
	checkAddrs(t, b, h)
	ihl := int(b[0]&0x0f) * 4
	if b[0]>>4 != 4 || h.IPOptions != (ihl > 20) {
		t.Fatalf("version/IHL byte %#02x, IPOptions %v", b[0], h.IPOptions)
	}
	if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		t.Fatal("fragment decoded")
	}
	checkTransport(t, b[ihl:], b[9], h)
}

func checkIPv6(t *testing.T, b []byte, h Header) {
	checkAddrs(t, b, h)
	if b[0]>>4 != 6 || h.IPOptions {
		t.Fatalf("version byte %#02x, IPOptions %v", b[0], h.IPOptions)
	}
	off, proto := refTransport(b)
	checkTransport(t, b[off:], proto, h)
}

// refTransport finds the transport header of an accepted IPv6 packet by following the
// next-header bytes the plain way, without any of the decoder's checks.
func refTransport(b []byte) (off int, proto byte) {
	off, proto = 40, b[6]
	for proto != protoTCP && proto != protoUDP {
		size := 8 * (int(b[off+1]) + 1)
		switch proto {
		case protoAH:
			size = 4 * (int(b[off+1]) + 2)
		case protoFragment:
			size = 8
		}
		proto = b[off]
		off += size
	}
	return off, proto
}

func checkTransport(t *testing.T, p []byte, proto byte, h Header) {
	sport, dport := binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:])
	if h.SrcPort != sport || h.DstPort != dport {
		t.Fatalf("ports %d %d, bytes say %d %d", h.SrcPort, h.DstPort, sport, dport)
	}
	switch {
	case proto == protoTCP && h.Proto == probe.TCP:
		// The data offset is not checked: classic reported SYNs with a bogus one.
		if h.TCPFlags != p[13]&0x3f {
			t.Fatalf("TCP flags %#02x, byte %#02x, offset byte %#02x", h.TCPFlags, p[13], p[12])
		}
	case proto == protoUDP && h.Proto == probe.UDP:
		if l := binary.BigEndian.Uint16(p[4:]); h.TCPFlags != 0 || (l != 0 && l < 8) {
			t.Fatalf("UDP flags %#02x, length %d", h.TCPFlags, l)
		}
	default:
		t.Fatalf("protocol byte %d decoded as %v", proto, h.Proto)
	}
}

// FuzzReassemble feeds a small table arbitrary fragments: the input is a sequence of
// records, a length byte, a clock step byte (in 10 ms) and that many packet bytes. The
// table must never panic nor touch h when it reads nothing, and whatever it hands out
// must be a header DecodeIP could have produced: TCP or UDP, valid canonical addresses
// of one family, flags in range.
func FuzzReassemble(f *testing.F) {
	record := func(step byte, pkts ...[]byte) []byte {
		var b []byte
		for _, p := range pkts {
			b = append(b, byte(len(p)), step)
			b = append(b, p...)
		}
		return b
	}
	for _, p := range [][]byte{tcp4(FlagSYN).build(), tcp6(FlagFIN, dst16).build(), udp4().build(), udp6().build()} {
		f.Add(record(0, split(p, pieces(len(p)-fragmentable(p), 8), 1)...))
		f.Add(record(60, split(p, pieces(len(p)-fragmentable(p), 16), 2)...))
	}
	f.Add(record(1, fragOf(tcp4(FlagACK).build(), piece{0, 8}, 3, nil), fragOf(tcp4(FlagACK).build(), piece{8, 8}, 3, nil),
		fragOf(tcp4(FlagACK).build(), piece{8, 8}, 3, withFlags(tcp4(FlagACK).build(), 0, piece{8, 8}, FlagSYN))))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReassembler(16, time.Second)
		now := sec(0)
		adds, readings := 0, 0
		for len(b) >= 2 {
			n, step := int(b[0]), b[1]
			b = b[2:]
			n = min(n, len(b))
			pkt := b[:n:n]
			b = b[n:]
			now += int64(step) * int64(10*time.Millisecond)
			sentinel := Header{Src: v6a, SrcPort: 1, TCPFlags: 0x3f, IPOptions: true}
			h := sentinel
			adds++
			if !r.Add(pkt, now, &h) {
				if h != sentinel {
					t.Fatalf("Add returned false but changed h: %+v", h)
				}
				continue
			}
			readings++
			if h.Proto != probe.TCP && h.Proto != probe.UDP {
				t.Fatalf("reading with protocol %q: %+v", h.Proto, h)
			}
			if !h.Src.IsValid() || !h.Dst.IsValid() || h.Src.Is6() != h.IPv6 || h.Dst.Is6() != h.IPv6 ||
				h.Src.Is4In6() || h.Dst.Is4In6() || h.Src.Zone() != "" {
				t.Fatalf("bad addresses: %+v", h)
			}
			if h.TCPFlags&^flagMask != 0 || h.Proto == probe.UDP && h.TCPFlags != 0 || h.IPv6 && h.IPOptions {
				t.Fatalf("bad fields: %+v", h)
			}
		}
		st := r.Stats()
		if st.Seen != uint64(adds) || st.Reassembled > st.Seen || uint64(readings) > st.Reassembled+st.Overlaps {
			t.Fatalf("%d adds, %d readings, counters %+v", adds, readings, st)
		}
	})
}

package sensor

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/portsentry-go/portsentry/internal/capture"
	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

var (
	us      = netip.MustParseAddr("198.18.1.1")
	us6     = netip.MustParseAddr("2001:db8:1::1")
	scanner = netip.MustParseAddr("198.18.1.2")
)

// tcp4 builds an IPv4 TCP packet; optWords adds that many 4-byte IP option words.
func tcp4(src, dst netip.Addr, dport uint16, flags uint8, optWords int) []byte {
	ihl := 5 + optWords
	b := make([]byte, ihl*4+20)
	b[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, 6
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < ihl*4; i++ {
		b[i] = 1 // NOP options
	}
	t := b[ihl*4:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], dport)
	t[12] = 5 << 4
	t[13] = flags
	return b
}

// udp6 builds an IPv6 UDP packet from port 5353.
func udp6(src, dst netip.Addr, dport uint16) []byte {
	return testnet.BuildUDP(netip.AddrPortFrom(src, 5353), netip.AddrPortFrom(dst, dport), nil)
}

// judge runs one packet through the sensor as if it were alone in its ring block.
func (s *Stealth) judge(b []byte, info capture.Info) {
	r := &reader{}
	s.frame(b, info, r)
	s.flush(r)
}

func testStealth(inUse map[netip.AddrPort]bool) (*Stealth, *[]probe.Probe) {
	w := &Watch{}
	w.Set(probe.ModeSTCP, []uint16{143, 31337})
	w.Set(probe.ModeATCP, AdvancedPorts(1024, []uint16{113}))
	w.Set(probe.ModeSUDP, []uint16{7})
	var got []probe.Probe
	s := &Stealth{
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		handle: func(ps []probe.Probe) { got = append(got, ps...) },
		sent:   newReplies(),
		deps: StealthDeps{
			Own:   func(a netip.Addr) bool { return a == us || a == us6 },
			InUse: func(_ probe.Proto, d netip.AddrPort) bool { return inUse[d] },
		},
	}
	s.watch.Store(w)
	return s, &got
}

func TestFrameJudgesPackets(t *testing.T) {
	busy := netip.AddrPortFrom(us, 22)
	s, got := testStealth(map[netip.AddrPort]bool{busy: true})
	other := netip.MustParseAddr("198.18.1.99")
	cases := []struct {
		name  string
		frame []byte
		mode  probe.Mode
		scan  string
		opts  bool
	}{
		{"syn to listed port", tcp4(scanner, us, 143, packet.FlagSYN, 0), probe.ModeSTCP, "TCP SYN/Normal scan", false},
		{"null scan", tcp4(scanner, us, 31337, 0, 0), probe.ModeSTCP, " TCP NULL scan", false},
		{"xmas via advanced range", tcp4(scanner, us, 777, packet.FlagFIN|packet.FlagPSH|packet.FlagURG, 0), probe.ModeATCP, "TCP XMAS scan", false},
		{"ip options", tcp4(scanner, us, 143, packet.FlagFIN, 1), probe.ModeSTCP, "TCP FIN scan", true},
		{"udp over ipv6", udp6(netip.MustParseAddr("2001:db8:1::2"), us6, 7), probe.ModeSUDP, "", false},
		{"ack is never a hit", tcp4(scanner, us, 143, packet.FlagACK, 0), "", "", false},
		{"rst is never a hit", tcp4(scanner, us, 143, packet.FlagRST|packet.FlagSYN, 0), "", "", false},
		{"excluded port", tcp4(scanner, us, 113, packet.FlagSYN, 0), "", "", false},
		{"above advanced limit", tcp4(scanner, us, 2000, packet.FlagSYN, 0), "", "", false},
		{"local service listens", tcp4(scanner, us, 22, packet.FlagSYN, 0), "", "", false},
		{"forwarded, not for us", tcp4(scanner, other, 143, packet.FlagSYN, 0), "", "", false},
		{"truncated", tcp4(scanner, us, 143, packet.FlagSYN, 0)[:30], "", "", false},
	}
	for _, c := range cases {
		*got = (*got)[:0]
		s.judge(c.frame, capture.Info{})
		if c.mode == "" {
			if len(*got) != 0 {
				t.Errorf("%s: unexpected probe %+v", c.name, (*got)[0])
			}
			continue
		}
		if len(*got) != 1 {
			t.Errorf("%s: %d probes, want 1", c.name, len(*got))
			continue
		}
		p := (*got)[0]
		if p.Mode != c.mode || p.ScanType != c.scan || p.IPOptions != c.opts || !p.Spoofable {
			t.Errorf("%s: got mode %q scan %q opts %v", c.name, p.Mode, p.ScanType, p.IPOptions)
		}
	}
	st := s.Stats()
	if st.Malformed.Load() != 1 || st.InUse.Load() != 1 || st.NotForUs.Load() != 1 || st.Unwatched.Load() != 2 {
		t.Errorf("counters: %s", st)
	}
}

// TestFrameRemembersPerBlock: within a ring block the answers for the last destination
// are reused; a new block asks again, so a service that started (or an address that
// was added) counts from the next block on.
func TestFrameRemembersPerBlock(t *testing.T) {
	s, got := testStealth(nil)
	var asked int
	listening := false
	s.deps.InUse = func(probe.Proto, netip.AddrPort) bool { asked++; return listening }
	syn := tcp4(scanner, us, 143, packet.FlagSYN, 0)
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	s.frame(syn, capture.Info{}, r)
	listening = true
	s.frame(syn, capture.Info{}, r) // the same block: the first answer stands
	s.flush(r)
	if asked != 1 || len(*got) != 2 {
		t.Fatalf("one block: socket table asked %d times (want 1), %d probes (want 2)", asked, len(*got))
	}
	s.frame(syn, capture.Info{}, r)
	s.frame(tcp4(scanner, us, 31337, packet.FlagSYN, 0), capture.Info{}, r) // another port
	s.flush(r)
	if asked != 3 || len(*got) != 2 {
		t.Fatalf("next block: asked %d times (want 3), %d probes (want still 2): the listener was not seen", asked, len(*got))
	}
}

// TestFrameUDPReplies: a datagram a local client sent from a watched UDP port makes
// the answers from the same remote address and port, within the reply window, not
// probes, even when the client's socket is gone by then (the socket check says no).
func TestFrameUDPReplies(t *testing.T) {
	s, got := testStealth(nil)
	local, server := netip.AddrPortFrom(us, 7), netip.AddrPortFrom(scanner, 53)
	local6, server6 := netip.AddrPortFrom(us6, 7), netip.MustParseAddrPort("[2001:db8:1::2]:53")
	at := func(sec uint32) capture.Info { return capture.Info{Sec: 1795539421 + sec} }
	out := func(sec uint32) capture.Info { i := at(sec); i.Outgoing = true; return i }
	s.judge(testnet.BuildUDP(local, server, nil), out(0))
	s.judge(testnet.BuildUDP(local6, server6, nil), out(0))
	s.judge(testnet.BuildUDP(netip.AddrPortFrom(us, 8), server, nil), out(0)) // port 8 is not watched
	cases := []struct {
		name    string
		frame   []byte
		info    capture.Info
		isProbe bool
	}{
		{"answer", testnet.BuildUDP(server, local, nil), at(1), false},
		{"answer over IPv6", testnet.BuildUDP(server6, local6, nil), at(1), false},
		{"answer at the end of the window", testnet.BuildUDP(server, local, nil), at(30), false},
		{"other remote port", testnet.BuildUDP(netip.AddrPortFrom(scanner, 54), local, nil), at(1), true},
		{"other remote host", testnet.BuildUDP(netip.AddrPortFrom(netip.MustParseAddr("198.18.1.3"), 53), local, nil), at(1), true},
		{"after the window", testnet.BuildUDP(server, local, nil), at(31), true},
		{"long before the question", testnet.BuildUDP(server, local, nil), capture.Info{Sec: 1795539421 - 5}, true},
	}
	for _, c := range cases {
		*got = (*got)[:0]
		s.judge(c.frame, c.info)
		if isProbe := len(*got) == 1; isProbe != c.isProbe {
			t.Errorf("%s: probe %v, want %v", c.name, isProbe, c.isProbe)
		}
	}
	if st := s.Stats(); st.Outgoing.Load() != 2 || st.Replies.Load() != 3 {
		t.Errorf("counters: %s", st)
	}
}

func TestAdvancedPorts(t *testing.T) {
	got := AdvancedPorts(6, []uint16{2, 4})
	if len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 5 {
		t.Fatalf("got %v", got)
	}
}

func TestExplicitListWinsOverAdvancedRange(t *testing.T) {
	w := &Watch{}
	w.Set(probe.ModeSTCP, []uint16{80})
	w.Set(probe.ModeATCP, AdvancedPorts(1024, nil))
	if m := w.Mode(probe.TCP, 80); m != probe.ModeSTCP {
		t.Errorf("port 80: %q", m)
	}
	if m := w.Mode(probe.TCP, 81); m != probe.ModeATCP {
		t.Errorf("port 81: %q", m)
	}
	if m := w.Mode(probe.UDP, 80); m != "" {
		t.Errorf("udp 80: %q", m)
	}
}

// BenchmarkFrameDetect measures the per-packet path of the stealth modes: decode,
// classify, smart verify and the detector, on a mix where a few hundred scanners keep
// probing (most verdicts are then "already blocked", as under a real scan).
func BenchmarkFrameDetect(b *testing.B) {
	var mu sync.Mutex
	det := detect.New(0, detect.DefaultTableSize, 0)
	s, _ := testStealth(nil)
	s.handle = func(ps []probe.Probe) {
		mu.Lock()
		for i := range ps {
			if v := det.Judge(&ps[i], safety.Allowed); v.Action == detect.Respond {
				det.Mark(ps[i].Mode, ps[i].Src.Addr())
			}
		}
		mu.Unlock()
	}
	var frames [][]byte
	for i := 0; i < 256; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, 2, byte(i)})
		switch i % 4 {
		case 0:
			frames = append(frames, tcp4(src, us, 143, packet.FlagSYN, 0))
		case 1:
			frames = append(frames, tcp4(src, us, 777, packet.FlagFIN, 1))
		case 2:
			frames = append(frames, tcp4(src, us, 143, packet.FlagACK, 0)) // established
		case 3:
			frames = append(frames, udp6(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), us6, 7))
		}
	}
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	info := capture.Info{Sec: 1795539421}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.frame(frames[i%len(frames)], info, r)
		if i%len(frames) == len(frames)-1 {
			s.flush(r) // the end of a ring block
		}
	}
}

// TestFrameDoesNotAllocate: decoding and judging a block of packets allocates nothing.
func TestFrameDoesNotAllocate(t *testing.T) {
	s, _ := testStealth(nil)
	s.handle = func([]probe.Probe) {}
	frames := [][]byte{
		tcp4(scanner, us, 143, packet.FlagSYN, 0), tcp4(scanner, us, 777, packet.FlagFIN, 1),
		tcp4(scanner, us, 143, packet.FlagACK, 0), udp6(netip.MustParseAddr("2001:db8::9"), us6, 7),
	}
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	info := capture.Info{Sec: 1795539421}
	if a := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			s.frame(f, info, r)
		}
		s.flush(r)
	}); a != 0 {
		t.Errorf("%v allocations per block", a)
	}
}

// TestFrameFragments: probes split into fragments (nmap -f, --mtu 16, IPv6 fragment
// headers) give the same probe as the whole packet, once; fragments that never make a
// header, or make one that is no stealth probe, give none; the counters say so.
func TestFrameFragments(t *testing.T) {
	s, got := testStealth(nil)
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	src4, src6 := netip.AddrPortFrom(scanner, 40000), netip.MustParseAddrPort("[2001:db8:1::2]:40001")
	syn := testnet.BuildTCP(src4, netip.AddrPortFrom(us, 143), testnet.TCPSyn, nil)
	xmas6 := testnet.BuildTCP(src6, netip.AddrPortFrom(us6, 777), testnet.TCPFin|testnet.TCPPsh|testnet.TCPUrg, nil)
	opts := testnet.BuildTCP(src4, netip.AddrPortFrom(us, 31337), testnet.TCPFin, testnet.OptRecordRoute)
	udp := testnet.BuildUDP(src6, netip.AddrPortFrom(us6, 7), make([]byte, 40))
	ack := testnet.BuildTCP(src4, netip.AddrPortFrom(us, 143), testnet.TCPAck, nil)
	cases := []struct {
		name  string
		frags [][]byte
		mode  probe.Mode
		scan  string
		opts  bool
	}{
		{"v4 SYN, 8-byte fragments", testnet.Fragments(syn, 8, 1), probe.ModeSTCP, "TCP SYN/Normal scan", false},
		{"v4 SYN, 16-byte fragments", testnet.Fragments(syn, 16, 2), probe.ModeSTCP, "TCP SYN/Normal scan", false},
		{"v4 SYN, last fragment first", reverse(testnet.Fragments(syn, 8, 3)), probe.ModeSTCP, "TCP SYN/Normal scan", false},
		{"v4 FIN with IP options", testnet.Fragments(opts, 8, 4), probe.ModeSTCP, "TCP FIN scan", true},
		{"v6 XMAS, 8-byte fragments", testnet.Fragments(xmas6, 8, 5), probe.ModeATCP, "TCP XMAS scan", false},
		{"v6 UDP, 8-byte fragments", testnet.Fragments(udp, 8, 6), probe.ModeSUDP, "", false},
		{"v4 ACK is never a hit", testnet.Fragments(ack, 8, 7), "", "", false},
		{"non-first fragments alone", testnet.Fragments(syn, 8, 8)[1:], "", "", false},
	}
	info := capture.Info{Sec: 1795539421}
	for _, c := range cases {
		*got = (*got)[:0]
		for _, f := range c.frags {
			s.frame(f, info, r)
		}
		s.flush(r)
		if c.mode == "" {
			if len(*got) != 0 {
				t.Errorf("%s: unexpected probe %+v", c.name, (*got)[0])
			}
			continue
		}
		if len(*got) != 1 {
			t.Errorf("%s: %d probes, want 1", c.name, len(*got))
			continue
		}
		if p := (*got)[0]; p.Mode != c.mode || p.ScanType != c.scan || p.IPOptions != c.opts || !p.Spoofable {
			t.Errorf("%s: got %+v", c.name, p)
		}
	}
	st := s.Stats()
	if st.Fragments.Load() != 25 || st.FragReassembled.Load() != 7 || st.Malformed.Load() != 0 || st.Probes.Load() != 6 {
		t.Errorf("counters: %s", st)
	}
	info.Sec += 3600 // long past any timeout: the orphans go with the next fragment
	s.frame(testnet.Fragments(syn, 8, 9)[2], info, r)
	s.flush(r)
	if st.FragTimedOut.Load() != 1 { // the two orphans were one datagram
		t.Errorf("after the timeout: %s", st)
	}
}

func reverse(f [][]byte) [][]byte {
	out := make([][]byte, len(f))
	for i := range f {
		out[len(f)-1-i] = f[i]
	}
	return out
}

// TestFrameFragmentsDoNotAllocate: judging fragments, reassembled or not, allocates
// nothing once the reader's table exists.
func TestFrameFragmentsDoNotAllocate(t *testing.T) {
	s, _ := testStealth(nil)
	s.handle = func([]probe.Probe) {}
	src := netip.AddrPortFrom(scanner, 40000)
	var frames [][]byte
	frames = append(frames, testnet.Fragments(testnet.BuildTCP(src, netip.AddrPortFrom(us, 143), testnet.TCPSyn, nil), 8, 1)...)
	frames = append(frames, testnet.Fragments(testnet.BuildUDP(netip.MustParseAddrPort("[2001:db8::9]:53"), netip.AddrPortFrom(us6, 7), nil), 8, 2)...)
	frames = append(frames, testnet.Fragments(testnet.BuildTCP(src, netip.AddrPortFrom(us, 143), testnet.TCPAck, nil), 8, 3)[1])
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	info := capture.Info{Sec: 1795539421}
	r.reassembler(0)
	if a := testing.AllocsPerRun(100, func() {
		info.Sec += 100 // every run's datagrams are new ones
		for _, f := range frames {
			s.frame(f, info, r)
		}
		s.flush(r)
	}); a != 0 {
		t.Errorf("%v allocations per block", a)
	}
}

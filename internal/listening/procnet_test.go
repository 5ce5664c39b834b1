//go:build linux

package listening

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// readCaptured parses the testdata files captured from TestKernel's namespace on an
// x86-64 (little-endian) machine, regenerated with go test -update.
func readCaptured(t testing.TB) []listener {
	t.Helper()
	var all []listener
	for _, k := range kinds {
		data, err := os.ReadFile(filepath.Join("testdata", "proc_net_"+k.proc))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := parseProcNet(data, k.proto, binary.LittleEndian)
		if err != nil {
			t.Fatalf("%s: %v", k.proc, err)
		}
		all = append(all, ls...)
	}
	return normalise(all)
}

// snapTracker wraps a bare snapshot for verify.
type snapTracker struct{ s *snapshot }

func (s snapTracker) InUse(p probe.Proto, dst netip.AddrPort) bool {
	tb := s.s.table(p)
	return tb != nil && tb.inUse(dst)
}

// TestParseProcNetCaptured applies TestKernel's checks to the real /proc/net contents of
// the same sockets (including the TIME_WAIT, ESTABLISHED and connected UDP lines).
func TestParseProcNetCaptured(t *testing.T) {
	ls := readCaptured(t)
	s := newSnapshot(ls)
	verify(t, snapTracker{s}, true, false)
	if diff := cmp.Diff(worldTCP, s.tcp.ports); diff != "" {
		t.Errorf("TCP ports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(worldUDP, s.udp.ports); diff != "" {
		t.Errorf("UDP ports (-want +got):\n%s", diff)
	}
}

// TestParseProcNetTracker drives a Tracker through the /proc fallback over files in a
// temporary directory, including a missing tcp6/udp6 (IPv6 disabled).
func TestParseProcNetTracker(t *testing.T) {
	dir := t.TempDir()
	setProcDir(t, dir)
	copyCaptured(t, dir, "tcp", "udp")
	tr := New(nil)
	tr.src.procOnly = true
	if err := tr.Refresh(); err != nil {
		t.Fatal(err)
	}
	if !tr.InUse(probe.TCP, netip.MustParseAddrPort("127.0.0.1:1001")) {
		t.Error("127.0.0.1:1001/tcp not in use")
	}
	if tr.InUse(probe.TCP, netip.MustParseAddrPort("[::1]:1002")) {
		t.Error("[::1]:1002/tcp in use without a tcp6 file")
	}
	if diff := cmp.Diff([]uint16{1004, 1009, 1011}, tr.Ports(probe.UDP)); diff != "" {
		t.Errorf("UDP ports (-want +got):\n%s", diff)
	}
}

func setProcDir(t *testing.T, dir string) {
	old := procNetDir
	procNetDir = dir
	t.Cleanup(func() { procNetDir = old })
}

func copyCaptured(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join("testdata", "proc_net_"+n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseProcNetErrors(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue\n"
	for _, body := range []string{
		"   0: 0100007F:03E9 00000000:0000\n",             // too few fields
		"   0 0100007F:03E9 00000000:0000 0A\n",           // no "sl:"
		"   0: 0100007F03E9 00000000:0000 0A\n",           // no port
		"   0: 0100007:03E9 00000000:0000 0A\n",           // 7 hex digits
		"   0: 0100007G:03E9 00000000:0000 0A\n",          // not hex
		"   0: 0100007F:103E9 00000000:0000 0A\n",         // port > 65535
		"   0: 0100007F:03E9 00000000:0000 1FF\n",         // state > 255
		"   0: 0100007F:03E9 00000000:+000 0A\n",          // signed port
		"   0: +100007F:03E9 00000000:0000 0A\n",          // signed word
		"   0: 0100007F:03E9 00000000000000000000:0 0A\n", // 20 hex digits
	} {
		if ls, err := parseProcNet([]byte(header+body), probe.TCP, binary.LittleEndian); err == nil {
			t.Errorf("%q: no error, got %v", body, ls)
		}
	}
	// Blank lines and a header-only file are fine.
	if ls, err := parseProcNet([]byte(header+"\n\n"), probe.TCP, binary.LittleEndian); err != nil || ls != nil {
		t.Errorf("header only: %v, %v", ls, err)
	}
}

// TestParseProcNetByteOrder checks that the address words follow the given byte order,
// so captures from one machine mean the same on another.
func TestParseProcNetByteOrder(t *testing.T) {
	line := "   0: 7F000001:0016 00000000:0000 0A\n"
	ls, err := parseProcNet([]byte(line), probe.TCP, binary.BigEndian)
	if err != nil || len(ls) != 1 || ls[0].addr != netip.MustParseAddr("127.0.0.1") || ls[0].port != 22 {
		t.Errorf("big-endian: %v, %v", ls, err)
	}
}

// formatProc renders listeners the way the kernel prints them (little-endian words),
// for round-trip properties.
func formatProc(ls []listener, proto probe.Proto) string {
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue\n")
	state := "0A"
	if proto == probe.UDP {
		state = "07"
	}
	for i, l := range ls {
		a := l.addr.As16()
		words := a[:]
		if l.addr.Is4() {
			b4 := l.addr.As4()
			words = b4[:]
		}
		fmt.Fprintf(&b, "%4d: ", i)
		for j := 0; j < len(words); j += 4 {
			fmt.Fprintf(&b, "%08X", binary.LittleEndian.Uint32(words[j:]))
		}
		fmt.Fprintf(&b, ":%04X %s:0000 %s 00000000:00000000 00:00000000 00000000 0 0 1 2\n",
			l.port, strings.Repeat("0", len(words)*2), state)
	}
	return b.String()
}

// TestParseProcNetRoundTrip: any listener printed as the kernel does parses back to
// itself (IPv6 wildcards as dual-stack, the only thing /proc can say).
func TestParseProcNetRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		proto := rapid.SampledFrom([]probe.Proto{probe.TCP, probe.UDP}).Draw(t, "proto")
		ls := rapid.SliceOf(genListener(proto)).Draw(t, "listeners")
		for i := range ls {
			ls[i] = newListener(proto, ls[i].addr, ls[i].port, false)
		}
		got, err := parseProcNet([]byte(formatProc(ls, proto)), proto, binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(strs(normalise(ls)), strs(normalise(got))); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func strs(ls []listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	return out
}

// FuzzParseProcNet: arbitrary input never panics, and whatever is accepted is canonical.
func FuzzParseProcNet(f *testing.F) {
	for _, k := range kinds {
		if data, err := os.ReadFile(filepath.Join("testdata", "proc_net_"+k.proc)); err == nil {
			f.Add(data, k.proto == probe.UDP)
		}
	}
	f.Add([]byte("   0: 0100007F:03E9 00000000:0000 0A\n"), false)
	f.Add([]byte("0: 00000000000000000000000000000000:0 0:0 7"), true)
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		proto := probe.TCP
		if udp {
			proto = probe.UDP
		}
		ls, err := parseProcNet(data, proto, binary.LittleEndian)
		if err != nil && ls != nil {
			t.Fatalf("error %v with listeners %v", err, ls)
		}
		for _, l := range ls {
			checkCanonical(t, l, proto)
		}
	})
}

func checkCanonical(t *testing.T, l listener, proto probe.Proto) {
	t.Helper()
	if l.proto != proto || !l.addr.IsValid() || l.addr != probe.Canonical(l.addr) {
		t.Fatalf("non-canonical listener %#v", l)
	}
	if l.dual && !(l.addr.Is6() && l.addr.IsUnspecified()) {
		t.Fatalf("dual on a non-wildcard or IPv4 listener %v", l)
	}
}

package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/netaddr"
	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// BenchmarkHandleFlood is the daemon's share of a spoofed SYN flood's per-packet cost:
// every probe comes from a new source, BAN_RATE refuses almost all of them. The stealth
// sensor hands over a ring block's probes at once (batch), the connect sensors one at
// a time (single); ns/op is per probe either way.
func BenchmarkHandleFlood(b *testing.B) {
	for _, size := range []int{1, 256} {
		name := map[int]string{1: "single", 256: "batch"}[size]
		b.Run(name, func(b *testing.B) { benchHandle(b, size) })
	}
}

// floodDaemon is a daemon on Debian's settings with TCP_PORTS 31337, nothing blocked,
// and 127.0.0.1 and 10.9.8.0/24 in its ignore file; it is not started.
func floodDaemon(tb testing.TB) *Daemon {
	dir := tb.TempDir()
	conf := filepath.Join(dir, "portsentry.conf")
	body := "TCP_PORTS=\"31337\"\nBLOCK_TCP=\"0\"\nSCAN_TRIGGER=\"0\"\n" +
		"IGNORE_FILE=\"" + filepath.Join(dir, "ignore") + "\"\n" +
		"HISTORY_FILE=\"" + filepath.Join(dir, "history") + "\"\n" +
		"BLOCKED_FILE=\"" + filepath.Join(dir, "blocked") + "\"\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ignore"), []byte("127.0.0.1\n10.9.8.0/24\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	d, err := New(Options{ConfigPath: conf, Modes: []probe.Mode{probe.ModeSTCP}})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func benchHandle(b *testing.B, batch int) {
	d := floodDaemon(b)
	p := probe.Probe{
		Dst: netip.MustParseAddrPort("198.18.200.1:31337"), Proto: probe.TCP, Mode: probe.ModeSTCP,
		ScanType: packet.Classify(packet.FlagSYN), Spoofable: true, Time: time.Unix(1795539421, 0),
	}
	ps := make([]probe.Probe, batch)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		p.Time = p.Time.Add(5 * time.Microsecond)
		if batch == 1 {
			d.Handle(p)
			continue
		}
		ps[i%batch] = p
		if i%batch == batch-1 {
			d.HandleBatch(ps)
		}
	}
}

// TestIgnoredFollowsChanges: the cached protected set follows a reload of the ignore
// file.
func TestIgnoredFollowsChanges(t *testing.T) {
	d := floodDaemon(t)
	inFile, other := netip.MustParseAddr("10.9.8.7"), netip.MustParseAddr("198.18.5.5")
	ignored := func(a netip.Addr) bool { return d.view().Source(a) == safety.Protected }
	if !ignored(inFile) || ignored(other) || !ignored(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("ignored does not match the ignore file")
	}
	st := *d.state.Load()
	st.ignore = netaddr.NewSet([]netip.Prefix{netip.PrefixFrom(other, 32)})
	d.state.Store(&st)
	if ignored(inFile) || !ignored(other) {
		t.Fatal("ignored still answers from the old ignore set")
	}
}

// TestHandleDoesNotAllocate: the per-probe paths allocate nothing, or a flood would
// keep the garbage collector busy. (A probe passed by pointer to a function value
// escapes to the heap; that slipped in once.)
func TestHandleDoesNotAllocate(t *testing.T) {
	d := floodDaemon(t)
	p := probe.Probe{
		Dst: netip.MustParseAddrPort("198.18.200.1:31337"), Proto: probe.TCP, Mode: probe.ModeSTCP,
		ScanType: packet.Classify(packet.FlagSYN), Spoofable: true, Time: time.Unix(1795539421, 0),
	}
	ps := make([]probe.Probe, 64)
	i := 0
	next := func() probe.Probe {
		i++
		p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		return p
	}
	if a := testing.AllocsPerRun(1000, func() { d.Handle(next()) }); a != 0 {
		t.Errorf("Handle: %v allocations per probe", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		for j := range ps {
			ps[j] = next()
		}
		d.HandleBatch(ps)
	}); a != 0 {
		t.Errorf("HandleBatch: %v allocations per batch", a)
	}
}

// TestRefusedHostIsNewLater: a host BAN_RATE refused is not remembered as acted on, so
// its next probe, once the rate allows, is answered.
func TestRefusedHostIsNewLater(t *testing.T) {
	d := floodDaemon(t)
	for i := range d.jobs { // queues for the verdicts, with no workers taking them
		d.jobs[i] = make(chan detect.Verdict, 4)
	}
	d.det.SetRate(1) // one response a minute per rank
	probeFrom := func(src string) probe.Probe {
		return probe.Probe{
			Src: netip.MustParseAddrPort(src + ":40000"), Dst: netip.MustParseAddrPort("198.18.200.1:31337"),
			Proto: probe.TCP, Mode: probe.ModeSTCP, ScanType: packet.Classify(packet.FlagSYN), Time: time.Now(),
			Spoofable: true,
		}
	}
	d.Handle(probeFrom("198.18.7.1")) // takes the minute's response
	refused := netip.MustParseAddr("198.18.7.2")
	d.Handle(probeFrom(refused.String()))
	if n := d.stats.Suppressed.Load(); n != 1 || d.det.Blocked(probe.ModeSTCP, refused) {
		t.Fatalf("suppressed %d (want 1), refused host remembered: %v", n, d.det.Blocked(probe.ModeSTCP, refused))
	}
	// Its next probe ranks higher (a source seen twice) and has a budget of its own.
	d.Handle(probeFrom(refused.String()))
	if !d.det.Blocked(probe.ModeSTCP, refused) {
		t.Fatal("the refused host's next probe was not acted on")
	}
}

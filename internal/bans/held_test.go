package bans

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/testlog"
)

// fullDisk is the journal's file on a disk that can fill up: while full, a write puts
// its first half in the file and fails with ENOSPC, as a write crossing the last free
// block does.
type fullDisk struct {
	*os.File
	full atomic.Bool
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if !d.full.Load() {
		return d.File.Write(p)
	}
	n, _ := d.File.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

// onFullDisk opens a journal at path whose writes go through a fullDisk.
func onFullDisk(t *testing.T, path string) (*Journal, *fullDisk) {
	t.Helper()
	j, _, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &fullDisk{File: f}
	j.w.Close()
	j.w = appendfile.New(d)
	return j, d
}

// TestBansWaitForTheJournal: while the journal cannot be written, detected bans are
// neither in the backend nor active, and say they are pending; the file keeps no torn
// record; once the disk takes writes again every one of them is journaled and then put
// in the backend, and the log tells the outage once at each end.
func TestBansWaitForTheJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, disk := onFullDisk(t, path)
	f := newFake()
	var log testlog.Buffer
	var errs, queued atomic.Int64
	m := NewManager(Options{Journal: j, Backend: f, View: viewOf().Load,
		Policy: func() Policy { return Policy{BanTime: time.Hour} },
		Log:    slog.New(slog.NewTextHandler(&log, nil)),
		Hooks: Hooks{Journal: appendfile.Report{
			Error:  func() { errs.Add(1) },
			Queued: func(n int) { queued.Store(int64(n)) },
		}}})
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	defer func() { cancel(); m.Close() }()

	disk.full.Store(true)
	now := time.Now()
	var want []netip.Prefix
	for i := range 5 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(i + 1)}), 32)
		want = append(want, p)
		m.Ban(Ban{Prefix: p, Start: now, Until: now.Add(time.Hour), Reason: Reason{By: "detect"}})
	}
	eventually(t, func() bool { return queued.Load() == 5 }, "the bans were not held")
	for _, p := range want {
		if !m.Pending(p.Addr()) || f.has(p) {
			t.Errorf("%s: pending %v, in the backend %v; want pending only", p, m.Pending(p.Addr()), f.has(p))
		}
	}
	if m.Pending(netip.MustParseAddr("198.18.2.99")) {
		t.Error("an address never detected is pending")
	}
	if m.Len() != 0 {
		t.Errorf("%d active bans while none could be recorded", m.Len())
	}
	// An operator is told at once, and the ban is not kept behind the operator's back.
	op := netip.MustParsePrefix("198.18.3.1/32")
	if _, ok := m.Block(Ban{Prefix: op, Start: now, Until: now.Add(time.Hour), Reason: Reason{By: "operator"}}); ok {
		t.Error("an operator's block reported recorded on a full disk")
	}
	if m.Pending(op.Addr()) {
		t.Error("the refused operator block is kept for a retry")
	}
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Errorf("the journal holds %q after failed writes, want nothing", data)
	}
	if n := strings.Count(log.String(), "no space left on device"); n != 1 {
		t.Errorf("the outage is logged %d times, want once:\n%s", n, log.String())
	}

	disk.full.Store(false) // the retry timer commits them, with no new ban
	eventually(t, func() bool {
		for _, p := range want {
			if !f.has(p) {
				return false
			}
		}
		return true
	}, "held bans never reached the backend once the disk had room")
	if m.Len() != 5 || m.Pending(want[0].Addr()) || queued.Load() != 0 || errs.Load() == 0 {
		t.Errorf("active %d, pending %v, queued %d, errors %d; want 5, false, 0, >0",
			m.Len(), m.Pending(want[0].Addr()), queued.Load(), errs.Load())
	}
	if !strings.Contains(log.String(), "ban journal "+path+" written again after") {
		t.Errorf("no recovery line:\n%s", log.String())
	}
	cancel()
	m.Close()
	j2, rep, err := Open(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if rep.Torn || len(rep.Corrupt) > 0 || rep.Records != 5 || j2.Len() != 5 {
		t.Errorf("replay: %+v, %d active; want 5 whole records", rep, j2.Len())
	}
}

// TestHeldBound: beyond maxHeld waiting bans, new ones are refused and handed back so
// their hosts can be caught again; a newer ban of a waiting prefix replaces it.
func TestHeldBound(t *testing.T) {
	h := newHeld("j", appendfile.Report{Log: slog.New(slog.DiscardHandler)})
	mk := func(i int) Ban {
		return Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)}
	}
	var batch []Ban
	for i := range maxHeld + 3 {
		batch = append(batch, mk(i))
	}
	if refused := h.keep(batch, syscall.ENOSPC); len(refused) != 3 || refused[0].Prefix != mk(maxHeld).Prefix {
		t.Fatalf("refused %d, want the 3 newest", len(refused))
	}
	renewed := mk(7)
	renewed.Offences = 9
	if refused := h.keep([]Ban{renewed}, syscall.ENOSPC); len(refused) != 0 {
		t.Fatal("a renewal of a held ban was refused")
	}
	got := h.take(nil)
	if len(got) != maxHeld || got[7].Offences != 9 || h.len() != 0 {
		t.Errorf("took %d (ban 7: offence %d), %d left", len(got), got[7].Offences, h.len())
	}
}

// TestPendingCoversNetworks: a held network ban covers its addresses.
func TestPendingCoversNetworks(t *testing.T) {
	h := newHeld("j", appendfile.Report{Log: slog.New(slog.DiscardHandler)})
	h.keep([]Ban{{Prefix: netip.MustParsePrefix("2001:db8:1::/64")}}, syscall.ENOSPC)
	if !h.covers(netip.MustParseAddr("2001:db8:1::5")) || h.covers(netip.MustParseAddr("2001:db8:2::5")) {
		t.Error("covers does not follow the held prefix")
	}
	h.forget(netip.MustParsePrefix("2001:db8:1::/64"))
	if h.covers(netip.MustParseAddr("2001:db8:1::5")) {
		t.Error("forgotten ban still pending")
	}
}

// TestExpiryWaitsForTheJournal: an expiry the journal cannot record is tried again at
// every tick, logged once, and done once the disk takes it.
func TestExpiryWaitsForTheJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, disk := onFullDisk(t, path)
	f := newFake()
	var log testlog.Buffer
	m := NewManager(Options{Journal: j, Backend: f, View: viewOf().Load,
		Policy: func() Policy { return Policy{BanTime: time.Hour} },
		Log:    slog.New(slog.NewTextHandler(&log, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	defer func() { cancel(); m.Close() }()
	p := netip.MustParsePrefix("198.18.4.1/32")
	now := time.Now()
	if _, ok := m.Block(Ban{Prefix: p, Start: now, Until: now.Add(time.Second)}); !ok {
		t.Fatal("ban not recorded")
	}
	disk.full.Store(true)
	time.Sleep(3500 * time.Millisecond) // three ticks past the ban's end
	if m.Len() != 1 {
		t.Fatalf("%d active: the expiry was recorded on a full disk", m.Len())
	}
	if n := strings.Count(log.String(), "no space left on device"); n != 1 {
		t.Errorf("the failing expiry is logged %d times, want once:\n%s", n, log.String())
	}
	disk.full.Store(false)
	eventually(t, func() bool { return m.Len() == 0 && !f.has(p) }, "the expiry was never recorded once the disk had room")
	eventually(t, func() bool { return strings.Contains(log.String(), "written again after") }, "no recovery line")
}

package bans

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/portsentry-go/portsentry/internal/respond"
	"pgregory.net/rapid"
)

var t0 = time.UnixMilli(1795539620000)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func open(t *testing.T, path string, now time.Time) (*Journal, Replay) {
	t.Helper()
	j, rep, err := Open(path, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, rep
}

func TestBanSurvivesRestartAndExpiresWhileDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "bans.journal")
	j, _ := open(t, path, t0)
	reason := Reason{Mode: probe.ModeSTCP, Port: 143, Scan: "TCP SYN/Normal scan", By: "detect"}
	if _, err := j.Add(
		Ban{Prefix: pfx("198.18.0.2/32"), Start: t0, Until: t0.Add(time.Hour), Reason: reason},
		Ban{Prefix: pfx("2001:db8:1::/64"), Start: t0, Until: t0.Add(time.Minute)},
		Ban{Prefix: pfx("198.18.0.3/32"), Start: t0}, // permanent
	); err != nil {
		t.Fatal(err)
	}
	j.Close()

	// Back 10 minutes later: the one-minute ban ran out while we were down.
	j2, rep := open(t, path, t0.Add(10*time.Minute))
	if rep.Records != 3 || rep.Torn || len(rep.Corrupt) != 0 {
		t.Fatalf("replay %+v", rep)
	}
	if len(rep.Expired) != 1 || rep.Expired[0].Prefix != pfx("2001:db8:1::/64") {
		t.Fatalf("expired while down: %+v", rep.Expired)
	}
	got := j2.Active()
	if len(got) != 2 {
		t.Fatalf("active %+v", got)
	}
	b, ok := j2.Get(pfx("198.18.0.2/32"))
	if !ok || !reflect.DeepEqual(b.Reason, reason) || !b.Until.Equal(t0.Add(time.Hour)) || b.Offences != 1 {
		t.Fatalf("ban after restart %+v", b)
	}
	if b, _ := j2.Get(pfx("198.18.0.3/32")); !b.Permanent() {
		t.Fatalf("permanent ban lost its permanence: %+v", b)
	}
	// The expiry was recorded: a third start does not report it again.
	j2.Close()
	_, rep3 := open(t, path, t0.Add(20*time.Minute))
	if len(rep3.Expired) != 0 {
		t.Fatalf("expiry reported twice: %+v", rep3.Expired)
	}
}

func TestTornLastLineIsCutOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.journal")
	j, _ := open(t, path, t0)
	j.Add(Ban{Prefix: pfx("198.18.0.2/32"), Start: t0})
	j.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"op":"ban","prefix":"198.18.0.9/32","at":17955`) // crash mid-write
	f.Close()

	j2, rep := open(t, path, t0)
	if !rep.Torn || rep.Records != 1 || j2.Len() != 1 {
		t.Fatalf("replay %+v, %d active", rep, j2.Len())
	}
	j2.Add(Ban{Prefix: pfx("198.18.0.4/32"), Start: t0})
	j2.Close()
	_, rep3 := open(t, path, t0)
	if rep3.Torn || len(rep3.Corrupt) != 0 || rep3.Records != 2 {
		t.Fatalf("new record glued to the torn line: %+v", rep3)
	}
}

func TestCorruptLineIsSkippedAndReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.journal")
	os.WriteFile(path, []byte(`{"op":"ban","prefix":"198.18.0.2/32","at":1}
garbage
{"op":"ban","prefix":"10.9.9.5/24","at":1}
{"op":"bogus","prefix":"198.18.0.3/32","at":1}
{"op":"ban","prefix":"198.18.0.4/32","at":1}
`), 0o600)
	j, rep := open(t, path, t0)
	if !slices.Equal(rep.Corrupt, []int{2, 3, 4}) || j.Len() != 2 {
		t.Fatalf("corrupt %v, active %d", rep.Corrupt, j.Len())
	}
}

func TestOffencesEscalate(t *testing.T) {
	j, _ := open(t, filepath.Join(t.TempDir(), "j"), t0)
	p := pfx("198.18.0.2/32")
	for want := 1; want <= 3; want++ {
		if n := j.NextOffence(p); n != want {
			t.Fatalf("next offence %d, want %d", n, want)
		}
		b, _ := j.Add(Ban{Prefix: p, Start: t0, Until: t0.Add(time.Minute)})
		if b[0].Offences != want {
			t.Fatalf("stored offence %d want %d", b[0].Offences, want)
		}
		// Renewing an active ban is not a new offence.
		if n := j.NextOffence(p); n != want {
			t.Fatalf("active ban: next offence %d, want %d", n, want)
		}
		j.Lift(OpExpire, []netip.Prefix{p}, t0.Add(time.Minute))
	}
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {10, time.Hour}} {
		if got := EscalatedDuration(time.Minute, time.Hour, c.n); got != c.want {
			t.Errorf("offence %d: %v want %v", c.n, got, c.want)
		}
	}
	if EscalatedDuration(0, time.Hour, 5) != 0 {
		t.Error("permanent base must stay permanent")
	}
}

// TestStateMachine drives the journal with random bans, unbans, expiries, restarts,
// crashes (a torn half-written record) and compactions, and checks after every step
// that the active set equals a model's: no ban is ever lost or duplicated.
func TestStateMachine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "bans.journal")
		now := t0
		j, _, err := Open(path, now)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { j.Close() }()
		model := map[netip.Prefix]time.Time{} // prefix → until (zero: permanent)
		prefixes := []netip.Prefix{pfx("198.18.0.1/32"), pfx("198.18.0.2/32"), pfx("2001:db8::/64"), pfx("2001:db8:0:1::7/128")}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			p := prefixes[rapid.IntRange(0, len(prefixes)-1).Draw(rt, "p")]
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0: // ban, maybe permanent
				var until time.Time
				if mins := rapid.IntRange(0, 30).Draw(rt, "mins"); mins > 0 {
					until = now.Add(time.Duration(mins) * time.Minute)
				}
				if _, err := j.Add(Ban{Prefix: p, Start: now, Until: until}); err != nil {
					rt.Fatal(err)
				}
				model[p] = until
			case 1: // unban
				j.Lift(OpUnban, []netip.Prefix{p}, now)
				delete(model, p)
			case 2: // time passes, expiries are recorded
				now = now.Add(time.Duration(rapid.IntRange(1, 20).Draw(rt, "adv")) * time.Minute)
				j.Lift(OpExpire, j.Due(now), now)
				for q, u := range model {
					if !u.IsZero() && !now.Before(u) {
						delete(model, q)
					}
				}
			case 3, 4: // restart, or crash with a torn record
				j.Close()
				if rapid.Bool().Draw(rt, "torn") {
					f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
					fmt.Fprintf(f, `{"op":"unban","prefix":"%s","at`, p)
					f.Close()
				}
				if j, _, err = Open(path, now); err != nil {
					rt.Fatal(err)
				}
			case 5:
				j.mu.Lock()
				err := j.compact()
				j.mu.Unlock()
				if err != nil {
					rt.Fatal(err)
				}
			}
			got := j.Active()
			if len(got) != len(model) {
				rt.Fatalf("step %d: %d active, model has %d: %+v", i, len(got), len(model), got)
			}
			for _, b := range got {
				u, ok := model[b.Prefix]
				if !ok || !u.Equal(b.Until) {
					rt.Fatalf("step %d: active %v until %v, model %v (present %v)", i, b.Prefix, b.Until, u, ok)
				}
			}
		}
	})
}

func BenchmarkAdd(b *testing.B) {
	j, _, err := Open(filepath.Join(b.TempDir(), "j"), t0)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	batch := make([]Ban, 1000)
	for i := 0; b.Loop(); i++ {
		for k := range batch {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(k)})
			batch[k] = Ban{Prefix: netip.PrefixFrom(a, 32), Start: t0, Until: t0.Add(time.Hour)}
		}
		j.Add(batch...)
	}
}

// BenchmarkReplay100k measures a start with 100,000 active bans in the journal.
func BenchmarkReplay100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "j")
	j, _, err := Open(path, t0)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]Ban, 0, 1000)
	for i := 0; i < 100000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		batch = append(batch, Ban{Prefix: netip.PrefixFrom(a, 32), Start: t0, Until: t0.Add(time.Hour), Reason: Reason{Mode: probe.ModeSTCP, Port: 143}})
		if len(batch) == cap(batch) {
			j.Add(batch...)
			batch = batch[:0]
		}
	}
	j.Close()
	for b.Loop() {
		j, _, err := Open(path, t0)
		if err != nil || j.Len() != 100000 {
			b.Fatalf("%v, %d active", err, j.Len())
		}
		j.Close()
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _ := open(t, path, t0)
	if _, _, err := Open(path, t0); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	j.mu.Lock()
	err := j.compact()
	j.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, t0); !errors.Is(err, ErrLocked) {
		t.Fatalf("after compaction: %v, want ErrLocked", err)
	}
	j.Close()
	j2, _, err := Open(path, t0)
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	j2.Close()
}

// TestNoteSurvivesRestartAndRenewal: what the classic commands did under a ban is in
// the journal (after a restart too), one entry per address, and a renewal of the ban
// keeps it; a note for a prefix that is not banned is refused.
func TestNoteSurvivesRestartAndRenewal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans")
	j, _ := open(t, path, t0)
	p := pfx("2001:db8:5::/64")
	a1, a2 := netip.MustParseAddr("2001:db8:5::1"), netip.MustParseAddr("2001:db8:5::2")
	if _, err := j.Add(Ban{Prefix: p, Start: t0, Until: t0.Add(time.Hour), Reason: Reason{Mode: probe.ModeTCP, Addr: a1}}); err != nil {
		t.Fatal(err)
	}
	d1 := respond.Done{Addr: a1, Port: 143, Mode: probe.ModeTCP, Route: true, HostsDeny: "ALL: [2001:db8:5::1] : DENY"}
	d2 := respond.Done{Addr: a2, Port: 1080, Mode: probe.ModeTCP, RunCmd: true}
	for _, d := range []respond.Done{d1, d2, d1} {
		if ok, err := j.Note(p, d); !ok || err != nil {
			t.Fatalf("note: %v %v", ok, err)
		}
	}
	if ok, err := j.Note(pfx("198.18.0.9/32"), d1); ok || err != nil {
		t.Errorf("note on no ban: %v %v", ok, err)
	}
	// An operator's ban of the same prefix renews it and keeps the notes.
	if _, err := j.Add(Ban{Prefix: p, Start: t0, Until: t0.Add(2 * time.Hour), Reason: Reason{By: "operator"}}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j2, rep := open(t, path, t0)
	defer j2.Close()
	b, _ := j2.Get(p)
	if want := []respond.Done{d2, d1}; !reflect.DeepEqual(b.Reason.Classic, want) || b.Reason.By != "operator" || len(rep.Corrupt) != 0 {
		t.Errorf("after restart: %+v, want classic %+v (%+v)", b.Reason, want, rep)
	}
}

// TestJournalReadsOldRecords: lines written before the classic actions were recorded
// still replay.
func TestJournalReadsOldRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans")
	old := `{"op":"ban","prefix":"198.18.0.2/32","at":1795539620000,"until":1795543220000,"n":1,"mode":"tcp","port":143,"by":"detect","addr":"198.18.0.2"}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	j, rep := open(t, path, t0)
	defer j.Close()
	b, ok := j.Get(pfx("198.18.0.2/32"))
	if !ok || rep.Records != 1 || b.Reason.Classic != nil || b.Reason.Port != 143 {
		t.Errorf("old record: %+v %+v", b, rep)
	}
}

// TestOpenRefusesSpecialFiles: a BAN_JOURNAL that is a FIFO (opened read-write, its
// replay would wait for a writer for ever) or /dev/null is refused at once.
func TestOpenRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "portsentry.bans")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/null"} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			j, _, err := Open(path, t0)
			if j != nil {
				j.Close()
			}
			if !errors.Is(err, regfile.ErrNotRegular) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open(%s): err = %v, want ErrNotRegular naming the path", path, err)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Open(%s) blocked", path)
		}
	}
}

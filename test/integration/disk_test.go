package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// mountTmpfs mounts a tmpfs of the given size ("64k") on a fresh directory, unmounted
// at cleanup (after the daemons started later have stopped).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file in dir until the filesystem is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if err == syscall.ENOSPC || os.IsExist(err) || strings.Contains(err.Error(), "no space") {
				return path
			}
			t.Fatal(err)
		}
	}
}

// seed writes whole lines of exactly size bytes to path: lines made by line(0), then
// one made by line(pad) to reach the size, and returns them. With size just under a
// page, the first record the daemon appends once the disk is full crosses into a page
// there is no room for: a short write, which must not leave its first part behind.
func seed(t *testing.T, path string, size int, line func(pad int) string) string {
	t.Helper()
	var b strings.Builder
	base := len(line(0)) + 1
	for b.Len()+2*base <= size {
		b.WriteString(line(0) + "\n")
	}
	b.WriteString(line(size-b.Len()-base) + "\n")
	if b.Len() != size {
		t.Fatalf("seed %s: %d bytes, want %d", path, b.Len(), size)
	}
	writeFile(t, path, b.String())
	return b.String()
}

// TestFullDisk: history, ban journal and JSON_LOG on a 64 KiB tmpfs that fills up
// while scanners are detected. Detection goes on; the log says once per file that it
// cannot be written and that lines are queued; a scanner probing again is told to be
// not blocked yet (its ban waits for the journal), not "already blocked". Once space
// returns every file is written again (and says so), no file holds a torn line, and
// every detected scanner is banned in nftables and listed, once.
func TestFullDisk(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	small := mountTmpfs(t, "64k")
	f.History = filepath.Join(small, "portsentry.history")
	journalPath := filepath.Join(small, "portsentry.bans")
	jsonLog := filepath.Join(small, "events.json")
	epoch := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	seeded := map[string]string{}
	seeded[f.History] = seed(t, f.History, 4096-40, func(pad int) string {
		return fmt.Sprintf("%d - %s Host: seed%s/192.0.2.1 Port: 1 TCP Blocked", epoch.Unix(),
			epoch.Format("01/02/2006 15:04:05"), strings.Repeat("x", pad))
	})
	seeded[journalPath] = seed(t, journalPath, 4096-30, func(pad int) string {
		return `{"op":"expire","prefix":"192.0.2.1/32","at":1,"n":1` + strings.Repeat(" ", pad) + "}"
	})
	f.write(t, nil, nftSettings(
		testnet.Setting{Key: "BAN_JOURNAL", Value: journalPath},
		testnet.Setting{Key: "JSON_LOG", Value: jsonLog})...)
	scanners := []netip.Addr{p.ScanV4, p.ScanV6}
	for host := 50; host < 55; host++ {
		a4, _ := p.ExtraScanner(t, host)
		scanners = append(scanners, a4)
	}
	d := startOurs(t, p, f, "tcp")
	filler := fill(t, small)

	mark := d.Mark()
	for _, a := range scanners {
		def := p.DefV4
		if a.Is6() {
			def = p.DefV6
		}
		hit(t, p, a, def, 143)
		waitMsg(t, d.Log, mark, connectMsg(a, "TCP", 143))
	}
	for _, prefix := range []string{f.History + ": no space left on device: ", "ban journal " + journalPath + ": no space left on device: ",
		jsonLog + ": no space left on device: "} {
		d.WaitForSince(t, mark, prefix, eventTimeout)
	}
	// Probing again while its ban waits: honest about it.
	hit(t, p, p.ScanV4, p.DefV4, 143)
	waitMsg(t, d.Log, mark, fmt.Sprintf("attackalert: Host: %s/%s is not blocked yet: its ban waits for the ban journal to be writable", p.ScanV4, p.ScanV4))
	if e := nftElements(t, p); len(e) > 0 {
		t.Errorf("bans in the kernel before their journal records were written: %v", e)
	}
	if got := d.Matching(mark, "is already blocked"); len(got) > 0 {
		t.Errorf("a host whose ban was never recorded is reported blocked:\n%s", strings.Join(got, "\n"))
	}
	// The short writes (part of a line fitted in the last page) were cut back.
	for path, want := range seeded {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s during the outage: %d bytes ending %q; want the %d seeded bytes", path, len(got), got[max(len(got)-60, 0):], len(want))
		}
	}

	mark = d.Mark()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{f.History, "ban journal " + journalPath, jsonLog} {
		d.WaitForSince(t, mark, name+" written again after ", eventTimeout)
	}
	testnet.Eventually(t, eventTimeout, func() (bool, string) {
		e := nftElements(t, p)
		for _, a := range scanners {
			if !containsElem(e, a) {
				return false, fmt.Sprintf("%s not banned once space returned: %v", a, e)
			}
		}
		return true, ""
	})
	out, err := exec.Command(daemonBin, "list", "-socket", filepath.Join(f.Dir, "control.sock")).CombinedOutput()
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	var listed []string
	for _, l := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			listed = append(listed, f[0])
		}
	}
	for _, a := range scanners {
		if !containsElem(listed, a) {
			t.Errorf("list does not show %s:\n%s", a, out)
		}
	}
	checkHistoryAfterOutage(t, f.History, scanners)
	checkJournalAfterOutage(t, journalPath, scanners)
	checkJSONLines(t, jsonLog)
}

// checkHistoryAfterOutage: every line whole, each scanner recorded once.
func checkHistoryAfterOutage(t *testing.T, path string, scanners []netip.Addr) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(data), "\n") {
		t.Errorf("history does not end with a whole line: %q", data[max(len(data)-80, 0):])
	}
	seen := map[string]int{}
	for _, r := range parseRecords(t, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")) {
		seen[r.Addr]++
	}
	for _, a := range scanners {
		if seen[a.String()] != 1 {
			t.Errorf("history records %s %d times, want once", a, seen[a.String()])
		}
	}
}

// checkJournalAfterOutage: every line a whole JSON record, one ban per scanner.
func checkJournalAfterOutage(t *testing.T, path string, scanners []netip.Addr) {
	t.Helper()
	bans := map[netip.Prefix]int{}
	for i, l := range testnet.ReadLines(path) {
		var r struct{ Op, Prefix string }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Errorf("ban journal line %d torn or invalid: %q", i+1, l)
			continue
		}
		if r.Op == "ban" {
			bans[netip.MustParsePrefix(r.Prefix)]++
		}
	}
	for _, a := range scanners {
		n := 0
		for p, c := range bans {
			if p.Contains(a) {
				n += c
			}
		}
		if n != 1 {
			t.Errorf("the ban journal holds %d ban records for %s, want 1: %v", n, a, bans)
		}
	}
}

// checkJSONLines: every line of a JSON_LOG file is a whole JSON object.
func checkJSONLines(t *testing.T, path string) {
	t.Helper()
	lines := testnet.ReadLines(path)
	if len(lines) == 0 {
		t.Errorf("%s is empty after the outage", path)
	}
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("%s line %d torn or invalid: %q", path, i+1, l)
		}
	}
}

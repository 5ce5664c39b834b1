//go:build linux

package listening

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"context"

	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/testlog"
)

// TestRefreshFailureKeepsSnapshot breaks the (fallback) source under a running
// Tracker: the last good snapshot must stay, the failure must be logged once however
// many refreshes fail, and the recovery logged and announced.
func TestRefreshFailureKeepsSnapshot(t *testing.T) {
	dir := t.TempDir()
	setProcDir(t, dir)
	copyCaptured(t, dir, "tcp", "tcp6", "udp", "udp6")
	var logs testlog.Buffer
	tr := New(slog.New(slog.NewTextHandler(&logs, nil)))
	tr.src.procOnly = true
	var changes atomic.Int32
	tr.OnChange(func() { changes.Add(1) })
	if err := tr.Start(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	dst := netip.MustParseAddrPort("127.0.0.1:1001")
	if !tr.InUse(probe.TCP, dst) || changes.Load() != 1 {
		t.Fatalf("after Start: InUse=%v changes=%d", tr.InUse(probe.TCP, dst), changes.Load())
	}

	writeFile(t, filepath.Join(dir, "tcp"), "  sl local\n   0: garbage\n")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "refresh failed") })
	time.Sleep(30 * time.Millisecond) // some thirty more failing refreshes
	if n := strings.Count(logs.String(), "refresh failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs.String())
	}
	if !tr.InUse(probe.TCP, dst) {
		t.Error("failed refresh dropped the last good snapshot")
	}
	if err := tr.Refresh(); err == nil || !strings.Contains(err.Error(), "tcp: line 2") {
		t.Errorf("Refresh error = %v, want one naming tcp line 2", err)
	}

	writeFile(t, filepath.Join(dir, "tcp"), "")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "recovered") })
	waitFor(t, func() bool { return changes.Load() == 2 })
	if tr.InUse(probe.TCP, dst) {
		t.Error("listener still in use after it left the source")
	}
	if n := strings.Count(logs.String(), "from /proc/net"); n != 1 {
		t.Errorf("switch to /proc logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestStartFailure: a source broken at start makes Start say so, and the tracker
// keeps trying: once the source reads again the sockets are known, without a restart.
func TestStartFailure(t *testing.T) {
	dir := t.TempDir()
	setProcDir(t, dir)
	copyCaptured(t, dir, "tcp", "tcp6", "udp", "udp6")
	writeFile(t, filepath.Join(dir, "udp"), "x\ny\n")
	var logs testlog.Buffer
	tr := New(slog.New(slog.NewTextHandler(&logs, nil)))
	tr.src.procOnly = true
	if err := tr.Start(context.Background(), time.Millisecond); err == nil {
		t.Error("Start succeeded over a broken source")
	}
	defer tr.Stop()
	dst := netip.MustParseAddrPort("127.0.0.1:1001")
	if tr.InUse(probe.TCP, dst) {
		t.Fatal("a listener known before any snapshot")
	}
	writeFile(t, filepath.Join(dir, "udp"), "")
	waitFor(t, func() bool { return tr.InUse(probe.TCP, dst) })
	tr.Stop()
	tr.Stop() // again: no-op
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil { // atomic: no half-written reads
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

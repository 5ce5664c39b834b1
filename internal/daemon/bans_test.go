package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/safety"
)

// TestBanExpiresAfterIdle: the expiry ticker stops while there are no bans; a ban
// made after such a quiet spell must still expire.
func TestBanExpiresAfterIdle(t *testing.T) {
	cfg := config.Default()
	cfg.BanJournal = filepath.Join(t.TempDir(), "journal")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	view := safety.NewView(safety.Inputs{})
	m, err := openBans(func() *config.Config { return cfg }, func() *safety.View { return view }, []probe.Mode{probe.ModeSTCP}, log, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer m.journal.Close()
	ctx, cancel := context.WithCancel(context.Background())
	m.start(ctx)
	defer func() { cancel(); m.wg.Wait() }()

	time.Sleep(1500 * time.Millisecond) // the first tick finds no bans and stops the ticker
	now := time.Now()
	m.in <- bans.Ban{Prefix: netip.MustParsePrefix("198.18.9.9/32"), Start: now, Until: now.Add(time.Second)}
	deadline := time.Now().Add(10 * time.Second)
	for m.journal.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // until committed
	}
	for m.journal.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("a ban made after an idle spell never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

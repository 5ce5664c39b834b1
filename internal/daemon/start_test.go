package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// TestNewRefusesWhatValidateStartRefuses: the daemon's start runs ValidateStart, so a
// remote dashboard nobody allowed stops it with the key to set, and a missing ignore
// file is logged as ValidateStart words it.
func TestNewRefusesWhatValidateStartRefuses(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "portsentry.conf")
	base := "TCP_PORTS=\"31337\"\nIGNORE_FILE=\"" + filepath.Join(dir, "none") + "\"\n" +
		"HISTORY_FILE=\"" + filepath.Join(dir, "history") + "\"\nBLOCKED_FILE=\"" + filepath.Join(dir, "blocked") + "\"\n"
	start := func(extra string) (string, error) {
		if err := os.WriteFile(conf, []byte(base+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err := New(Options{ConfigPath: conf, Modes: []probe.Mode{probe.ModeTCP}, Log: slog.New(slog.NewTextHandler(&buf, nil))})
		return buf.String(), err
	}
	_, err := start("DASHBOARD=\"0.0.0.0:9117\"\n")
	if err == nil || !strings.Contains(err.Error(), conf+":5: error: DASHBOARD \"0.0.0.0:9117\"") || !strings.Contains(err.Error(), `set DASHBOARD_ALLOW_REMOTE="1"`) {
		t.Errorf("remote dashboard: %v", err)
	}
	log, err := start("DASHBOARD=\"0.0.0.0:9117\"\nDASHBOARD_ALLOW_REMOTE=\"1\"\n")
	if err != nil {
		t.Fatalf("allowed remote dashboard: %v", err)
	}
	if want := conf + ":2: warning: IGNORE_FILE: neither"; !strings.Contains(log, want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}

// TestReloadedMessage: a reload logs each restart-only key it changed, against the
// start's configuration, and its last line counts and names them.
func TestReloadedMessage(t *testing.T) {
	parse := func(text string) *config.Config {
		c, _, err := config.Parse("r.conf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	started := parse("DASHBOARD=\"127.0.0.1:9117\"\nJSON_LOG=\"/a\"\nTCP_PORTS=\"1\"\n")
	for _, tc := range []struct {
		next, msg string
		lines     []string
	}{
		{next: "DASHBOARD=\"127.0.0.1:9117\"\nJSON_LOG=\"/a\"\nTCP_PORTS=\"2\"\n", msg: "Configuration reloaded."},
		{next: "DASHBOARD=\"127.0.0.1:9117\"\nJSON_LOG=\"/b\"\n", msg: "Configuration reloaded (1 key needs a restart: JSON_LOG)",
			lines: []string{`adminalert: JSON_LOG changed in r.conf:2: takes effect at the next restart (still "/a")`}},
		{next: "JSON_LOG=\"/b\"\nDASHBOARD=\"127.0.0.1:9118\"\n", msg: "Configuration reloaded (2 keys need a restart: DASHBOARD, JSON_LOG)",
			lines: []string{
				`adminalert: DASHBOARD changed in r.conf:2: takes effect at the next restart (still "127.0.0.1:9117")`,
				`adminalert: JSON_LOG changed in r.conf:1: takes effect at the next restart (still "/a")`,
			}},
	} {
		var got []string
		log := slog.New(slogFunc(func(r slog.Record) { got = append(got, r.Level.String()+" "+r.Message) }))
		if msg := reloadedMessage(started, parse(tc.next), log); msg != tc.msg {
			t.Errorf("%q: %q, want %q", tc.next, msg, tc.msg)
		}
		var want []string
		for _, l := range tc.lines {
			want = append(want, "WARN "+l)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%q: log (-want +got):\n%s", tc.next, d)
		}
	}
}

// slogFunc is a slog.Handler passing every record to a function.
type slogFunc func(slog.Record)

func (f slogFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (f slogFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }
func (f slogFunc) WithAttrs([]slog.Attr) slog.Handler            { return f }
func (f slogFunc) WithGroup(string) slog.Handler                 { return f }

package respond

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/testlog"
)

func newLog() (*slog.Logger, *testlog.Buffer) {
	b := &testlog.Buffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

var target = Target{Addr: netip.MustParseAddr("198.18.0.2"), Name: "scanner.example", Port: 143, Mode: probe.ModeTCP}

func TestExpandReplacesEveryMacro(t *testing.T) {
	tg := Target{Addr: netip.MustParseAddr("::ffff:198.18.0.2"), Port: 7, Mode: probe.ModeSUDP, Name: "$(rm -rf /)"}
	got := Expand("a $TARGET$ b $TARGET$ $PORT$ $MODE$ $PORT$", tg)
	if want := "a 198.18.0.2 b 198.18.0.2 7 sudp 7"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestBlockOrderAndLines(t *testing.T) {
	for _, first := range []bool{true, false} {
		dir := t.TempDir()
		order := filepath.Join(dir, "order")
		deny := filepath.Join(dir, "etc", "hosts.deny")
		log, buf := newLog()
		c := NewClassic(ClassicConfig{
			BlockTCP:        config.BlockKill,
			KillRoute:       "echo route $TARGET$ >> " + order,
			KillHostsDeny:   "ALL: $TARGET$ : DENY",
			KillRunCmd:      "echo cmd $TARGET$ $PORT$ $MODE$ >> " + order,
			KillRunCmdFirst: first,
			HostsDenyFile:   deny,
		}, log)
		if !c.Respond(context.Background(), target).Blocked {
			t.Fatalf("first=%v: respond failed: %s", first, buf)
		}
		got, _ := os.ReadFile(order)
		want := "route 198.18.0.2\ncmd 198.18.0.2 143 tcp\n"
		if first {
			want = "cmd 198.18.0.2 143 tcp\nroute 198.18.0.2\n"
		}
		if string(got) != want {
			t.Errorf("first=%v: order %q want %q", first, got, want)
		}
		if d, _ := os.ReadFile(deny); string(d) != "ALL: 198.18.0.2 : DENY\n" {
			t.Errorf("hosts.deny %q", d)
		}
		for _, l := range []string{
			`Host 198.18.0.2 has been blocked via wrappers with string: \"ALL: 198.18.0.2 : DENY\"`,
			`Host 198.18.0.2 has been blocked via dropped route using command: \"echo route 198.18.0.2 >> `,
			`External command run for host: 198.18.0.2 using command: \"echo cmd 198.18.0.2 143 tcp >> `,
		} {
			if !strings.Contains(buf.String(), l) {
				t.Errorf("log lacks %s\n%s", l, buf)
			}
		}
	}
}

func TestFailingRouteIsNotABlock(t *testing.T) {
	log, buf := newLog()
	c := NewClassic(ClassicConfig{BlockTCP: config.BlockKill, KillRoute: "echo oops >&2; exit 3"}, log)
	if c.Respond(context.Background(), target).Blocked {
		t.Fatal("exit 3 counted as success")
	}
	if !strings.Contains(buf.String(), "exit status 3") || !strings.Contains(buf.String(), "oops") {
		t.Errorf("status or output missing from log:\n%s", buf)
	}
}

func TestCommandTimeout(t *testing.T) {
	log, buf := newLog()
	c := NewClassic(ClassicConfig{BlockUDP: config.BlockRunCmd, KillRunCmd: "sleep 30", Timeout: 200 * time.Millisecond}, log)
	tg := target
	tg.Mode = probe.ModeUDP
	if c.Respond(context.Background(), tg).Blocked {
		t.Fatal("timed-out command counted as success")
	}
	if !strings.Contains(buf.String(), "timed out") {
		t.Errorf("no timeout in log:\n%s", buf)
	}
}

func TestLevels(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	log, buf := newLog()
	c := NewClassic(ClassicConfig{
		BlockTCP: config.BlockLogOnly, BlockUDP: config.BlockRunCmd,
		KillRoute: "touch " + filepath.Join(dir, "route"), KillRunCmd: "touch " + ran,
		HostsDenyFile: filepath.Join(dir, "deny"), KillHostsDeny: "ALL: $TARGET$",
	}, log)
	if !c.Respond(context.Background(), target).Blocked {
		t.Fatal("log-only must count as recorded")
	}
	if !strings.Contains(buf.String(), "attackalert: Ignoring TCP response per configuration file setting.") {
		t.Errorf("missing classic ignore line:\n%s", buf)
	}
	udp := target
	udp.Mode = probe.ModeSUDP
	if !c.Respond(context.Background(), udp).Blocked {
		t.Fatal("run-cmd-only failed")
	}
	for name, want := range map[string]bool{"ran": true, "route": false, "deny": false} {
		_, err := os.Stat(filepath.Join(dir, name))
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", name, err == nil, want)
		}
	}
}

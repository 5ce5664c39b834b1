package integration

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// confLine is the number of the line of conf that sets key, failing the test when none
// does.
func confLine(t *testing.T, conf, key string) int {
	t.Helper()
	for i, l := range strings.Split(conf, "\n") {
		if strings.HasPrefix(l, key+"=") {
			return i + 1
		}
	}
	t.Fatalf("no %s line in the config", key)
	return 0
}

// exitCode is the exit status of a finished command (0 without an error), or -1 when
// it did not exit normally.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// TestCheckConfigAgreesWithDaemon: for each config, check-config (run in the daemon's
// namespace, as the interfaces are looked up there) exits non-zero exactly when the real
// daemon refuses to start, both with status 3, and both name the key and the line to
// fix; what the daemon only warns about, check-config prints too and exits 0.
func TestCheckConfigAgreesWithDaemon(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	for _, tc := range []struct {
		name     string
		settings func(f files) []testnet.Setting
		modes    []string
		refuse   bool
		at       string // the key whose FILE:LINE both show
		says     string // what both say
	}{
		{name: "remote dashboard not allowed", modes: []string{"tcp"}, refuse: true, at: "DASHBOARD",
			settings: func(files) []testnet.Setting {
				return []testnet.Setting{{Key: "DASHBOARD", Value: "0.0.0.0:9117"}}
			},
			says: `error: DASHBOARD "0.0.0.0:9117" listens on 0.0.0.0, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that`},
		{name: "remote dashboard allowed", modes: []string{"tcp"},
			settings: func(f files) []testnet.Setting {
				return []testnet.Setting{{Key: "DASHBOARD", Value: "0.0.0.0:9117"}, {Key: "DASHBOARD_ALLOW_REMOTE", Value: "1"},
					{Key: "DASHBOARD_TOKEN_FILE", Value: filepath.Join(f.Dir, "token")}}
			}},
		{name: "dashboard port out of range", modes: []string{"tcp"}, refuse: true, at: "DASHBOARD",
			settings: func(files) []testnet.Setting {
				return []testnet.Setting{{Key: "DASHBOARD", Value: "127.0.0.1:99999"}}
			},
			says: `error: DASHBOARD must be host:port with a port from 1 to 65535, e.g. "127.0.0.1:9117", not "127.0.0.1:99999"`},
		{name: "missing interface", modes: []string{"stcp"}, refuse: true, at: "INTERFACES",
			settings: func(files) []testnet.Setting { return []testnet.Setting{{Key: "INTERFACES", Value: "nonexist0"}} },
			says:     `error: INTERFACES names "nonexist0", which is not an interface of this host: -stcp cannot capture on it`},
		{name: "interfaces are the namespace's", modes: []string{"stcp"},
			settings: func(files) []testnet.Setting { return []testnet.Setting{{Key: "INTERFACES", Value: p.DefIf}} }},
		{name: "interfaces unused by the connect modes", modes: []string{"tcp"},
			settings: func(files) []testnet.Setting { return []testnet.Setting{{Key: "INTERFACES", Value: "nonexist0"}} }},
		{name: "ignore file a directory", modes: []string{"tcp"}, refuse: true, at: "IGNORE_FILE",
			settings: func(f files) []testnet.Setting { return []testnet.Setting{{Key: "IGNORE_FILE", Value: f.Dir}} },
			says:     "error: IGNORE_FILE: open DIR: is a directory, not a regular file"},
		{name: "no ignore file", modes: []string{"tcp"}, at: "IGNORE_FILE",
			settings: func(f files) []testnet.Setting {
				return []testnet.Setting{{Key: "IGNORE_FILE", Value: filepath.Join(f.Dir, "none")}}
			},
			says: "warning: IGNORE_FILE: neither DIR/none nor DIR/none.static exists: only this host's own addresses, gateways and resolvers are ignored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFiles(t)
			conf := f.write(t, nil, tc.settings(f)...)
			says := strings.ReplaceAll(tc.says, "DIR", f.Dir)
			if tc.at != "" {
				says = f.Conf + ":" + strconv.Itoa(confLine(t, conf, tc.at)) + ": " + says
			}
			var args []string
			for _, m := range tc.modes {
				args = append(args, "-"+m)
			}

			out, err := p.Try(p.Defended, 30*time.Second, daemonBin, append([]string{"check-config", "-c", f.Conf}, args...)...)
			code := exitCode(err)
			if want := map[bool]int{false: 0, true: 3}[tc.refuse]; code != want {
				t.Errorf("check-config exit %d (%v), want %d:\n%s", code, err, want, out)
			}
			if !strings.Contains(out, says) {
				t.Errorf("check-config does not say %q:\n%s", says, out)
			}

			d := p.Start(t, p.Defended, daemonBin, append([]string{"-c", f.Conf}, args...)...)
			_, err = d.Await(0, Ready, readyTimeout)
			switch {
			case tc.refuse && err == nil:
				t.Errorf("check-config refuses the config, the daemon started:\n%s", d.String())
			case tc.refuse:
				if !d.WaitClosed(readyTimeout) {
					t.Fatalf("the daemon neither started nor exited:\n%s", d.String())
				}
				if code := d.Cmd.ProcessState.ExitCode(); code != 3 {
					t.Errorf("daemon exit %d, want 3:\n%s", code, d.String())
				}
			case err != nil:
				t.Errorf("check-config accepts the config, the daemon did not start: %v\n%s", err, d.String())
			}
			if !strings.Contains(d.String(), says) {
				t.Errorf("the daemon does not say %q:\n%s", says, d.String())
			}
			if tc.says == "" && (strings.Contains(out, "error:") || strings.Contains(out, "warning:")) {
				t.Errorf("check-config complains about a good config:\n%s", out)
			}
		})
	}
}

// TestReloadNamesRestartKeys: a reload that changes restart-only keys applies the
// others, logs each of those with its line and the value still in force, and counts
// them in its last line; the next reload says so again (the comparison is with the
// start), and putting the old values back ends it.
func TestReloadNamesRestartKeys(t *testing.T) {
	needDaemon(t)
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	conf := f.write(t, nil, testnet.Setting{Key: "TCP_PORTS", Value: "143"})
	d := startOurs(t, p, f, "tcp")
	oldSock := filepath.Join(f.Dir, "control.sock")
	jsonLog := filepath.Join(f.Dir, "events.json")
	newSock := filepath.Join(f.Dir, "other.sock")

	changed := testnet.ApplySettings(conf,
		testnet.Setting{Key: "TCP_PORTS", Value: "143,1080"},
		testnet.Setting{Key: "JSON_LOG", Value: jsonLog},
		testnet.Setting{Key: "CONTROL_SOCKET", Value: newSock})
	writeFile(t, f.Conf, changed)
	pending := []string{
		fmt.Sprintf("adminalert: CONTROL_SOCKET changed in %s:%d: takes effect at the next restart (still %q)", f.Conf, confLine(t, changed, "CONTROL_SOCKET"), oldSock),
		fmt.Sprintf(`adminalert: JSON_LOG changed in %s:%d: takes effect at the next restart (still "")`, f.Conf, confLine(t, changed, "JSON_LOG")),
		"adminalert: Configuration reloaded (2 keys need a restart: CONTROL_SOCKET, JSON_LOG)",
	}
	for round := 1; round <= 2; round++ {
		mark := d.Mark()
		if err := d.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for _, msg := range pending {
			waitMsg(t, d.Log, mark, msg)
		}
		if n := len(d.Matching(mark, " changed in ")); n != 2 {
			t.Errorf("reload %d: %d lines about changed keys, want 2:\n%s", round, n, strings.Join(d.Since(mark), "\n"))
		}
	}
	// The reloadable key is applied; the restart-only ones are not.
	testnet.Eventually(t, eventTimeout, func() (bool, string) {
		st := portState(p, netip.Addr{}, p.DefV4, 1080)
		return st == "open", "port 1080 after the reload: " + st
	})
	if out, err := exec.Command(daemonBin, "status", "-socket", oldSock).CombinedOutput(); err != nil {
		t.Errorf("the control socket in force (%s) does not answer: %v\n%s", oldSock, err, out)
	}
	for _, path := range []string{newSock, jsonLog} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v): a restart-only key was applied by the reload", path, err)
		}
	}

	// The start values back: nothing pending.
	writeFile(t, f.Conf, testnet.ApplySettings(conf, testnet.Setting{Key: "TCP_PORTS", Value: "143,1080"}))
	mark := d.Mark()
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMsg(t, d.Log, mark, "adminalert: Configuration reloaded.")
	if got := d.Matching(mark, " changed in "); len(got) != 0 {
		t.Errorf("changed keys reported with the start values back: %q", got)
	}
}

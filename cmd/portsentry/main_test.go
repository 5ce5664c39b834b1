package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckConfigDebianFile(t *testing.T) {
	code, out, errs := runCmd("check-config", "-c", "../../testdata/config/debian-portsentry.conf", "-tcp", "-udp")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	if !strings.Contains(out, `TCP_PORTS="1,11,15,79,111,119,143,`) || !strings.Contains(out, `BLOCK_TCP="0"`) {
		t.Errorf("effective settings missing:\n%s", out)
	}
}

func TestCheckConfigReportsFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(path, []byte("# comment\nTCP_PORTS=\"1,2\nUDP_PORTS=\"7\"\n"), 0o600)
	code, _, errs := runCmd("check-config", "-c", path, "-tcp")
	if code != exitConfig {
		t.Fatalf("exit %d, want %d", code, exitConfig)
	}
	if want := path + ":2: error: Quotes missing from TCP_PORTS token"; !strings.Contains(errs, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, errs := runCmd(); code != exitUsage || !strings.Contains(errs, "Usage:") {
		t.Errorf("no mode: exit %d\n%s", code, errs)
	}
	if code, _, _ := runCmd("-tcp", "extra"); code != exitUsage {
		t.Errorf("stray argument: exit %d", code)
	}
	if code, _, _ := runCmd("-bogus"); code != exitUsage {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code, out, _ := runCmd("version"); code != exitOK || !strings.HasPrefix(out, "portsentry ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

// TestHelpIsNoError: the usage asked for goes to stdout with exit status 0, for the
// daemon and for each subcommand.
func TestHelpIsNoError(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"-tcp", "-help"}, {"check-config", "-h"}, {"status", "--help"},
		{"report", "-h"}, {"report", "--help"}, {"report", "-rows", "5", "-help"}, {"check-config", "--help"}, {"list", "--help"},
		{"block", "-h"}, {"unblock", "--help"}, {"help", "report"}, {"help", "list"}, {"-h", "status"}, {"--help", "check-config"}} {
		code, out, errs := runCmd(args...)
		if code != exitOK || !strings.Contains(out, "sage") || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

func TestMissingExplicitConfigIsAnError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon refuses to start without root before reading its config")
	}
	code, _, errs := runCmd("-c", filepath.Join(t.TempDir(), "none.conf"), "-tcp")
	if code != exitConfig || !strings.Contains(errs, "none.conf") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}

// TestCheckConfigAsTheDaemonStarts: check-config makes the daemon's start checks, with
// FILE:LINE and the key to set, and says which keys a reload leaves for a restart.
func TestCheckConfigAsTheDaemonStarts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.conf")
	ignore := filepath.Join(dir, "ignore")
	if err := os.WriteFile(ignore, []byte("192.0.2.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "TCP_PORTS=\"1\"\nHISTORY_FILE=\"" + filepath.Join(dir, "h") + "\"\nBLOCKED_FILE=\"" + filepath.Join(dir, "b") + "\"\n"
	for _, tc := range []struct {
		name, line string
		modes      []string
		code       int
		want       string // in stderr
	}{
		{name: "fine", line: `IGNORE_FILE="` + ignore + `"`, modes: []string{"-tcp", "-stcp"}, code: exitOK},
		{name: "remote dashboard", line: `DASHBOARD="0.0.0.0:9117"`, code: exitConfig,
			want: path + `:4: error: DASHBOARD "0.0.0.0:9117" listens on 0.0.0.0, which is not a loopback address: anyone who can reach it can read bans and events; set DASHBOARD_ALLOW_REMOTE="1" to allow that, or use 127.0.0.1`},
		{name: "dashboard port", line: `DASHBOARD="127.0.0.1:99999"`, modes: []string{"-tcp"}, code: exitConfig,
			want: path + `:4: error: DASHBOARD must be host:port with a port from 1 to 65535`},
		{name: "missing interface", line: `INTERFACES="nonexist0"`, modes: []string{"-tcp", "-sudp"}, code: exitConfig,
			want: path + `:4: error: INTERFACES names "nonexist0", which is not an interface of this host: -sudp cannot capture on it`},
		{name: "interfaces unused", line: `INTERFACES="nonexist0"`, modes: []string{"-tcp"}, code: exitOK},
		{name: "ignore file missing", line: `IGNORE_FILE="` + filepath.Join(dir, "none") + `"`, code: exitOK,
			want: path + ":4: warning: IGNORE_FILE: neither " + filepath.Join(dir, "none") + " nor "},
		{name: "ignore file a directory", line: `IGNORE_FILE="` + dir + `"`, code: exitConfig,
			want: path + ":4: error: IGNORE_FILE: open " + dir + ": is a directory, not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(base+tc.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runCmd(append([]string{"check-config", "-c", path}, tc.modes...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) || tc.want == "" && errs != "" {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant %q", code, tc.code, errs, tc.want)
			}
			if want := "# restart-only keys, which a reload (SIGHUP) does not apply: INTERFACES, BLOCK_BACKEND, BAN_JOURNAL, CONTROL_SOCKET, DASHBOARD, DASHBOARD_ALLOW_REMOTE, DASHBOARD_TOKEN_FILE, JSON_LOG, FLEET_NATS, FLEET_CREDS, FLEET_TLS_CA, FLEET_TLS_CERT, FLEET_TLS_KEY, FLEET_MODE, FLEET_NAME, FLEET_STREAM\n"; tc.code == exitOK && !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		})
	}
}

// TestJournalStreamNoTimestamp: with stderr the stream JOURNAL_STREAM names (as under
// systemd), the daemon's lines carry a syslog priority for journald and no timestamp
// of their own; the classic text is unchanged.
func TestJournalStreamNoTimestamp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon refuses to start without root before it logs")
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	var stdout bytes.Buffer
	// A config that does not exist: the daemon logs that it starts, then refuses.
	if code := run([]string{"-c", filepath.Join(t.TempDir(), "none.conf"), "-tcp"}, &stdout, stderr); code != exitConfig {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(stderr.Name())
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	for _, want := range []string{
		fmt.Sprintf("<5>portsentry[%d]: adminalert: PortSentry %s is starting.\n", pid, version),
		fmt.Sprintf("<5>portsentry[%d]: adminalert: ERROR: PortSentry could not start: fix the configuration\n", pid),
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("missing %q in:\n%s", want, b)
		}
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !strings.HasPrefix(line, "<") {
			t.Errorf("line without a priority: %q", line)
		}
	}
}

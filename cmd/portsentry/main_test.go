package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"-tcp", "-help"}, {"check-config", "-h"}, {"status", "--help"}} {
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

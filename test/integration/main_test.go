// Package integration runs the real daemon (and Debian's PortSentry 1.2 as an oracle)
// inside network namespaces built by internal/testnet, attacks it with nmap and plain
// sockets from a scanner namespace, and checks what the daemon logged, wrote and put
// into the kernel.
//
// The tests need root; without it they skip. TestMain builds cmd/portsentry once,
// stamped with scripts/version.sh's version as make build does
// (PORTSENTRY_BIN=/path/to/portsentry uses a prebuilt binary instead).
package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	// daemonBin is our daemon, built by TestMain; empty when it could not be built.
	daemonBin string
	// daemonMissing explains why daemonBin is empty.
	daemonMissing string
	// daemonBuildFailed is set when cmd/portsentry exists but does not compile.
	daemonBuildFailed bool
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "psinteg")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	buildDaemon(tmp)

	// Our daemon is always given a HOSTS_DENY_FILE in a temp dir, and classic runs with
	// a private /etc; the real /etc/hosts.deny must come out untouched.
	before, _ := os.ReadFile("/etc/hosts.deny")
	_, statErr := os.Stat("/etc/hosts.deny")
	code := m.Run()
	after, _ := os.ReadFile("/etc/hosts.deny")
	_, statErr2 := os.Stat("/etc/hosts.deny")
	if !bytes.Equal(before, after) || (statErr == nil) != (statErr2 == nil) {
		fmt.Fprintln(os.Stderr, "FAIL: the tests changed the real /etc/hosts.deny")
		return 1
	}
	return code
}

// buildDaemon builds ./cmd/portsentry from the module root into dir.
func buildDaemon(dir string) {
	if os.Geteuid() != 0 {
		daemonMissing = "the integration tests need root"
		return
	}
	if bin := os.Getenv("PORTSENTRY_BIN"); bin != "" {
		daemonBin = bin
		return
	}
	root, err := moduleRoot()
	if err != nil {
		daemonMissing = err.Error()
		return
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "portsentry")); err != nil {
		daemonMissing = "cmd/portsentry does not exist yet"
		return
	}
	bin := filepath.Join(dir, "portsentry")
	// Stamped with the version as make build does, so the lines say which build ran.
	args := []string{"build", "-o", bin}
	if v, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output(); err == nil {
		args = append(args, "-ldflags", "-X main.version="+strings.TrimSpace(string(v)))
	}
	cmd := exec.Command("go", append(args, "./cmd/portsentry")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		daemonMissing = fmt.Sprintf("go build ./cmd/portsentry failed: %v\n%s", err, out)
		daemonBuildFailed = true
		return
	}
	daemonBin = bin
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test directory")
		}
		dir = parent
	}
}

// needDaemon skips the test when our daemon could not be built because cmd/portsentry
// does not exist, and fails it when the package exists but does not compile.
func needDaemon(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root (network namespaces)")
	}
	if daemonBin != "" {
		return
	}
	if daemonBuildFailed {
		t.Fatalf("our daemon is needed: %s", daemonMissing)
	}
	t.Skipf("our daemon is needed: %s", daemonMissing)
}

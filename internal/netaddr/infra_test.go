//go:build linux

package netaddr

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/portsentry-go/portsentry/internal/testnet"
)

func TestParseResolvers(t *testing.T) {
	got := parseResolvers([]byte("# comment\nsearch example\nnameserver 198.18.0.53\nnameserver fe80::1%eth0\nnameserver ::ffff:198.18.0.54\nnameserver bogus\nnameserver 198.18.0.53\noptions ndots:2\n"))
	want := []netip.Addr{netip.MustParseAddr("198.18.0.53"), netip.MustParseAddr("198.18.0.54"), netip.MustParseAddr("fe80::1")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
}

// TestInfraInNamespace runs in a fresh network namespace (the tracker reads the
// namespace of its thread, so the test re-executes itself inside `ip netns exec`).
func TestInfraInNamespace(t *testing.T) {
	if os.Getenv("PS_INFRA_CHILD") == "1" {
		infraChild(t)
		return
	}
	ns, _ := testnet.NewNS(t, "psinfra")
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "-n", ns, "link", "add", "psv0", "type", "veth", "peer", "name", "psv1")
	run("ip", "-n", ns, "link", "set", "psv0", "up")
	run("ip", "-n", ns, "link", "set", "psv1", "up")
	run("ip", "-n", ns, "addr", "add", "198.18.77.1/24", "dev", "psv0")
	run("ip", "-n", ns, "addr", "add", "2001:db8:77::1/64", "dev", "psv0", "nodad")
	run("ip", "-n", ns, "route", "add", "default", "via", "198.18.77.254")
	run("ip", "-n", ns, "-6", "route", "add", "default", "via", "2001:db8:77::fe")
	// A gateway for one network only, and a link-local next hop.
	run("ip", "-n", ns, "route", "add", "10.99.0.0/16", "via", "198.18.77.250")
	run("ip", "-n", ns, "-6", "route", "add", "2001:db8:99::/48", "via", "fe80::99", "dev", "psv0")
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 127.0.0.53\n"), 0o644)
	// systemd-resolved's list of the upstream servers behind its stub.
	os.WriteFile(filepath.Join(dir, "upstream.conf"), []byte("nameserver 198.18.77.53\nnameserver 2001:db8:77::53\n"), 0o644)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestInfraInNamespace$")
	cmd.Env = append(os.Environ(), "PS_INFRA_CHILD=1", "PS_INFRA_RESOLV="+resolv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func infraChild(t *testing.T) {
	resolv := os.Getenv("PS_INFRA_RESOLV")
	i := NewInfra(nil, resolv, filepath.Join(filepath.Dir(resolv), "upstream.conf"), "/nonexistent/resolv.conf")
	if err := i.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"198.18.77.254", "2001:db8:77::fe", "198.18.77.53", "::ffff:198.18.77.254",
		"198.18.77.250", "fe80::99", "127.0.0.53", "2001:db8:77::53"} {
		if !i.Set().Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not protected; gateways %v resolvers %v", a, i.Gateways(), i.Resolvers())
		}
	}
	if i.Set().Contains(netip.MustParseAddr("198.18.77.2")) {
		t.Error("an ordinary neighbour is protected")
	}
}

// TestReadResolversSpecialFile: a resolv.conf that is a FIFO fails the read at once
// (the caller keeps its list) instead of blocking the daemon's start; a missing one
// holds no resolver.
func TestReadResolversSpecialFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "resolv.conf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := readResolvers([]string{fifo}); !errors.Is(err, regfile.ErrNotRegular) {
			t.Errorf("FIFO: err = %v, want ErrNotRegular", err)
		}
		if got, err := readResolvers([]string{filepath.Join(dir, "absent")}); err != nil || len(got) != 0 {
			t.Errorf("missing file: %v, %v", got, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("readResolvers blocked on a FIFO")
	}
}

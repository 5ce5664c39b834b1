package nft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"pgregory.net/rapid"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// The tests below run against the real kernel, each in a fresh network namespace, and
// check what the kernel holds with nft(8) (`nft -j list ...` through `ip netns exec`),
// independently of the library the backend uses.

// newNS creates a network namespace psnft<pid>n<k>, deleted in cleanup, and returns its
// name and a handle.
func newNS(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	testnet.Require(t, "nft")
	return testnet.NewNS(t, "psnft")
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newBackend makes a Backend in ns, set up, closed in cleanup.
func newBackend(t *testing.T, h netns.NsHandle, opts Options) *Backend {
	t.Helper()
	opts.Netns = h
	b, err := New(opts, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	return b
}

// nftJSON runs `nft -j <args>` in ns and decodes the "nftables" array.
func nftJSON(t *testing.T, ns string, args ...string) []map[string]json.RawMessage {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft", "-j"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nft -j %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j %s: %v", strings.Join(args, " "), err)
	}
	return doc.Nftables
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// jsonSet is a set as nft -j prints it.
type jsonSet struct {
	Name  string            `json:"name"`
	Type  string            `json:"type"`
	Flags []string          `json:"flags"`
	Elem  []json.RawMessage `json:"elem"`
}

// kElem is one element as nft(8) shows it.
type kElem struct {
	Timeout, Expires int // seconds; 0 when permanent
}

type jsonPrefix struct {
	Prefix *struct {
		Addr string `json:"addr"`
		Len  int    `json:"len"`
	} `json:"prefix"`
}

// parseVal reads "10.0.0.1" or {"prefix": {"addr": ..., "len": ...}}.
func parseVal(t *testing.T, raw json.RawMessage) netip.Prefix {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	var p jsonPrefix
	if err := json.Unmarshal(raw, &p); err != nil || p.Prefix == nil {
		t.Fatalf("unexpected element %s: not a prefix (a corrupted interval?)", raw)
	}
	return netip.PrefixFrom(netip.MustParseAddr(p.Prefix.Addr), p.Prefix.Len)
}

// kernelSet lists a set's elements through nft(8).
func kernelSet(t *testing.T, ns, name string) map[netip.Prefix]kElem {
	t.Helper()
	out := map[netip.Prefix]kElem{}
	for _, obj := range nftJSON(t, ns, "list", "set", "inet", DefaultTable, name) {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s jsonSet
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		for _, e := range s.Elem {
			var wrapped struct {
				Elem *struct {
					Val     json.RawMessage `json:"val"`
					Timeout int             `json:"timeout"`
					Expires int             `json:"expires"`
				} `json:"elem"`
			}
			if json.Unmarshal(e, &wrapped) == nil && wrapped.Elem != nil {
				out[parseVal(t, wrapped.Elem.Val)] = kElem{wrapped.Elem.Timeout, wrapped.Elem.Expires}
				continue
			}
			out[parseVal(t, e)] = kElem{}
		}
	}
	return out
}

// kernelAll lists the elements of all our sets (ban4, ban6, ban4_24, ...).
func kernelAll(t *testing.T, ns string) map[netip.Prefix]kElem {
	m := map[netip.Prefix]kElem{}
	for _, name := range kernelSetNames(t, ns) {
		for p, e := range kernelSet(t, ns, name) {
			m[p] = e
		}
	}
	return m
}

// kernelSetNames lists the sets of our table, as nft(8) shows them.
func kernelSetNames(t *testing.T, ns string) []string {
	t.Helper()
	var names []string
	for _, obj := range nftJSON(t, ns, "list", "sets", "table", "inet", DefaultTable) {
		if raw, ok := obj["set"]; ok {
			var s jsonSet
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			names = append(names, s.Name)
		}
	}
	return names
}

type jsonRule struct {
	Chain   string            `json:"chain"`
	Handle  int               `json:"handle"`
	Comment string            `json:"comment"`
	Expr    []json.RawMessage `json:"expr"`
}

// ruleset summarises the table as nft(8) sees it: sets, chains and rules in a
// canonical text form, plus the rule handles.
func ruleset(t *testing.T, ns string) (summary []string, handles []int) {
	t.Helper()
	for _, obj := range nftJSON(t, ns, "list", "table", "inet", DefaultTable) {
		for kind, raw := range obj {
			switch kind {
			case "table":
				var v struct{ Family, Name string }
				json.Unmarshal(raw, &v)
				summary = append(summary, fmt.Sprintf("table %s %s", v.Family, v.Name))
			case "set":
				var v jsonSet
				json.Unmarshal(raw, &v)
				summary = append(summary, fmt.Sprintf("set %s %s %v", v.Name, v.Type, v.Flags))
			case "chain":
				var v struct {
					Name, Type, Hook, Policy string
					Prio                     int
				}
				json.Unmarshal(raw, &v)
				summary = append(summary, fmt.Sprintf("chain %s %s %s %d %s", v.Name, v.Type, v.Hook, v.Prio, v.Policy))
			case "rule":
				var v jsonRule
				json.Unmarshal(raw, &v)
				var exprs []string
				for _, e := range v.Expr {
					var m map[string]json.RawMessage
					json.Unmarshal(e, &m)
					for k, x := range m {
						if k == "counter" {
							x = []byte("{}") // the values vary
						}
						exprs = append(exprs, k+":"+string(compact(x)))
					}
				}
				summary = append(summary, fmt.Sprintf("rule %s %s %q", v.Chain, strings.Join(exprs, " "), v.Comment))
				handles = append(handles, v.Handle)
			}
		}
	}
	return summary, handles
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	json.Compact(&buf, b)
	return buf.Bytes()
}

var wantRuleset = []string{
	"table inet portsentry",
	"set ban4 ipv4_addr [interval timeout]",
	"set ban6 ipv6_addr [interval timeout]",
	"chain input filter input -10 accept",
	"chain forward filter forward -10 accept",
	`rule input match:{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@ban4"} counter:{} drop:null "portsentry"`,
	`rule input match:{"op":"==","left":{"payload":{"protocol":"ip6","field":"saddr"}},"right":"@ban6"} counter:{} drop:null "portsentry"`,
	`rule forward match:{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@ban4"} counter:{} drop:null "portsentry"`,
	`rule forward match:{"op":"==","left":{"payload":{"protocol":"ip6","field":"saddr"}},"right":"@ban6"} counter:{} drop:null "portsentry"`,
}

func checkRuleset(t *testing.T, ns string) []int {
	t.Helper()
	got, handles := ruleset(t, ns)
	// Order does not matter (a recreated set is listed last).
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(wantRuleset))) {
		t.Fatalf("ruleset:\n%s\nwant:\n%s\nnft says:\n%s", strings.Join(got, "\n"), strings.Join(wantRuleset, "\n"),
			nft(t, ns, "list", "ruleset"))
	}
	return handles
}

func TestNewChangesNothing(t *testing.T) {
	ns, h := newNS(t)
	b, err := New(Options{Netns: h}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if out := nft(t, ns, "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("New changed the ruleset:\n%s", out)
	}
}

func TestNewBadNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = New(Options{Netns: netns.NsHandle(f.Fd())}, nil)
	if err == nil || !strings.Contains(err.Error(), "nftables") {
		t.Fatalf("New with a non-namespace fd: %v, want a clear error", err)
	}
	t.Log(err)
}

func TestSetupIdempotent(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	handles := checkRuleset(t, ns)

	if err := b.Apply([]Ban{{Prefix: P("192.0.2.7/32"), Timeout: time.Hour}, {Prefix: P("2001:db8::1/128")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	// A second Backend, as after a restart.
	b2 := newBackend(t, h, Options{})
	if err := b2.Setup(); err != nil {
		t.Fatal(err)
	}
	if again := checkRuleset(t, ns); !slices.Equal(again, handles) {
		t.Errorf("rule handles %v after Setup again, were %v: rules were replaced", again, handles)
	}
	if got := kernelAll(t, ns); len(got) != 2 {
		t.Errorf("Setup again lost elements: %v", got)
	}
	// The first network ban adds its set and rules; the host rules stay (and keep their
	// counters).
	if err := b.Apply([]Ban{{Prefix: P("2001:db8:1::/64")}}); err != nil {
		t.Fatal(err)
	}
	_, after := ruleset(t, ns)
	if len(after) != len(handles)+2 || !slices.Equal(after[:2], handles[:2]) {
		t.Errorf("rule handles %v after a network ban, were %v", after, handles)
	}
}

func nftScript(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
}

func TestSetupRepairs(t *testing.T) {
	ns, h := newNS(t)
	// Leftovers of another version: a plain (non-interval) ban4 used by a rule, an
	// input chain at another priority with a foreign rule, no forward chain; ban6 right
	// and holding an element, which must survive.
	nftScript(t, ns, `
table inet portsentry {
	set ban4 { type ipv4_addr; elements = { 192.0.2.1 } }
	set ban6 { type ipv6_addr; flags interval,timeout; elements = { 2001:db8::1 timeout 1h } }
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr @ban4 drop
		tcp dport 22 accept
	}
}`)
	b := newBackend(t, h, Options{})
	handles := checkRuleset(t, ns)
	if got := kernelSet(t, ns, set6); len(got) != 1 {
		t.Errorf("ban6 lost its element: %v", got)
	}
	// A foreign rule added to a right chain is removed, and the other chain's rules are
	// left alone.
	nft(t, ns, "add", "rule", "inet", DefaultTable, "forward", "tcp", "dport", "80", "accept")
	if err := b.Setup(); err != nil {
		t.Fatal(err)
	}
	again := checkRuleset(t, ns)
	if !slices.Equal(again[:2], handles[:2]) {
		t.Errorf("input rules replaced: handles %v, were %v", again, handles)
	}
}

func TestApplyTimeouts(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	bans := []Ban{
		{Prefix: P("192.0.2.1/32"), Timeout: time.Hour},
		{Prefix: P("192.0.2.2/32")}, // permanent
		{Prefix: P("2001:db8:1::1/128"), Timeout: 30 * time.Minute},
		{Prefix: P("2001:db8:2::/64"), Timeout: time.Hour},
		{Prefix: P("198.51.100.0/24"), Timeout: time.Hour},
		{Prefix: P("192.0.2.9/32"), Timeout: 2 * time.Second},
		{Prefix: P("203.0.113.7/32"), Timeout: 10 * 365 * 24 * time.Hour},
	}
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	got := kernelAll(t, ns)
	want := map[netip.Prefix]int{ // timeout in seconds
		P("192.0.2.1/32"): 3600, P("192.0.2.2/32"): 0, P("2001:db8:1::1/128"): 1800,
		P("2001:db8:2::/64"): 3600, P("198.51.100.0/24"): 3600, P("192.0.2.9/32"): 2,
		P("203.0.113.7/32"): 10 * 365 * 24 * 3600,
	}
	if len(got) != len(want) {
		t.Errorf("kernel holds %v, want %v", got, want)
	}
	for p, to := range want {
		e, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%v not in the kernel", p)
		case e.Timeout != to:
			t.Errorf("%v: timeout %ds, want %ds", p, e.Timeout, to)
		case to > 2 && (e.Expires > to || e.Expires < to-5):
			t.Errorf("%v: expires in %ds, timeout %ds", p, e.Expires, to)
		}
	}
	// The library's view agrees.
	list, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Errorf("List: %v", list)
	}
	for _, l := range list {
		if to, ok := want[l.Prefix]; !ok || l.Timeout != time.Duration(to)*time.Second || l.Expires > l.Timeout {
			t.Errorf("List: %+v", l)
		}
	}

	// The 2-second ban goes by itself.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := kernelSet(t, ns, set4)[P("192.0.2.9/32")]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("2-second ban still there after 15 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := kernelAll(t, ns); len(got) != len(want)-1 {
		t.Errorf("after expiry the kernel holds %v", got)
	}
}

// kernelModes runs a test with the kernel's in-place element update (6.10+) and, forced,
// with the delete+add path older kernels get.
func kernelModes(t *testing.T, f func(t *testing.T, ns string, b *Backend)) {
	for _, mode := range []int{probeYes, probeNo} {
		t.Run(map[int]string{probeYes: "update", probeNo: "delete+add"}[mode], func(t *testing.T) {
			ns, h := newNS(t)
			b := newBackend(t, h, Options{})
			if mode == probeYes && b.canUpdate != probeYes {
				t.Skip("kernel cannot update set elements")
			}
			b.canUpdate = mode
			f(t, ns, b)
		})
	}
}

func TestReapply(t *testing.T) { kernelModes(t, testReapply) }

func testReapply(t *testing.T, ns string, b *Backend) {
	bans := []Ban{
		{Prefix: P("192.0.2.1/32"), Timeout: time.Hour},
		{Prefix: P("192.0.2.2/32")},
		{Prefix: P("2001:db8::1/128"), Timeout: time.Hour},
		{Prefix: P("2001:db8:1::/64"), Timeout: 10 * time.Second},
	}
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if e := kernelSet(t, ns, set4)[P("192.0.2.1/32")]; e.Expires > 3598 {
		t.Fatalf("expires %d s after 2 s", e.Expires)
	}
	// The same bans again: no error, no duplicates, timeouts restarted.
	if err := b.Apply(bans); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	got := kernelAll(t, ns)
	if len(got) != len(bans) {
		t.Fatalf("after re-apply: %v", got)
	}
	if e := got[P("192.0.2.1/32")]; e.Timeout != 3600 || e.Expires < 3599 {
		t.Errorf("re-added ban not refreshed: %+v", e)
	}
	if e := got[P("2001:db8:1::/64")]; e.Timeout != 10 || e.Expires < 9 {
		t.Errorf("re-added /64 not refreshed: %+v", e)
	}
	// Changing kind: permanent to timed and back.
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.2/32"), Timeout: time.Minute}, {Prefix: P("192.0.2.1/32")}}); err != nil {
		t.Fatal(err)
	}
	got = kernelSet(t, ns, set4)
	if got[P("192.0.2.2/32")].Timeout != 60 || got[P("192.0.2.1/32")].Timeout != 0 {
		t.Errorf("kind change: %v", got)
	}
	// The same prefix twice in one call: the later wins, one element.
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.3/32"), Timeout: time.Minute}, {Prefix: P("192.0.2.3/32"), Timeout: 2 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if e := kernelSet(t, ns, set4)[P("192.0.2.3/32")]; e.Timeout != 120 {
		t.Errorf("duplicate in one call: %+v", e)
	}
}

func TestApplyOverlaps(t *testing.T) { kernelModes(t, testApplyOverlaps) }

func testApplyOverlaps(t *testing.T, ns string, b *Backend) {
	if err := b.Apply([]Ban{{Prefix: P("2001:db8::/64"), Timeout: time.Hour}, {Prefix: P("192.0.2.5/32"), Timeout: 10 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	// A host inside a banned /64 is a ban of its own, with its own timeout.
	if err := b.Apply([]Ban{{Prefix: P("2001:db8::5/128"), Timeout: 2 * time.Hour}, {Prefix: P("192.0.2.6/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	got := kernelAll(t, ns)
	for p, want := range map[netip.Prefix]int{P("192.0.2.6/32"): 3600, P("2001:db8::/64"): 3600, P("2001:db8::5/128"): 7200} {
		if e, ok := got[p]; !ok || e.Timeout != want {
			t.Errorf("%v: %+v, want timeout %d; the kernel holds %v", p, e, want, got)
		}
	}
	// A network around banned hosts leaves them as they are.
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.0/24"), Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	got = kernelAll(t, ns)
	if got[P("192.0.2.0/24")].Timeout != 60 || got[P("192.0.2.5/32")].Timeout != 600 || got[P("192.0.2.6/32")].Timeout != 3600 {
		t.Errorf("after a /24 over hosts: %v", got)
	}
	if names := kernelSetNames(t, ns); !slices.Contains(names, "ban4_24") || !slices.Contains(names, "ban6_64") {
		t.Errorf("sets %v", names)
	}
}

// TestOverlapsEndExactly is the fold that outlived its record: a 1 h host ban, then a
// 2 s ban on its /24. The /24 must end after 2 s and the host's stay; and with a
// permanent host inside, the /24 must still end.
func TestOverlapsEndExactly(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	if err := b.Apply([]Ban{{Prefix: P("10.78.1.70/32"), Timeout: time.Hour}, {Prefix: P("10.78.2.1/32")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply([]Ban{{Prefix: P("10.78.1.0/24"), Timeout: 2 * time.Second}, {Prefix: P("10.78.2.0/24"), Timeout: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "ban4_24", P("10.78.1.0/24"))
	waitGone(t, ns, "ban4_24", P("10.78.2.0/24"))
	got := kernelAll(t, ns)
	if len(got) != 2 || got[P("10.78.1.70/32")].Timeout != 3600 || got[P("10.78.2.1/32")] != (kElem{}) {
		t.Errorf("after the /24s ended: %v", got)
	}
	// Revoking the /24s (already gone) and a host leaves the other host.
	if err := b.Revoke([]netip.Prefix{P("10.78.1.0/24"), P("10.78.2.1/32")}); err != nil {
		t.Fatal(err)
	}
	if got := kernelAll(t, ns); len(got) != 1 {
		t.Errorf("after Revoke: %v", got)
	}
}

// TestRevoke also pins down the interval-set trap: an expired (not yet reaped) ban next
// to live ones must not make a revoke, nor a re-add, corrupt its neighbours.
func TestRevoke(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	if err := b.Apply([]Ban{
		{Prefix: P("192.0.2.1/32")},
		{Prefix: P("192.0.2.2/32"), Timeout: time.Hour},
		{Prefix: P("192.0.2.3/32"), Timeout: time.Second},
		{Prefix: P("192.0.2.4/32"), Timeout: time.Second},
		{Prefix: P("2001:db8::1/128"), Timeout: time.Hour},
		{Prefix: P("2001:db8:1::/64"), Timeout: time.Hour},
		{Prefix: P("192.0.2.100/32"), Timeout: time.Hour}, // stays
		{Prefix: P("192.0.2.200/32"), Timeout: time.Hour}, // stays
	}); err != nil {
		t.Fatal(err)
	}
	// Wait until the 1-second bans have expired (nft no longer shows them; the kernel
	// may not have reaped them yet, which is what makes a plain delete fail).
	waitGone(t, ns, set4, P("192.0.2.3/32"))
	waitGone(t, ns, set4, P("192.0.2.4/32"))
	err := b.Revoke([]netip.Prefix{
		P("192.0.2.1/32"), P("192.0.2.3/32"), P("192.0.2.99/32"), P("192.0.2.2/32"),
		P("2001:db8::1/128"), P("2001:db8:1::/64"), P("2001:db8:dead::/64"), P("192.0.2.1/32"),
	})
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want := map[netip.Prefix]bool{P("192.0.2.100/32"): true, P("192.0.2.200/32"): true}
	checkExactly := func(when string) {
		t.Helper()
		got := kernelAll(t, ns)
		for p := range want {
			if _, ok := got[p]; !ok {
				t.Errorf("%s: %v gone; the kernel holds %v", when, p, got)
			}
		}
		for p := range got {
			if !want[p] {
				t.Errorf("%s: %v still there; the kernel holds %v", when, p, got)
			}
		}
	}
	checkExactly("after Revoke")
	// Re-adding the other expired ban (unreaped) is a plain refresh too.
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.4/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	want[P("192.0.2.4/32")] = true
	checkExactly("after re-adding an expired ban")
	// Revoking again (all absent) is fine too, and a commit later (when the kernel's
	// garbage collector runs) nothing has changed.
	if err := b.Revoke([]netip.Prefix{P("192.0.2.1/32"), P("2001:db8::1/128")}); err != nil {
		t.Errorf("Revoke of absent: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := b.Apply([]Ban{{Prefix: P("198.51.100.1/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	want[P("198.51.100.1/32")] = true
	checkExactly("later")
}

func waitGone(t *testing.T, ns, set string, p netip.Prefix) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := kernelSet(t, ns, set)[p]; !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not expire", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestFlushTeardown(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.1/32")}, {Prefix: P("2001:db8::1/128"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := kernelAll(t, ns); len(got) != 0 {
		t.Errorf("after Flush: %v", got)
	}
	checkRuleset(t, ns)
	if err := b.Teardown(); err != nil {
		t.Fatal(err)
	}
	if out := nft(t, ns, "list", "tables"); strings.Contains(out, DefaultTable) {
		t.Errorf("table still there after Teardown: %s", out)
	}
	if err := b.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	// Apply after the table vanished (as after `nft flush ruleset`) recreates it.
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.5/32")}}); err != nil {
		t.Fatalf("Apply without a table: %v", err)
	}
	checkRuleset(t, ns)
	if got := kernelAll(t, ns); len(got) != 1 {
		t.Errorf("after Apply: %v", got)
	}
}

func TestOtherTable(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{Table: "ps2"})
	if err := b.Apply([]Ban{{Prefix: P("192.0.2.1/32")}}); err != nil {
		t.Fatal(err)
	}
	if out := nft(t, ns, "list", "set", "inet", "ps2", "ban4"); !strings.Contains(out, "192.0.2.1") {
		t.Errorf("table ps2: %s", out)
	}
}

// TestLargeBatch guards against the silent-drop trap: 100,000 distinct bans in, the
// kernel must hold 100,000.
func TestLargeBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ns, h := newNS(t)
	b := newBackend(t, h, Options{Verify: true})
	const n = 100000
	bans := make([]Ban, 0, n)
	for i := range n {
		var a netip.Addr
		if i%3 == 2 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		} else {
			// Every other address, so that no two bans are adjacent, and some adjacent.
			j := i * 2
			if i%5 == 0 {
				j = i*2 + 1
			}
			a = netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
		}
		bans = append(bans, Ban{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: time.Hour})
	}
	start := time.Now()
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply(%d) with read-back verification: %v", n, time.Since(start))
	v4, v6, err := b.Count()
	if err != nil {
		t.Fatal(err)
	}
	k4, k6 := len(kernelSet(t, ns, set4)), len(kernelSet(t, ns, set6))
	if v4+v6 != n || k4+k6 != n {
		t.Fatalf("kernel holds %d+%d (library) / %d+%d (nft) elements, sent %d", v4, v6, k4, k6, n)
	}
	// Re-applying all of them is not an error and does not duplicate.
	if err := b.Apply(bans); err != nil {
		t.Fatal(err)
	}
	if v4, v6, err := b.Count(); err != nil || v4+v6 != n {
		t.Fatalf("after re-apply: %d+%d, %v", v4, v6, err)
	}
}

func TestTraffic(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	p := testnet.NewPair(t)
	h, err := netns.GetFromName(p.Defended)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b := newBackend(t, h, Options{})
	testnet.Serve(p.Listen(t, p.Defended, "tcp", ":7001"), "hello")
	other4, other6 := p.ExtraScanner(t, 3)
	to4 := netip.AddrPortFrom(p.DefV4, 7001)
	to6 := netip.AddrPortFrom(p.DefV6, 7001)

	// reach is one attempt, for the checks that a connect is dropped.
	reach := func(from netip.Addr, to netip.AddrPort) bool {
		got, err := testnet.Connect(p.Scanner, from, to, 700*time.Millisecond)
		return err == nil && got == "hello"
	}
	// reaches retries for up to 5 s, for the checks that a connect gets through: a SYN
	// lost while neighbour discovery settles on a loaded machine is retransmitted only
	// after a second, past one attempt's timeout.
	reaches := func(from netip.Addr, to netip.AddrPort) bool {
		for deadline := time.Now().Add(5 * time.Second); ; {
			if reach(from, to) {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	for _, c := range []struct {
		from netip.Addr
		to   netip.AddrPort
	}{{p.ScanV4, to4}, {other4, to4}, {p.ScanV6, to6}, {other6, to6}} {
		if !reaches(c.from, c.to) {
			t.Fatalf("%v cannot reach %v before any ban", c.from, c.to)
		}
	}

	if err := b.Apply([]Ban{
		{Prefix: netip.PrefixFrom(p.ScanV4, 32), Timeout: time.Hour},
		{Prefix: netip.PrefixFrom(p.ScanV6, 128), Timeout: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	if reach(p.ScanV4, to4) {
		t.Error("banned IPv4 scanner still connects")
	}
	if reach(p.ScanV6, to6) {
		t.Error("banned IPv6 scanner still connects")
	}
	if !reaches(other4, to4) || !reaches(other6, to6) {
		t.Error("unbanned addresses no longer connect")
	}
	pk, by, err := b.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if pk == 0 || by == 0 {
		t.Errorf("counters %d packets %d bytes after blocked connects", pk, by)
	}
	t.Logf("drop counters: %d packets, %d bytes", pk, by)
	if out := nft(t, p.Defended, "list", "chain", "inet", DefaultTable, "input"); !strings.Contains(out, fmt.Sprintf("packets %d", pk)) &&
		!strings.Contains(out, "packets") {
		t.Errorf("nft shows no counter: %s", out)
	}

	// An IPv6 /64 ban catches the other scanner address too.
	if err := b.Revoke([]netip.Prefix{netip.PrefixFrom(p.ScanV6, 128)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply([]Ban{{Prefix: p.V6Net, Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if reach(other6, to6) {
		t.Error("address in a banned /64 still connects")
	}
	if !reaches(other4, to4) {
		t.Error("IPv4 affected by an IPv6 /64 ban")
	}

	// After Revoke everything connects again.
	if err := b.Revoke([]netip.Prefix{netip.PrefixFrom(p.ScanV4, 32), p.V6Net}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from netip.Addr
		to   netip.AddrPort
	}{{p.ScanV4, to4}, {p.ScanV6, to6}, {other6, to6}} {
		if !reaches(c.from, c.to) {
			t.Errorf("%v cannot connect after Revoke", c.from)
		}
	}
	pk2, _, err := b.Counters()
	if err != nil || pk2 <= pk {
		t.Errorf("counters %d -> %d (%v)", pk, pk2, err)
	}
}

func TestConcurrent(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{BatchSize: 100})
	const workers, per = 4, 500
	errs := make(chan error, workers*2)
	for w := range workers {
		go func() {
			var bans []Ban
			for i := range per {
				a := netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				bans = append(bans, Ban{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour})
			}
			errs <- b.Apply(bans)
		}()
		go func() {
			_, err := b.List()
			errs <- err
		}()
	}
	for range workers * 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(kernelSet(t, ns, set4)); got != workers*per {
		t.Errorf("kernel holds %d, want %d", got, workers*per)
	}
}

// TestReconcile is the admin's and the attacker's ways of making the kernel differ
// from the journal: the whole ruleset flushed, the table deleted, an element deleted or
// added by hand, a timeout changed, a rule deleted, and a table left by the version
// that folded overlapping bans into one set.
func TestReconcile(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	want := []Ban{
		{Prefix: P("192.0.2.1/32"), Timeout: time.Hour},
		{Prefix: P("192.0.2.0/24"), Timeout: 10 * time.Minute},
		{Prefix: P("198.51.100.9/32")},
		{Prefix: P("2001:db8::/64"), Timeout: time.Hour},
		{Prefix: P("2001:db8::5/128"), Timeout: time.Hour},
	}
	reconcile := func(when string, restored, removed int) {
		t.Helper()
		r, err := b.Reconcile(want)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if r.Restored != restored || r.Removed != removed {
			t.Errorf("%s: %+v, want %d restored, %d removed", when, r, restored, removed)
		}
		got := kernelAll(t, ns)
		if len(got) != len(want) {
			t.Errorf("%s: the kernel holds %v", when, got)
		}
		for _, w := range want {
			e, ok := got[w.Prefix]
			if !ok || (w.Timeout == 0) != (e.Timeout == 0) || e.Expires > int(w.Timeout.Seconds())+1 {
				t.Errorf("%s: %v is %+v in the kernel", when, w.Prefix, e)
			}
		}
	}
	reconcile("first", 5, 0)
	reconcile("nothing wrong", 0, 0)

	nft(t, ns, "flush", "ruleset")
	reconcile("after nft flush ruleset", 5, 0)
	checkRulesetWith(t, ns, "ban4_24", "ban6_64")
	nft(t, ns, "delete", "table", "inet", DefaultTable)
	reconcile("after nft delete table", 5, 0)

	nft(t, ns, "delete", "element", "inet", DefaultTable, "ban4", "{ 192.0.2.1 }")
	nft(t, ns, "add", "element", "inet", DefaultTable, "ban4", "{ 203.0.113.7 }")
	nft(t, ns, "add", "element", "inet", DefaultTable, "ban6_64", "{ 2001:db8:9::/64 timeout 1h }")
	reconcile("after elements deleted and added by hand", 1, 2)

	// A permanent element for a timed ban, and a timed one for a permanent ban.
	nft(t, ns, "delete", "element", "inet", DefaultTable, "ban4_24", "{ 192.0.2.0/24 }")
	nft(t, ns, "add", "element", "inet", DefaultTable, "ban4_24", "{ 192.0.2.0/24 }")
	nft(t, ns, "delete", "element", "inet", DefaultTable, "ban4", "{ 198.51.100.9 }")
	nft(t, ns, "add", "element", "inet", DefaultTable, "ban4", "{ 198.51.100.9 timeout 1m }")
	reconcile("after timeouts changed", 2, 0)

	nft(t, ns, "flush", "chain", "inet", DefaultTable, "input")
	reconcile("after the input chain was flushed", 0, 0)
	checkRulesetWith(t, ns, "ban4_24", "ban6_64")

	// The earlier layout: a network in the host set (where nothing matches it now).
	nft(t, ns, "delete", "element", "inet", DefaultTable, "ban4_24", "{ 192.0.2.0/24 }")
	nft(t, ns, "add", "element", "inet", DefaultTable, "ban4", "{ 192.0.2.128/25 timeout 1h }")
	reconcile("after the earlier layout", 1, 1)
}

// checkRulesetWith is checkRuleset with network sets besides ban4 and ban6.
func checkRulesetWith(t *testing.T, ns string, sets ...string) {
	t.Helper()
	want := slices.Clone(wantRuleset)
	for _, name := range sets {
		v6, _, _ := parseSetName(name)
		typ, proto := "ipv4_addr", "ip"
		if v6 {
			typ, proto = "ipv6_addr", "ip6"
		}
		want = append(want, fmt.Sprintf("set %s %s [interval timeout]", name, typ))
		for _, chain := range []string{"input", "forward"} {
			want = append(want, fmt.Sprintf(`rule %s match:{"op":"==","left":{"payload":{"protocol":"%s","field":"saddr"}},"right":"@%s"} counter:{} drop:null "portsentry"`, chain, proto, name))
		}
	}
	got, _ := ruleset(t, ns)
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("ruleset:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Property: whatever sequence of bans (overlapping, of any length, permanent or not),
// revocations and hand deletions, the kernel holds exactly the model's bans after each
// step (after Reconcile for the hand deletions), each with its own timeout.
func TestKernelMatchesModel(t *testing.T) {
	ns, h := newNS(t)
	b := newBackend(t, h, Options{})
	pool := []netip.Prefix{
		P("10.78.1.70/32"), P("10.78.1.71/32"), P("10.78.1.0/24"), P("10.78.0.0/16"), P("10.78.1.64/26"),
		P("2001:db8::5/128"), P("2001:db8::/64"), P("2001:db8::/48"), P("2001:db8::4/126"),
	}
	timeouts := []time.Duration{0, time.Hour, 2 * time.Hour}
	rapid.Check(t, func(rt *rapid.T) {
		if err := b.Flush(); err != nil {
			rt.Fatal(err)
		}
		model := map[netip.Prefix]time.Duration{}
		check := func(when string, viaNft bool) {
			els, err := b.List()
			if err != nil {
				rt.Fatal(err)
			}
			got := map[netip.Prefix]time.Duration{}
			for _, e := range els {
				got[e.Prefix] = e.Timeout
			}
			if viaNft {
				got = map[netip.Prefix]time.Duration{}
				for p, e := range kernelAll(t, ns) {
					got[p] = time.Duration(e.Timeout) * time.Second
				}
			}
			if len(got) != len(model) {
				rt.Fatalf("%s: kernel %v, model %v", when, got, model)
			}
			for p, to := range model {
				if g, ok := got[p]; !ok || g != to {
					rt.Fatalf("%s: %v is %v in the kernel (present %v), %v in the model", when, p, g, ok, to)
				}
			}
		}
		for i := range rapid.IntRange(1, 12).Draw(rt, "steps") {
			p := rapid.SampledFrom(pool).Draw(rt, "prefix")
			switch rapid.IntRange(0, 2).Draw(rt, "op") {
			case 0:
				to := rapid.SampledFrom(timeouts).Draw(rt, "timeout")
				if err := b.Apply([]Ban{{Prefix: p, Timeout: to}}); err != nil {
					rt.Fatal(err)
				}
				model[p] = to
			case 1:
				if err := b.Revoke([]netip.Prefix{p}); err != nil {
					rt.Fatal(err)
				}
				delete(model, p)
			case 2:
				if _, ok := model[p]; ok {
					nft(t, ns, "delete", "element", "inet", DefaultTable, setName(p), "{ "+p.String()+" }")
				}
				var want []Ban
				for q, to := range model {
					want = append(want, Ban{Prefix: q, Timeout: to})
				}
				if _, err := b.Reconcile(want); err != nil {
					rt.Fatal(err)
				}
			}
			check(fmt.Sprintf("step %d", i), false)
		}
		check("end (nft -j)", true)
	})
}

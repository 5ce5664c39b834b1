package web

import (
	"bytes"
	"fmt"
	"github.com/portsentry-go/portsentry/internal/testnet"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/portsentry-go/portsentry/internal/control"
)

// runPage loads url in headless Chromium, letting the page run for five seconds of
// virtual time (two polls after the first load), with the extra flags.
func runPage(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	return testnet.RunChromium(t, bin, "Europe/Athens", url, append([]string{"--virtual-time-budget=5000"}, extra...)...)
}

// browserServer starts a dashboard over a fake daemon with bans and an hour of
// events. Each time late is armed, the first poll that asks for new events
// (since=...) finds one more event added just before it is answered: the page can
// only show it through its live update.
func browserServer(t *testing.T) (ts *testServer, late *atomic.Bool, lateID *atomic.Uint64) {
	t.Helper()
	now := time.Now()
	src := newFake(now)
	src.bans = append(src.bans, control.Ban{Prefix: netip.MustParsePrefix("192.0.2.200/32"), Start: now.Add(-30 * time.Second),
		Until: now.Add(24 * time.Hour), Mode: "tcp", Port: 31337, By: "detect", Offences: 1})
	ev := NewEvents(500)
	hosts := []struct{ addr, name string }{
		{"203.0.113.7", "scan-7.attacker.example"}, {"198.51.100.23", ""}, {"2001:db8::bad:1", "v6-scanner.example"},
		{"192.0.2.200", "<b>bold</b>.example"},
	}
	scans := []struct{ mode, scan, proto string }{
		{"stcp", "TCP SYN/Normal scan", "TCP"}, {"atcp", " TCP NULL scan", "TCP"}, {"audp", "", "UDP"}, {"tcp", "", "TCP"},
	}
	for i := range 90 {
		h, s := hosts[i%len(hosts)], scans[i*7%len(scans)]
		at := now.Add(-time.Duration(90-i) * 37 * time.Second)
		port := uint16([]int{143, 22, 161, 31337, 1080, 6667}[i%6])
		text := fmt.Sprintf("attackalert: %s from host: %s/%s to %s port: %d", strings.TrimSpace(s.scan), h.name, h.addr, s.proto, port)
		if s.scan == "" {
			text = fmt.Sprintf("attackalert: Connect from host: %s/%s to %s port: %d", h.name, h.addr, s.proto, port)
		}
		ev.Add(Event{Time: at, Kind: KindDetection, Addr: h.addr, Name: h.name, Port: port, Proto: s.proto, Mode: s.mode, Scan: s.scan, Text: text})
		if i%9 == 0 {
			ev.Add(Event{Time: at, Kind: KindBan, Addr: h.addr, Name: h.name, Port: port, Proto: s.proto, Mode: s.mode,
				Text: "Host " + h.addr + " has been blocked via nftables"})
		}
	}
	ev.Add(Event{Time: now.Add(-20 * time.Second), Kind: KindFlood, Addr: "", Port: 22, Proto: "TCP", Mode: "stcp",
		Text: "attackalert: Possible spoofed flood continues (for 20s): 41021 probes from 40950 new sources held back"})

	late, lateID = new(atomic.Bool), new(atomic.Uint64)
	dir := t.TempDir()
	opts := Options{Addr: "127.0.0.1:0", TokenFile: filepath.Join(dir, "dashboard.token"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		hook: func(r *http.Request) {
			if r.URL.Path == "/api/events" && r.URL.Query().Has("since") && late.CompareAndSwap(true, false) {
				lateID.Store(ev.Add(Event{Kind: KindDetection, Addr: "198.18.0.99", Name: "late.example", Port: 8080, Proto: "TCP",
					Mode: "stcp", Scan: "TCP FIN scan", Text: "attackalert: TCP FIN scan from host: late.example/198.18.0.99 to TCP port: 8080"}))
			}
		}}
	s, err := Start(opts, src, ev, NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testServer{Server: s, src: src, ev: ev, base: "http://" + s.Addr(), tokenFile: opts.TokenFile}, late, lateID
}

// TestBrowserDashboard loads the dashboard in headless Chromium and checks the DOM
// after the script ran: status, every ban with its countdown and button, the events,
// the chart, and an event added after the page loaded, shown by the live update.
func TestBrowserDashboard(t *testing.T) {
	bin := testnet.Chromium(t)
	ts, late, lateID := browserServer(t)
	late.Store(true)
	doc := parseDoc(t, runPage(t, bin, ts.base+"/", "--dump-dom"))

	root := findAll(doc, func(n *html.Node) bool { return n.Data == "html" })[0]
	if !hasClassN(root, "js") {
		t.Fatal("the script did not run")
	}
	if v := attrOf(root, "data-conn"); v != "up" {
		t.Errorf("connection state %q, want up", v)
	}
	var polls int
	fmt.Sscan(attrOf(root, "data-polls"), &polls)
	if polls < 2 {
		t.Errorf("only %d polls in 5 s", polls)
	}
	if late.Load() || lateID.Load() == 0 {
		t.Fatal("the page never polled for new events")
	}

	// Status.
	for id, want := range map[string]string{"n-bans": "4", "n-detections": "17", "backend": "backend nftables"} {
		if got := textOf(byIDN(t, doc, id)); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if got := textOf(byIDN(t, doc, "uptime")); !strings.HasPrefix(got, "3h 25m") {
		t.Errorf("uptime %q", got)
	}
	if got := textOf(byIDN(t, doc, "modes")); got != "tcpudpstcpaudp" {
		t.Errorf("modes %q", got)
	}
	if rows := findAll(byIDN(t, doc, "counter-table"), tag("tr")); len(rows) != 5 {
		t.Errorf("%d counter rows, want 5", len(rows))
	}

	// Bans: one row each, newest first, counting down, with an Unblock button.
	banRows := findAll(byIDN(t, doc, "ban-table"), func(n *html.Node) bool { return n.Data == "tr" && attrOf(n, "data-prefix") != "" })
	var prefixes []string
	for _, tr := range banRows {
		prefixes = append(prefixes, attrOf(tr, "data-prefix"))
	}
	if want := "192.0.2.200/32 2001:db8::bad:1/128 203.0.113.7/32 198.51.100.0/24"; strings.Join(prefixes, " ") != want {
		t.Fatalf("ban rows %q, want %q", prefixes, want)
	}
	for i, want := range []string{"23h 5", "1m 2", "49m 5", "permanent"} {
		left := textOf(findAll(banRows[i], class("td", "remaining"))[0])
		if !strings.HasPrefix(left, want) {
			t.Errorf("ban %s: remaining %q, want %q…", prefixes[i], left, want)
		}
		if b := findAll(banRows[i], class("button", "unblock")); len(b) != 1 || textOf(b[0]) != "Unblock" || attrOf(b[0], "data-prefix") != prefixes[i] {
			t.Errorf("ban %s: no Unblock button", prefixes[i])
		}
	}
	if host := textOf(banRows[1].FirstChild); host != "2001:db8::bad:1" {
		t.Errorf("host cell %q", host)
	}

	// Events: the newest first, the late one at the top and marked fresh, the
	// initial ones not.
	evRows := findAll(byIDN(t, doc, "event-table"), func(n *html.Node) bool { return n.Data == "tr" && attrOf(n, "data-id") != "" })
	if len(evRows) != 102 {
		t.Errorf("%d event rows, want 102", len(evRows))
	}
	top := evRows[0]
	if id := attrOf(top, "data-id"); id != fmt.Sprint(lateID.Load()) || !hasClassN(top, "fresh") {
		t.Errorf("top row: id %s (late event %d), fresh %v", id, lateID.Load(), hasClassN(top, "fresh"))
	}
	if txt := textOf(top); !strings.Contains(txt, "198.18.0.99") || !strings.Contains(txt, "late.example") || !strings.Contains(txt, "TCP FIN scan") {
		t.Errorf("late event row %q", txt)
	}
	for _, tr := range evRows[1:] {
		if hasClassN(tr, "fresh") {
			t.Errorf("initial event %s marked fresh", attrOf(tr, "data-id"))
			break
		}
	}
	found := false
	for _, tr := range evRows {
		found = found || strings.Contains(textOf(tr), "<b>bold</b>.example")
	}
	if !found {
		t.Errorf("a hostile host name is not shown as text")
	}
	if n := len(findAll(doc, tag("b"))); n != 0 {
		for _, b := range findAll(doc, tag("b")) {
			if textOf(b) == "bold" {
				t.Errorf("a host name became markup")
			}
		}
	}

	// The chart: 60 bars, their sum the hour's detections (91: 90 and the late one,
	// the oldest being 55 minutes back).
	bars := findAll(byIDN(t, doc, "chart"), class("rect", "bar"))
	if len(bars) != 60 {
		t.Fatalf("%d bars", len(bars))
	}
	sum := 0
	for _, b := range bars {
		var n int
		fmt.Sscan(attrOf(b, "data-n"), &n)
		sum += n
	}
	if sum != 91 {
		t.Errorf("chart shows %d detections, want 91", sum)
	}
	// No token yet: the page asks for it.
	if _, hidden := attrN(byIDN(t, doc, "tokenform"), "hidden"); hidden {
		t.Errorf("the token field is hidden without a token")
	}

	// With #token=... (the paste from `sudo cat`) the page keeps the token and says
	// unblocking is ready.
	token, err := os.ReadFile(ts.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	doc = parseDoc(t, runPage(t, bin, ts.base+"/#token="+strings.TrimSpace(string(token))+"&utc", "--dump-dom"))
	if _, hidden := attrN(byIDN(t, doc, "tokenform"), "hidden"); !hidden {
		t.Errorf("the token field is still shown after #token=")
	}
	if _, hidden := attrN(byIDN(t, doc, "tokenset"), "hidden"); hidden {
		t.Errorf("the page does not say unblocking is enabled")
	}
	if got := textOf(byIDN(t, doc, "started")); !strings.HasSuffix(got, " UTC") {
		t.Errorf("#utc: start time %q", got)
	}
}

func attrN(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// TestBrowserScreenshot keeps what a user sees, in $PORTSENTRY_ARTEFACTS when set.
func TestBrowserScreenshot(t *testing.T) {
	bin := testnet.Chromium(t)
	ts, late, _ := browserServer(t)
	dir := os.Getenv("PORTSENTRY_ARTEFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard.png")
	late.Store(true)
	runPage(t, bin, ts.base+"/", "--screenshot="+shot, "--window-size=1280,1700", "--hide-scrollbars")
	testnet.CheckScreenshot(t, shot, 1280, 1700)
	if os.Getenv("PORTSENTRY_ARTEFACTS") != "" {
		t.Logf("screenshot kept at %s", shot)
	}
}

// DOM helpers over golang.org/x/net/html.

func parseDoc(t *testing.T, b []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func findAll(root *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for n := range root.Descendants() {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
	}
	return out
}

func tag(name string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == name }
}

func class(name, cls string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == name && hasClassN(n, cls) }
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClassN(n *html.Node, cls string) bool {
	for _, c := range strings.Fields(attrOf(n, "class")) {
		if c == cls {
			return true
		}
	}
	return false
}

func byIDN(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	ns := findAll(doc, func(n *html.Node) bool { return attrOf(n, "id") == id })
	if len(ns) != 1 {
		t.Fatalf("%d elements with id %q", len(ns), id)
	}
	return ns[0]
}

func textOf(n *html.Node) string {
	var sb strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			sb.WriteString(d.Data)
		}
	}
	return strings.TrimSpace(sb.String())
}

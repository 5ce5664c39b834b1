package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/portsentry-go/portsentry/internal/control"
)

// fakeSource is a daemon with a fixed set of bans.
type fakeSource struct {
	mu        sync.Mutex
	status    control.Status
	bans      []control.Ban
	unblocked []netip.Prefix
	err       error
}

func (f *fakeSource) Status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.ActiveBans = len(f.bans)
	return s
}

func (f *fakeSource) List() []control.Ban {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.bans)
}

func (f *fakeSource) Unblock(p netip.Prefix) ([]control.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unblocked = append(f.unblocked, p)
	if f.err != nil {
		return nil, f.err
	}
	var out []control.Ban
	f.bans = slices.DeleteFunc(f.bans, func(b control.Ban) bool {
		if p.Bits() <= b.Prefix.Bits() && p.Contains(b.Prefix.Addr()) {
			out = append(out, b)
			return true
		}
		return false
	})
	return out, nil
}

// testNow is the fixed clock of the API tests.
var testNow = time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)

func newFake(now time.Time) *fakeSource {
	return &fakeSource{
		status: control.Status{
			Version: "0.9.0-test", Modes: []string{"tcp", "udp", "stcp", "audp"}, Backend: "nftables",
			Counters: map[string]uint64{"hits": 1234, "detections": 17, "ignored": 40, "reloads": 1, "suppressed": 2},
			Started:  now.Add(-(3*time.Hour + 25*time.Minute + 7*time.Second)),
		},
		bans: []control.Ban{
			{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Start: now.Add(-10 * time.Minute), Until: now.Add(50 * time.Minute),
				Mode: "stcp", Port: 143, Scan: "TCP SYN/Normal scan", By: "detect", Offences: 2},
			{Prefix: netip.MustParsePrefix("2001:db8::bad:1/128"), Start: now.Add(-2 * time.Minute), Until: now.Add(90 * time.Second),
				Mode: "audp", Port: 161, By: "detect", Offences: 1},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Start: now.Add(-time.Hour), By: "operator", Offences: 1},
		},
	}
}

type testServer struct {
	*Server
	src       *fakeSource
	ev        *Events
	m         *Metrics
	tokenFile string
	token     string
	base      string
}

func startTest(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	src := newFake(testNow)
	ev := NewEvents(100)
	m := NewMetrics(nil)
	dir := filepath.Join(t.TempDir(), "run", "portsentry")
	opts := Options{Addr: "127.0.0.1:0", TokenFile: filepath.Join(dir, "dashboard.token"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return testNow }}
	if mod != nil {
		mod(&opts)
	}
	s, err := Start(opts, src, ev, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ts := &testServer{Server: s, src: src, ev: ev, m: m, tokenFile: opts.TokenFile, base: "http://" + s.Addr()}
	if opts.TokenFile != NoToken {
		b, err := os.ReadFile(opts.TokenFile)
		if err != nil {
			t.Fatal(err)
		}
		ts.token = strings.TrimSpace(string(b))
	}
	return ts
}

// getJSON fetches path and decodes the answer into v, checking the status code.
func (ts *testServer) getJSON(t *testing.T, path string, code int, v any) http.Header {
	t.Helper()
	resp, err := http.Get(ts.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %s, want %d\n%s", path, resp.Status, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return resp.Header
}

func TestAPIStatus(t *testing.T) {
	ts := startTest(t, nil)
	var got map[string]any
	h := ts.getJSON(t, "/api/status", 200, &got)
	want := map[string]any{
		"version": "0.9.0-test", "modes": []any{"tcp", "udp", "stcp", "audp"}, "backend": "nftables",
		"active_bans": 3.0, "counters": map[string]any{"hits": 1234.0, "detections": 17.0, "ignored": 40.0, "reloads": 1.0, "suppressed": 2.0},
		"started": "2026-11-24T11:34:53Z", "now": "2026-11-24T15:00:00Z", "uptime_seconds": 12307.0, "unblock": true,
	}
	if !jsonEqual(got, want) {
		t.Errorf("status:\n got %v\nwant %v", got, want)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
		if h.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, h.Get(k), v)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestAPIBans(t *testing.T) {
	ts := startTest(t, nil)
	var got struct {
		Now   time.Time        `json:"now"`
		Count int              `json:"count"`
		Bans  []map[string]any `json:"bans"`
	}
	ts.getJSON(t, "/api/bans", 200, &got)
	if !got.Now.Equal(testNow) || got.Count != 3 || len(got.Bans) != 3 {
		t.Fatalf("bans: %+v", got)
	}
	want := []map[string]any{ // newest first
		{"prefix": "2001:db8::bad:1/128", "start": "2026-11-24T14:58:00Z", "until": "2026-11-24T15:01:30Z", "mode": "audp", "port": 161.0,
			"by": "detect", "offences": 1.0, "permanent": false, "remaining_seconds": 90.0},
		{"prefix": "203.0.113.7/32", "start": "2026-11-24T14:50:00Z", "until": "2026-11-24T15:50:00Z", "mode": "stcp", "port": 143.0,
			"scan": "TCP SYN/Normal scan", "by": "detect", "offences": 2.0, "permanent": false, "remaining_seconds": 3000.0},
		{"prefix": "198.51.100.0/24", "start": "2026-11-24T14:00:00Z", "by": "operator", "offences": 1.0, "permanent": true},
	}
	for i := range want {
		if !jsonEqual(got.Bans[i], want[i]) {
			t.Errorf("ban %d:\n got %v\nwant %v", i, got.Bans[i], want[i])
		}
	}

	// No bans: an empty list, not null.
	ts.src.mu.Lock()
	ts.src.bans = nil
	ts.src.mu.Unlock()
	var raw map[string]json.RawMessage
	ts.getJSON(t, "/api/bans", 200, &raw)
	if string(raw["bans"]) != "[]" {
		t.Errorf("no bans: %s", raw["bans"])
	}
}

func TestAPIEvents(t *testing.T) {
	ts := startTest(t, nil)
	var page Page
	ts.getJSON(t, "/api/events", 200, &page)
	if len(page.Events) != 0 || page.Last != 0 || page.Events == nil {
		t.Errorf("empty: %+v", page)
	}
	at := testNow.Add(-time.Minute)
	for i := range 150 {
		ts.ev.Add(Event{Time: at, Kind: KindDetection, Addr: "192.0.2.9", Name: "scan.example", Port: uint16(1000 + i),
			Proto: "TCP", Mode: "stcp", Scan: "TCP SYN/Normal scan", Text: "attackalert: TCP SYN/Normal scan from host: scan.example/192.0.2.9 to TCP port: 1000"})
	}
	ts.getJSON(t, "/api/events", 200, &page)
	// The ring holds 100; without max the newest DefaultEventsMax (100) come.
	if len(page.Events) != 100 || page.Events[0].ID != 51 || page.Last != 150 || page.Skipped != 50 {
		t.Errorf("default: %d events from %d, last %d, skipped %d", len(page.Events), page.Events[0].ID, page.Last, page.Skipped)
	}
	ts.getJSON(t, "/api/events?since=140&max=5", 200, &page)
	if len(page.Events) != 5 || page.Events[0].ID != 146 || page.Skipped != 5 {
		t.Errorf("since=140&max=5: %+v", ids(page.Events))
	}
	ts.getJSON(t, "/api/events?since=148", 200, &page)
	if !equalIDs(page.Events, 149, 150) || page.Skipped != 0 || page.Reset {
		t.Errorf("since=148: %+v", page)
	}
	e := page.Events[1]
	want := Event{ID: 150, Time: at, Kind: "detection", Addr: "192.0.2.9", Name: "scan.example", Port: 1149, Proto: "TCP", Mode: "stcp",
		Scan: "TCP SYN/Normal scan", Text: "attackalert: TCP SYN/Normal scan from host: scan.example/192.0.2.9 to TCP port: 1000"}
	if e.Time.Equal(want.Time) {
		e.Time = want.Time // the same instant; the location may differ after JSON
	}
	if e != want {
		t.Errorf("event:\n got %+v\nwant %+v", e, want)
	}
	var raw map[string]any
	ts.getJSON(t, "/api/events?since=149", 200, &raw)
	ev := raw["events"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "time", "kind", "addr", "name", "port", "proto", "mode", "scan", "text"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("event JSON lacks %q: %v", k, ev)
		}
	}
	ts.getJSON(t, "/api/events?since=9999", 200, &page)
	if !page.Reset || len(page.Events) != 100 {
		t.Errorf("since beyond last: reset %v, %d events", page.Reset, len(page.Events))
	}
	for _, bad := range []string{"since=-1", "since=x", "max=0", "max=abc"} {
		var e UnblockResult
		ts.getJSON(t, "/api/events?"+bad, 400, &e)
		if e.OK || e.Error == "" {
			t.Errorf("%s: %+v", bad, e)
		}
	}
}

func TestAPITimeline(t *testing.T) {
	ts := startTest(t, nil)
	ts.ev.Add(Event{Time: testNow.Add(-30 * time.Second), Kind: KindDetection})
	ts.ev.Add(Event{Time: testNow.Add(-30 * time.Second), Kind: KindDetection})
	ts.ev.Add(Event{Time: testNow.Add(-10 * time.Minute), Kind: KindDetection})
	var tl Timeline
	ts.getJSON(t, "/api/timeline", 200, &tl)
	if len(tl.Minute) != 60 || tl.Minute[58] != 2 || tl.Minute[49] != 1 || tl.Total != 3 {
		t.Errorf("timeline %+v", tl)
	}
	if want := testNow.Add(-59 * time.Minute); !tl.Start.Equal(want) {
		t.Errorf("start %v, want %v", tl.Start, want)
	}
}

// post sends an unblock request; hdr adds or, with an empty value, removes headers.
func (ts *testServer) post(t *testing.T, body string, hdr map[string]string) (int, UnblockResult, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.base+"/api/unblock", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+ts.token)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res UnblockResult
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("answer %s: %v\n%s", resp.Status, err, b)
	}
	return resp.StatusCode, res, resp.Header
}

func TestUnblockPermissions(t *testing.T) {
	ts := startTest(t, nil)
	if len(ts.token) < 40 {
		t.Fatalf("token %q is short", ts.token)
	}
	body := `{"prefix":"203.0.113.7"}`
	for _, c := range []struct {
		name string
		hdr  map[string]string
		code int
	}{
		{"no token", map[string]string{"Authorization": ""}, 401},
		{"wrong token", map[string]string{"Authorization": "Bearer " + strings.Repeat("A", len(ts.token))}, 401},
		{"token prefix", map[string]string{"Authorization": "Bearer " + ts.token[:10]}, 401},
		{"basic auth", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("root:"+ts.token))}, 401},
		{"cross-origin", map[string]string{"Origin": "http://evil.example"}, 403},
		{"cross-origin without token", map[string]string{"Origin": "http://evil.example", "Authorization": ""}, 403},
		{"other port", map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"null origin", map[string]string{"Origin": "null"}, 403},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"form post", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
	} {
		code, res, h := ts.post(t, body, c.hdr)
		if code != c.code || res.OK || res.Error == "" {
			t.Errorf("%s: %d %+v, want %d", c.name, code, res, c.code)
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, h.Get("WWW-Authenticate"))
		}
	}
	if n := len(ts.src.unblocked); n != 0 {
		t.Fatalf("refused requests reached the daemon %d times", n)
	}

	// The right token, same origin (as the page sends it), lowercase scheme.
	code, res, _ := ts.post(t, body, map[string]string{"Origin": ts.base, "Sec-Fetch-Site": "same-origin",
		"Authorization": "bearer " + ts.token})
	if code != 200 || !res.OK || res.Prefix != "203.0.113.7/32" || len(res.Unblocked) != 1 || res.Unblocked[0].Prefix.String() != "203.0.113.7/32" {
		t.Fatalf("right token: %d %+v", code, res)
	}
	// curl: no Origin, the token.
	code, res, _ = ts.post(t, `{"prefix":"2001:db8::/32"}`, nil)
	if code != 200 || len(res.Unblocked) != 1 || res.Unblocked[0].Prefix.String() != "2001:db8::bad:1/128" {
		t.Errorf("CIDR: %d %+v", code, res)
	}
	// Nothing matching is not an error.
	code, res, _ = ts.post(t, `{"prefix":"192.0.2.1"}`, nil)
	if code != 200 || !res.OK || res.Unblocked == nil || len(res.Unblocked) != 0 {
		t.Errorf("nothing to lift: %d %+v", code, res)
	}
	if want := []string{"203.0.113.7/32", "2001:db8::/32", "192.0.2.1/32"}; !slices.Equal(prefixStrings(ts.src.unblocked), want) {
		t.Errorf("daemon asked to unblock %v, want %v", ts.src.unblocked, want)
	}

	// Bad bodies.
	for _, b := range []string{``, `{}`, `{"prefix":"not an address"}`, `{"prefix":"10.0.0.1","extra":1}`, `[1]`, `{"prefix":"fe80::1%eth0"}`,
		`{"prefix":"` + strings.Repeat("1", 5000) + `"}`} {
		if code, res, _ := ts.post(t, b, nil); code != 400 || res.Error == "" {
			t.Errorf("body %.40q: %d %+v", b, code, res)
		}
	}
	// A daemon error is a 500 with the message.
	ts.src.err = errors.New("nft: busy")
	if code, res, _ := ts.post(t, body, nil); code != 500 || res.Error != "nft: busy" {
		t.Errorf("daemon error: %d %+v", code, res)
	}
	// Only POST.
	resp, err := http.Get(ts.base + "/api/unblock")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/unblock: %s", resp.Status)
	}
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestUnblockDisabled(t *testing.T) {
	ts := startTest(t, func(o *Options) { o.TokenFile = NoToken })
	code, res, _ := ts.post(t, `{"prefix":"203.0.113.7"}`, map[string]string{"Authorization": "Bearer x"})
	if code != 403 || res.OK {
		t.Errorf("disabled: %d %+v", code, res)
	}
	var st StatusView
	ts.getJSON(t, "/api/status", 200, &st)
	if st.Unblock {
		t.Errorf("status says unblock is on")
	}
	if len(ts.src.unblocked) != 0 {
		t.Errorf("reached the daemon")
	}
}

func TestTokenFile(t *testing.T) {
	ts := startTest(t, nil)
	fi, err := os.Stat(ts.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(ts.tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o750 {
		t.Errorf("token directory mode %v", di.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(ts.tokenFile)); len(entries) != 1 {
		t.Errorf("left-overs beside the token: %v", entries)
	}
	// A second server gets another token; closing it removes only its own file.
	other := startTest(t, func(o *Options) { o.TokenFile = ts.tokenFile })
	if other.token == ts.token {
		t.Errorf("two servers, same token")
	}
	// The first server's token is no longer on disk: it no longer works for... itself
	// still (it keeps it in memory), but closing it must not remove the new file.
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts.tokenFile); err != nil {
		t.Errorf("closing the old server removed the new token: %v", err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts.tokenFile); !os.IsNotExist(err) {
		t.Errorf("token file left after Close: %v", err)
	}
}

// TestRemoteListenerWarns: Start listens where it is told (the configuration's
// validation is what refuses a non-loopback DASHBOARD without DASHBOARD_ALLOW_REMOTE)
// and warns when that is not loopback; on loopback it only says where it listens.
func TestRemoteListenerWarns(t *testing.T) {
	src := newFake(testNow)
	dir := t.TempDir()
	for _, c := range []struct {
		addr   string
		remote bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}, {"localhost:0", false}, {"[::1]:0", false}} {
		var logs bytes.Buffer
		s, err := Start(Options{Addr: c.addr, TokenFile: filepath.Join(dir, "t"),
			Log: slog.New(slog.NewTextHandler(&logs, nil))}, src, nil, nil)
		if err != nil {
			if strings.Contains(c.addr, "::1") { // no IPv6 here
				continue
			}
			t.Fatal(err)
		}
		s.Close()
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "non-loopback")
		if warned != c.remote {
			t.Errorf("%s: warned %v, want %v: %s", c.addr, warned, c.remote, logs.String())
		}
	}
}

func TestHostHeader(t *testing.T) {
	ts := startTest(t, func(o *Options) { o.AllowedHosts = []string{"portsentry.example"} })
	for _, c := range []struct {
		host string
		code int
	}{
		{"", 200}, // the real address
		{"localhost:9117", 200},
		{"[::1]:9117", 200},
		{"portsentry.example", 200},
		{"PortSentry.Example.:443", 200},
		{"evil.example:9117", 421},
		{"localhost.evil.example", 421},
	} {
		req, _ := http.NewRequest("GET", ts.base+"/api/status", nil)
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("Host %q: %s, want %d", c.host, resp.Status, c.code)
		}
	}
}

// TestDashboardPage checks the page's policy pins exactly its own style and script,
// and that it loads nothing from anywhere.
func TestDashboardPage(t *testing.T) {
	ts := startTest(t, nil)
	resp, err := http.Get(ts.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var scripts, styles int
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "style" || strings.HasPrefix(a.Key, "on") || a.Key == "href" && strings.Contains(a.Val, "//") {
				t.Errorf("<%s %s=%q>: external or inline resource", n.Data, a.Key, a.Val)
			}
		}
		if n.Data == "script" || n.Data == "style" {
			var sb strings.Builder
			for c := range n.ChildNodes() {
				sb.WriteString(c.Data)
			}
			sum := sha256.Sum256([]byte(sb.String()))
			h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
			if !strings.Contains(csp, h) {
				t.Errorf("<%s> hash %s not in the CSP", n.Data, h)
			}
			if n.Data == "script" {
				scripts++
			} else {
				styles++
			}
		}
	}
	if scripts != 1 || styles != 1 {
		t.Errorf("%d scripts, %d styles", scripts, styles)
	}
	if !bytes.Contains(body, []byte(`data-unblock="1"`)) || !bytes.Contains(body, []byte(ts.tokenFile)) {
		t.Errorf("page does not offer unblocking or name the token file")
	}
	if bytes.Contains(body, []byte(ts.token)) {
		t.Errorf("the page contains the token")
	}
	for _, p := range []string{"/nothing", "/api", "/index.html"} {
		resp, err := http.Get(ts.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ts := startTest(t, nil)
	fams := scrape(t, ts.base+"/metrics")
	if v, ok := value(fams, "portsentry_detections_total", "mode=atcp"); !ok || v != 0 {
		t.Fatalf("detections{atcp} = %v, %v", v, ok)
	}
	ts.m.Detection("atcp")
	ts.m.Hit("atcp", "TCP FIN scan", 1)
	fams = scrape(t, ts.base+"/metrics")
	if v, _ := value(fams, "portsentry_detections_total", "mode=atcp"); v != 1 {
		t.Errorf("detections{atcp} = %v after one", v)
	}
	if v, _ := value(fams, "portsentry_hits_total", "mode=atcp,scan=fin"); v != 1 {
		t.Errorf("hits{atcp,fin} = %v after one", v)
	}
}

func TestHistoryReport(t *testing.T) {
	sample, err := filepath.Abs("../../testdata/report/history.sample")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sample); err != nil {
		t.Skip("no sample history")
	}
	ts := startTest(t, func(o *Options) { o.HistoryFile = sample })
	resp, err := http.Get(ts.base + "/report")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("PortSentry report")) || !bytes.Contains(body, []byte("scan-7.attacker.example")) {
		t.Errorf("GET /report: %s, %d bytes", resp.Status, len(body))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("report CSP %q", csp)
	}
	// Without HistoryFile there is no /report.
	plain := startTest(t, nil)
	resp, err = http.Get(plain.base + "/report")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /report without a history: %s", resp.Status)
	}
}

// TestSpecialFiles: a token file path that is a FIFO is refused at Start (the rename
// would replace it), and a history file that is a FIFO answers /report at once with an
// error instead of holding the request for ever.
func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Start(Options{Addr: "127.0.0.1:0", TokenFile: fifo}, newFake(testNow), nil, nil); err == nil {
		s.Close()
		t.Error("token file a FIFO: Start succeeded")
	} else if !strings.Contains(err.Error(), fifo+": is a FIFO, not a regular file") {
		t.Errorf("token file a FIFO: %v", err)
	}
	if st, err := os.Stat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", st, err)
	}
	ts := startTest(t, func(o *Options) { o.HistoryFile = fifo })
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(ts.base + "/report")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /report of a FIFO: %s", resp.Status)
	}
}

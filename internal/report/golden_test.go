package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/report")

// The sample mixes lines written by Debian's own portsentry 1.2 binary (RESOLVE_HOST=1,
// names from a hosts file, TZ=Europe/Athens) with lines in the same format for IPv6
// hosts, which classic cannot watch, and malformed lines of every kind.
const (
	samplePath = "../../testdata/report/history.sample"
	goldenJSON = "../../testdata/report/history.sample.json"
)

var (
	sampleZone = time.FixedZone("EET", 2*3600)
	sampleNow  = time.Date(2026, 11, 24, 17, 30, 0, 0, time.UTC)
)

func sampleOptions() Options {
	return Options{Source: "history.sample", Location: sampleZone, Now: func() time.Time { return sampleNow }}
}

func buildFile(t testing.TB, path string, opts Options) *Summary {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Build(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func renderHTML(t testing.TB, s *Summary, opts Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteHTML(&b, s, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The hand-checked content of the sample.
var (
	sampleScanners = []struct{ addr, name, probes string }{
		{"203.0.113.7", "scan-7.attacker.example", "12"},
		{"2001:db8::bad:1", "v6-scanner.example", "5"},
		{"198.51.100.23", "", "4"},
		{"2001:db8:0:2::15", "", "3"},
		{"10.99.0.2", "name.example", "2"},
		{"10.99.0.3", "scanner-3.bad.example", "2"},
		{"10.99.0.6", "", "2"},
		{"10.99.0.4", "<script>alert(1)</script>", "1"},
		{"10.99.0.5", `a&b"c'd.example`, "1"},
		{"10.99.0.7", "static-7.isp.example.net", "1"},
		{"10.99.0.8", "", "1"},
		{"10.99.0.9", "", "1"},
		{"192.0.2.99", `evil"&<b>.example`, "1"},
	}
	sampleMalformedLines = []int64{12, 21, 22, 23, 24, 25, 33}
	// Non-empty hours (EET) of the timeline, and their counts.
	sampleBusyHours = map[string]uint64{
		"2026-11-22 08": 12, "2026-11-23 11": 5, "2026-11-23 16": 3, "2026-11-23 18": 1,
		"2026-11-23 19": 1, "2026-11-23 20": 1, "2026-11-23 21": 1, "2026-11-23 22": 1,
		"2026-11-24 19": 11,
	}
)

func TestGoldenJSON(t *testing.T) {
	s := buildFile(t, samplePath, sampleOptions())
	var out bytes.Buffer
	if err := WriteJSON(&out, s); err != nil {
		t.Fatal(err)
	}
	var got Summary
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}

	// Hand-checked figures first, so that a wrong golden file cannot hide a bug.
	checks := []struct {
		what      string
		got, want any
	}{
		{"lines", got.Lines, int64(44)},
		{"blank lines", got.Blank, int64(1)},
		{"probes", got.Probes, int64(36)},
		{"bans", got.Bans, int64(36)},
		{"distinct hosts", got.DistinctHosts, uint64(13)},
		{"distinct exact", got.DistinctHostsExact, true},
		{"protocols", got.Protocols, Protocols{TCP: 25, UDP: 11}},
		{"first", *got.First, int64(1795328043)},
		{"last", *got.Last, int64(1795539744)},
		{"malformed", got.Malformed.Count, int64(7)},
		{"unit", got.Timeline.Unit, "hour"},
		{"buckets", len(got.Timeline.Buckets), 60},
		{"zone", got.Zone, "EET (UTC+02:00)"},
		{"generated", got.Generated, sampleNow.Unix()},
		{"top ports", got.TopPorts[:2], []PortCount{{143, "TCP", 6}, {161, "UDP", 5}}},
		{"top scanner", got.TopScanners[0], Scanner{Address: "203.0.113.7", Name: "scan-7.attacker.example",
			Probes: 12, TCP: 12, First: 1795328043, Last: 1795329110}},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.what, diff)
		}
	}
	var lines []int64
	for _, b := range got.Malformed.First {
		lines = append(lines, b.Line)
	}
	if !slices.Equal(lines, sampleMalformedLines) {
		t.Errorf("malformed lines %v, want %v", lines, sampleMalformedLines)
	}
	if len(got.TopScanners) != len(sampleScanners) {
		t.Errorf("%d top scanners, want %d", len(got.TopScanners), len(sampleScanners))
	}
	for i, w := range sampleScanners {
		if i < len(got.TopScanners) {
			g := got.TopScanners[i]
			if g.Address != w.addr || g.Name != w.name || strconv.FormatUint(g.Probes, 10) != w.probes {
				t.Errorf("scanner %d = %s %q %d, want %s %q %s", i+1, g.Address, g.Name, g.Probes, w.addr, w.name, w.probes)
			}
		}
	}
	busy := map[string]uint64{}
	for i, b := range got.Timeline.Buckets {
		if b.End-b.Start != 3600 || i > 0 && b.Start != got.Timeline.Buckets[i-1].End {
			t.Errorf("bucket %d %+v is not the next hour", i, b)
		}
		if b.Probes > 0 {
			busy[time.Unix(b.Start, 0).In(sampleZone).Format("2006-01-02 15")] = b.Probes
		}
	}
	if diff := cmp.Diff(sampleBusyHours, busy); diff != "" {
		t.Errorf("busy hours (-want +got):\n%s", diff)
	}

	// Then the whole document against the golden file.
	if *update {
		if err := os.WriteFile(goldenJSON, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(goldenJSON)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	var want Summary
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON differs from %s (-want +got):\n%s", goldenJSON, diff)
	}
}

// node helpers over golang.org/x/net/html.

func parseHTML(t testing.TB, b []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, c string) bool {
	v, _ := attr(n, "class")
	return slices.Contains(strings.Fields(v), c)
}

// all returns the element nodes under n (n included) for which match is true.
func all(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byTag(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == tag }
}

func byClass(tag, class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == tag && hasClass(n, class) }
}

func byID(t testing.TB, root *html.Node, id string) *html.Node {
	t.Helper()
	ns := all(root, func(n *html.Node) bool { v, _ := attr(n, "id"); return v == id })
	if len(ns) != 1 {
		t.Fatalf("%d elements with id %q", len(ns), id)
	}
	return ns[0]
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

func cells(tr *html.Node) []string {
	var out []string
	for _, td := range all(tr, byTag("td")) {
		out = append(out, text(td))
	}
	return out
}

func tbodyRows(t testing.TB, root *html.Node) []*html.Node {
	t.Helper()
	bodies := all(root, byTag("tbody"))
	if len(bodies) != 1 {
		t.Fatalf("%d tbody elements", len(bodies))
	}
	return all(bodies[0], byTag("tr"))
}

func TestGoldenHTML(t *testing.T) {
	opts := sampleOptions()
	s := buildFile(t, samplePath, opts)
	page := renderHTML(t, s, opts)
	doc := parseHTML(t, page)

	// Summary cards: the figure is both the data-n attribute and the text.
	for id, want := range map[string]string{"card-probes": "36", "card-hosts": "13", "card-bans": "36", "card-malformed": "7"} {
		vs := all(byID(t, doc, id), byClass("div", "value"))
		if len(vs) != 1 {
			t.Errorf("%s: %d values", id, len(vs))
			continue
		}
		if n, _ := attr(vs[0], "data-n"); n != want || text(vs[0]) != want {
			t.Errorf("%s: data-n %q text %q, want %s", id, n, text(vs[0]), want)
		}
	}
	// The history cannot tell a ban from a detection only logged (BLOCK_x="0"): the
	// card says what it counts.
	if got := text(byID(t, doc, "card-bans")); !strings.Contains(got, "Recorded detections") || strings.Contains(got, "Bans") {
		t.Errorf("card-bans says %q", got)
	}
	if tcp, udp := text(byID(t, doc, "n-tcp")), text(byID(t, doc, "n-udp")); tcp != "25" || udp != "11" {
		t.Errorf("protocol split TCP %s UDP %s, want 25 and 11", tcp, udp)
	}
	period := text(byID(t, doc, "card-period"))
	if !strings.Contains(period, "2026-11-22 06:14:03 UTC") || !strings.Contains(period, "2026-11-24 17:02:24 UTC") ||
		!strings.Contains(period, "2 days 10 hours") {
		t.Errorf("period card: %q", period)
	}

	// Top scanners, in order.
	rows := tbodyRows(t, byID(t, doc, "scanners"))
	if len(rows) != len(sampleScanners) {
		t.Fatalf("%d top scanner rows, want %d", len(rows), len(sampleScanners))
	}
	for i, w := range sampleScanners {
		addr := all(rows[i], byClass("button", "q"))
		names := all(rows[i], byClass("div", "name"))
		name := ""
		if len(names) == 1 {
			name = text(names[0])
		}
		probes := all(rows[i], byTag("b"))
		if len(addr) != 1 || text(addr[0]) != w.addr || name != w.name || len(probes) != 1 || text(probes[0]) != w.probes {
			t.Errorf("scanner row %d: %q, want %s %q %s", i+1, cells(rows[i]), w.addr, w.name, w.probes)
		}
	}

	// Top ports: 143/TCP then 161/UDP.
	prow := tbodyRows(t, byID(t, doc, "ports"))
	if got := cells(prow[0]); !slices.Equal(got, []string{"143", "TCP", "IMAP", "6", ""}) {
		t.Errorf("first port row %q", got)
	}
	if got := cells(prow[1]); !slices.Equal(got, []string{"161", "UDP", "SNMP", "5", ""}) {
		t.Errorf("second port row %q", got)
	}

	// The table: every line in range, newest first, the seed's columns.
	trs := tbodyRows(t, byID(t, doc, "history"))
	if len(trs) != 36 {
		t.Fatalf("%d table rows, want 36", len(trs))
	}
	wantFirst := []string{"1795539744", "11/24/2026", "19:02:24", "", "10.99.0.9", "161", "UDP"}
	if got := cells(trs[0]); !slices.Equal(got, wantFirst) {
		t.Errorf("newest row %q, want %q", got, wantFirst)
	}
	wantLast := []string{"1795328043", "11/22/2026", "08:14:03", "scan-7.attacker.example", "203.0.113.7", "1", "TCP"}
	if got := cells(trs[35]); !slices.Equal(got, wantLast) {
		t.Errorf("oldest row %q, want %q", got, wantLast)
	}
	var prev int64 = 1 << 62
	hostile := 0
	for _, tr := range trs {
		c := cells(tr)
		e, _ := strconv.ParseInt(c[0], 10, 64)
		if de, _ := attr(tr, "data-e"); de != c[0] || e > prev {
			t.Errorf("row %q: data-e %q or order wrong", c, de)
		}
		prev = e
		if c[3] == "<script>alert(1)</script>" && c[4] == "10.99.0.4" {
			hostile++
		}
	}
	if hostile != 1 {
		t.Errorf("hostile name shown %d times as text in the table, want once", hostile)
	}

	// The chart: one bar per hour from 08:00 on the 22nd to 19:00 on the 24th.
	bars := all(byID(t, doc, "timeline"), byClass("rect", "bar"))
	if len(bars) != 60 {
		t.Errorf("%d bars, want 60", len(bars))
	}
	var sum, busy int
	for _, b := range bars {
		n, _ := attr(b, "data-n")
		v, _ := strconv.Atoi(n)
		sum += v
		if v > 0 {
			busy++
			if h, _ := attr(b, "height"); h == "0" {
				t.Errorf("bar with %d probes has no height", v)
			}
		}
	}
	if sum != 36 || busy != len(sampleBusyHours) {
		t.Errorf("bars hold %d probes in %d hours, want 36 in %d", sum, busy, len(sampleBusyHours))
	}

	// Malformed lines: the count and the line numbers with a reason.
	mrows := tbodyRows(t, byID(t, doc, "malformed"))
	if len(mrows) != len(sampleMalformedLines) {
		t.Fatalf("%d malformed rows", len(mrows))
	}
	for i, tr := range mrows {
		c := cells(tr)
		if c[0] != strconv.FormatInt(sampleMalformedLines[i], 10) || c[1] == "" {
			t.Errorf("malformed row %q, want line %d with a reason", c, sampleMalformedLines[i])
		}
	}

	// Without JavaScript the controls stay hidden and the table shows recorded times.
	for _, id := range []string{"controls", "tzbox"} {
		if _, hidden := attr(byID(t, doc, id), "hidden"); !hidden {
			t.Errorf("#%s is not hidden before the script runs", id)
		}
	}
	if !strings.Contains(pageCSS, "[hidden] { display: none !important; }") {
		t.Error("the style sheet lets display rules override the hidden attribute")
	}

	checkSafePage(t, page, doc)
}

// checkSafePage: one script (ours, allowed by its hash in the CSP), no event handler
// attribute, no reference to anything outside the page.
func checkSafePage(t *testing.T, page []byte, doc *html.Node) {
	t.Helper()
	scripts := all(doc, byTag("script"))
	if len(scripts) != 1 || text(scripts[0]) != strings.TrimSpace(pageJS) {
		t.Fatalf("%d script elements, or not ours", len(scripts))
	}
	if bytes.Contains(page, []byte("<script>alert")) {
		t.Error("raw <script>alert in the page")
	}
	metas := all(doc, func(n *html.Node) bool {
		v, _ := attr(n, "http-equiv")
		return n.Data == "meta" && v == "Content-Security-Policy"
	})
	if len(metas) != 1 {
		t.Fatal("no CSP meta")
	}
	csp, _ := attr(metas[0], "content")
	sum := sha256.Sum256([]byte(scripts[0].FirstChild.Data))
	if !strings.Contains(csp, "script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") ||
		!strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not pin the script", csp)
	}
	for _, n := range all(doc, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			k := strings.ToLower(a.Key)
			if strings.HasPrefix(k, "on") {
				t.Errorf("<%s %s=%q>: event handler attribute", n.Data, a.Key, a.Val)
			}
			if (k == "href" || k == "src" || k == "action" || k == "xlink:href") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("<%s %s=%q>: reference outside the page", n.Data, a.Key, a.Val)
			}
		}
		switch n.Data {
		case "img", "iframe", "object", "embed", "link", "base", "form":
			t.Errorf("unexpected <%s> element", n.Data)
		}
	}
}

// TestHostileNames: names from PTR records (and whatever corrupted a file) are data.
// Classic lines cannot hold a blank in the name, but everything else can appear.
func TestHostileNames(t *testing.T) {
	names := []string{
		"<script>alert(1)</script>",
		`"><img/src=x/onerror=alert(2)>`,
		`'onmouseover='alert(3)`,
		"</textarea></style></script><svg/onload=alert(4)>",
		"&lt;b&gt;&amp;",
		"\xff\xfe-not-utf8",
		"javascript:alert(5)",
	}
	var in strings.Builder
	for i, n := range names {
		in.WriteString(classicLine(time.Unix(1795535595+int64(i), 0).UTC(), n, "10.0.0."+strconv.Itoa(i+1), 80+i, "TCP") + "\n")
	}
	in.WriteString("<script>alert(6)</script> - not a line\n")
	opts := Options{Source: "<b>hostile</b>.history", Location: time.UTC, Now: func() time.Time { return sampleNow }}
	s, err := Build(strings.NewReader(in.String()), opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.Probes != int64(len(names)) || s.Malformed.Count != 1 {
		t.Fatalf("probes %d malformed %d", s.Probes, s.Malformed.Count)
	}
	page := renderHTML(t, s, opts)
	doc := parseHTML(t, page)
	checkSafePage(t, page, doc)
	for _, bad := range []string{"<img", "<svg/onload", "alert(6)</script>"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("page contains raw %q", bad)
		}
	}
	// Every name is shown as text, exactly (invalid UTF-8 replaced).
	shown := map[string]int{}
	for _, tr := range tbodyRows(t, byID(t, doc, "history")) {
		shown[cells(tr)[3]]++
	}
	for _, n := range names {
		if want := strings.ToValidUTF8(n, "\uFFFD"); shown[want] != 1 {
			t.Errorf("name %q shown %d times in the table", want, shown[want])
		}
	}
	if got := text(byID(t, doc, "source")); got != "<b>hostile</b>.history" {
		t.Errorf("source shown as %q", got)
	}
	// JSON keeps the names exactly and escapes markup.
	var out bytes.Buffer
	if err := WriteJSON(&out, s); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes(), []byte("<")) {
		t.Error("JSON holds a raw '<'")
	}
	var back Summary
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, sc := range back.TopScanners {
		got[sc.Name] = true
	}
	if !got[names[0]] || !got[names[1]] {
		t.Errorf("JSON scanner names %v", got)
	}
}

// TestReportRange: -since/-until leave lines out of every figure but count them.
func TestReportRange(t *testing.T) {
	opts := sampleOptions()
	opts.Since = time.Date(2026, 11, 23, 0, 0, 0, 0, sampleZone)
	opts.Until = time.Date(2026, 11, 24, 0, 0, 0, 0, sampleZone)
	s := buildFile(t, samplePath, opts)
	// The 23rd holds the IPv6 hosts (5+3), 198.51.100.23 (4) and 192.0.2.99 (1).
	if s.Probes != 13 || s.OutsideRange != 23 || s.DistinctHosts != 4 || s.Malformed.Count != 7 {
		t.Errorf("probes %d outside %d hosts %d malformed %d", s.Probes, s.OutsideRange, s.DistinctHosts, s.Malformed.Count)
	}
	if len(s.Timeline.Buckets) != 24 || s.Timeline.Unit != "hour" {
		t.Errorf("timeline %s x %d, want the 24 hours of the range", s.Timeline.Unit, len(s.Timeline.Buckets))
	}
	if len(s.Rows) != 13 || s.Rows[0].Addr != "192.0.2.99" {
		t.Errorf("rows %d, newest %+v", len(s.Rows), s.Rows[0])
	}
}

// TestRowsNewestFirst: the table keeps the newest -rows lines however many there are,
// while every figure still covers all of them.
func TestRowsNewestFirst(t *testing.T) {
	opts := sampleOptions()
	opts.Rows = 5
	s := buildFile(t, samplePath, opts)
	var got []int64
	for _, r := range s.Rows {
		got = append(got, r.Epoch)
	}
	want := []int64{1795539744, 1795539743, 1795539742, 1795539741, 1795539739}
	if !slices.Equal(got, want) || s.RowsOmitted != 31 || s.Probes != 36 {
		t.Errorf("rows %v (omitted %d, probes %d), want %v", got, s.RowsOmitted, s.Probes, want)
	}
	opts.Rows = -1
	if s := buildFile(t, samplePath, opts); len(s.Rows) != 0 || s.Probes != 36 {
		t.Errorf("no table: %d rows, %d probes", len(s.Rows), s.Probes)
	}
}

func TestMalformedEdgeCases(t *testing.T) {
	good := classicLine(time.Unix(1795535595, 0).UTC(), "h", "10.0.0.1", 1, "UDP")
	long := strings.Repeat("x", maxLine+10)
	in := good + "\n" + long + "\n" + good + "\r\n\n\n" + good // last line without newline
	s, err := Build(strings.NewReader(in), Options{MaxMalformed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Probes != 3 || s.Malformed.Count != 1 || s.Blank != 2 || s.Lines != 6 {
		t.Errorf("probes %d malformed %d blank %d lines %d", s.Probes, s.Malformed.Count, s.Blank, s.Lines)
	}
	if b := s.Malformed.First[0]; b.Line != 2 || b.Reason != reasonTooLong || len(b.Excerpt) > excerptLen+4 {
		t.Errorf("long line: %+v", b)
	}
	// Many malformed lines: all counted, a few described.
	s, _ = Build(strings.NewReader(strings.Repeat("bad\n", 1000)), Options{})
	if s.Malformed.Count != 1000 || len(s.Malformed.First) != DefaultMalformed || s.Probes != 0 {
		t.Errorf("1000 bad lines: %d counted, %d described", s.Malformed.Count, len(s.Malformed.First))
	}
	if len(s.Timeline.Buckets) != 0 || s.First != nil {
		t.Errorf("empty report has a timeline or period")
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, s, Options{}); err != nil || !bytes.Contains(b.Bytes(), []byte("No probes in range.")) {
		t.Errorf("empty report: %v", err)
	}
}

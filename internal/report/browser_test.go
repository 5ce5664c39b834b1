package report

import (
	"github.com/portsentry-go/portsentry/internal/testnet"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeSampleReport renders the sample report into dir and returns its path.
func writeSampleReport(t *testing.T, dir string) (string, *Summary) {
	t.Helper()
	opts := sampleOptions()
	s := buildFile(t, samplePath, opts)
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, renderHTML(t, s, opts), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, s
}

// TestBrowserRendersReport opens the sample report in headless Chromium and checks the
// DOM after the page's script ran: times rendered from the epoch in the reader's zone
// (or UTC), the controls shown, the filter applied, the chart drawn.
func TestBrowserRendersReport(t *testing.T) {
	bin := testnet.Chromium(t)
	path, s := writeSampleReport(t, t.TempDir())
	const tz = "Asia/Kolkata" // UTC+05:30: neither the file's EET nor UTC
	kolkata, err := time.LoadLocation(tz)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		hash  string
		loc   *time.Location
		note  string
		shown int
	}{
		{"", kolkata, "your local time (", 36}, // ICU may name it Asia/Calcutta
		{"#utc&q=10.99.0.6", time.UTC, "Dates and times in UTC", 2},
	} {
		doc := parseHTML(t, testnet.RunChromium(t, bin, tz, "file://"+path+c.hash, "--dump-dom"))
		root := all(doc, byTag("html"))[0]
		if !hasClass(root, "js") {
			t.Fatalf("%q: the script did not run (no js class)", c.hash)
		}
		if v, _ := attr(root, "data-rendered"); v != "1" {
			t.Fatalf("%q: the script did not finish", c.hash)
		}
		if note := text(byID(t, doc, "tznote")); !strings.Contains(note, c.note) || c.loc == kolkata && !strings.Contains(note, "UTC+05:30") {
			t.Errorf("%q: time note %q, want %q", c.hash, note, c.note)
		}
		for _, id := range []string{"controls", "tzbox"} {
			if _, hidden := attr(byID(t, doc, id), "hidden"); hidden {
				t.Errorf("%q: #%s still hidden", c.hash, id)
			}
		}

		// Every row's date and time come from its epoch, in the chosen zone.
		trs := tbodyRows(t, byID(t, doc, "history"))
		if len(trs) != len(s.Rows) {
			t.Fatalf("%q: %d rows in the browser, want %d", c.hash, len(trs), len(s.Rows))
		}
		visible := 0
		for i, tr := range trs {
			got := cells(tr)
			when := time.Unix(s.Rows[i].Epoch, 0).In(c.loc)
			want := []string{when.Format("2006-01-02"), when.Format("15:04:05")}
			if !slices.Equal(got[1:3], want) {
				t.Errorf("%q: row %d shows %q, want %q", c.hash, i, got[1:3], want)
			}
			if _, hidden := attr(tr, "hidden"); !hidden {
				visible++
				if c.shown == 2 && got[4] != "10.99.0.6" {
					t.Errorf("%q: row %q passed the filter", c.hash, got)
				}
			}
		}
		if visible != c.shown {
			t.Errorf("%q: %d rows visible, want %d", c.hash, visible, c.shown)
		}
		if got := text(byID(t, doc, "shown")); c.shown == 2 && got != "2 of 36 shown" || c.shown == 36 && got != "all 36 shown" {
			t.Errorf("%q: counter %q", c.hash, got)
		}
		if bars := all(byID(t, doc, "timeline"), byClass("rect", "bar")); len(bars) != 60 {
			t.Errorf("%q: %d bars in the rendered chart, want 60", c.hash, len(bars))
		}
		if n := len(all(doc, byTag("script"))); n != 1 {
			t.Errorf("%q: %d script elements after rendering", c.hash, n)
		}
		// The hostile name is still text, in its cell.
		found := false
		for _, td := range all(byID(t, doc, "history"), byClass("td", "name")) {
			found = found || text(td) == "<script>alert(1)</script>"
		}
		if !found {
			t.Errorf("%q: hostile name not shown as text", c.hash)
		}
	}
}

// TestBrowserScreenshot takes the screenshot a user would see. It is kept in
// $PORTSENTRY_ARTEFACTS when set (the temp dir is deleted after the test).
func TestBrowserScreenshot(t *testing.T) {
	bin := testnet.Chromium(t)
	dir := os.Getenv("PORTSENTRY_ARTEFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, _ := writeSampleReport(t, t.TempDir())
	shot := filepath.Join(dir, "report-sample.png")
	testnet.RunChromium(t, bin, "Europe/Athens", "file://"+path, "--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars")
	testnet.CheckScreenshot(t, shot, 1280, 2000)
	if os.Getenv("PORTSENTRY_ARTEFACTS") != "" {
		t.Logf("screenshot kept at %s", shot)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/report"
)

const reportSample = "../../testdata/report/history.sample"

func runReport(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := reportCmd(args, &out, &errb)
	return code, out.String(), errb.String()
}

func decodeSummary(t *testing.T, s string) report.Summary {
	t.Helper()
	var sum report.Summary
	if err := json.Unmarshal([]byte(s), &sum); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return sum
}

func TestReportJSONAndMalformedOnStderr(t *testing.T) {
	code, out, errs := runReport("-history", reportSample, "-format", "json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	sum := decodeSummary(t, out)
	if sum.Probes != 36 || sum.Bans != 36 || sum.DistinctHosts != 13 || sum.Malformed.Count != 7 || sum.Source != reportSample {
		t.Errorf("summary: probes %d bans %d hosts %d malformed %d source %q", sum.Probes, sum.Bans, sum.DistinctHosts, sum.Malformed.Count, sum.Source)
	}
	for _, want := range []string{
		reportSample + ":12: malformed history line skipped: does not end in",
		reportSample + ":24: malformed history line skipped: address after",
		reportSample + ": 7 malformed lines skipped in all",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "malformed history line skipped"); n != reportShownMalformed {
		t.Errorf("%d malformed lines named on stderr, want %d", n, reportShownMalformed)
	}
}

func TestReportHTMLToFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	os.WriteFile(path, []byte("old"), 0o600)
	code, out, errs := runReport("-history", reportSample, "-o", path, "-rows", "5", "-top", "3")
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errs)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	if !strings.HasPrefix(page, "<!doctype html>") || strings.Count(page, `<tr data-e="`) != 5 ||
		!strings.Contains(page, "newest 5 of 36 lines") {
		t.Errorf("page does not look like a 5-row report (%d bytes)", len(page))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	// An unwritable destination is an error, and leaves nothing behind.
	if code, _, errs := runReport("-history", reportSample, "-o", filepath.Join(dir, "none", "r.html")); code != exitError || errs == "" {
		t.Errorf("bad -o: exit %d %q", code, errs)
	}
}

func TestReportHistoryFromConfig(t *testing.T) {
	dir := t.TempDir()
	abs, _ := filepath.Abs(reportSample)
	conf := filepath.Join(dir, "portsentry.conf")
	os.WriteFile(conf, []byte("# test\nHISTORY_FILE=\""+abs+"\"\nSOME_UNKNOWN_KEY=\"1\"\n"), 0o600)
	code, out, errs := runReport("-c", conf, "-format", "json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if sum := decodeSummary(t, out); sum.Source != abs || sum.Probes != 36 {
		t.Errorf("source %q probes %d", sum.Source, sum.Probes)
	}
	if !strings.Contains(errs, conf+":3: warning") {
		t.Errorf("config warning not shown:\n%s", errs)
	}
	// -history wins over -c.
	code, out, _ = runReport("-c", conf, "-history", reportSample, "-format", "json")
	if sum := decodeSummary(t, out); code != exitOK || sum.Source != reportSample {
		t.Errorf("-history with -c: exit %d source %q", code, sum.Source)
	}
	// No HISTORY_FILE, or no config at all.
	os.WriteFile(conf, []byte("BLOCK_TCP=\"1\"\n"), 0o600)
	if code, _, errs := runReport("-c", conf); code != exitConfig || !strings.Contains(errs, "HISTORY_FILE") {
		t.Errorf("config without HISTORY_FILE: exit %d %q", code, errs)
	}
	if code, _, errs := runReport("-c", filepath.Join(dir, "none.conf")); code != exitConfig || !strings.Contains(errs, "none.conf") {
		t.Errorf("missing config: exit %d %q", code, errs)
	}
}

func TestReportStdin(t *testing.T) {
	data, err := os.ReadFile(reportSample)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write(data); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	code, out, errs := runReport("-history", "-", "-format", "json", "-since", "2026-11-23T00:00:00+02:00", "-until", "2026-11-24T00:00:00+02:00")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if sum := decodeSummary(t, out); sum.Source != "standard input" || sum.Probes != 13 || sum.OutsideRange != 23 {
		t.Errorf("source %q probes %d outside %d", sum.Source, sum.Probes, sum.OutsideRange)
	}
}

func TestReportErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-format", "xml"},
		{"-rows", "-1"},
		{"-top", "0"},
		{"-since", "yesterday"},
		{"-until", "-5h"},
		{"-since", "2026-11-24", "-until", "2026-11-23"},
		{"extra"},
		{"-bogus"},
	} {
		if code, _, errs := runReport(append([]string{"-history", reportSample}, args...)...); code != exitUsage || errs == "" {
			t.Errorf("%q: exit %d, stderr %q; want usage error", args, code, errs)
		}
	}
	missing := filepath.Join(t.TempDir(), "portsentry.history")
	if code, _, errs := runReport("-history", missing); code != exitError || !strings.Contains(errs, missing) {
		t.Errorf("missing history: exit %d %q", code, errs)
	}
	// Asked for, the usage goes to stdout and is no error.
	if code, out, errs := runReport("-h"); code != exitOK || errs != "" || !strings.Contains(out, "portsentry report [-history FILE") {
		t.Errorf("-h: exit %d\n%s%s", code, out, errs)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.Local) }
	for _, c := range []struct {
		in       string
		endOfDay bool
		want     time.Time
	}{
		{"", false, time.Time{}},
		{"2026-11-24T15:53:15Z", false, time.Date(2026, 11, 24, 15, 53, 15, 0, time.UTC)},
		{"2026-11-24T15:53:15+02:00", true, time.Date(2026, 11, 24, 13, 53, 15, 0, time.UTC)},
		{"2026-11-24", false, day(2026, 11, 24)},
		{"2026-11-24", true, day(2026, 11, 25)},
		{"2026-12-31", true, day(2027, 1, 1)},
		{"24h", false, now.Add(-24 * time.Hour)},
		{"90m", true, now.Add(-90 * time.Minute)},
		{"7d", false, now.AddDate(0, 0, -7)},
	} {
		got, err := parseWhen(c.in, now, c.endOfDay)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseWhen(%q, %v) = %v, %v; want %v", c.in, c.endOfDay, got, err, c.want)
		}
	}
	for _, bad := range []string{"0h", "-1h", "0d", "1.5d", "d", "24", "2026-13-01", "2026-11-24 15:00", "now"} {
		if _, err := parseWhen(bad, now, false); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
}

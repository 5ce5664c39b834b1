package testnet

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Chromium returns the headless browser the real-browser tests use. Without one the
// test is skipped, except under CI (CI=true), where scripts/install-deps.sh installs it
// and its absence is a failure.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (scripts/install-deps.sh installs it for the tests)")
	}
	t.Skip("chromium not installed: skipping the real-browser test")
	return ""
}

// ChromiumArgs are the flags of a headless, offline, throw-away browser run (this
// machine has no network: without them Chromium keeps trying to reach Google).
func ChromiumArgs(t testing.TB) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
}

// RunChromium loads url in headless Chromium with the extra flags, in time zone tz
// ("" keeps the test's), and returns what it printed (e.g. --dump-dom).
func RunChromium(t testing.TB, bin, tz, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(append(ChromiumArgs(t), extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	if tz != "" {
		cmd.Env = append(os.Environ(), "TZ="+tz)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return stdout.Bytes()
}

// CheckScreenshot checks that the PNG at path is w×h and not blank (a rendered page
// paints many distinct colours).
func CheckScreenshot(t testing.TB, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %v, want %dx%d", b, w, h)
	}
	colours := map[uint32]bool{}
	for y := 0; y < h; y += 7 {
		for x := 0; x < w; x += 7 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[r>>12<<8|g>>12<<4|b>>12] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot looks blank: %d colours", len(colours))
	}
}

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry-go/portsentry/internal/testnet"
)

// nsGet fetches url from inside namespace ns.
func nsGet(t *testing.T, ns, url string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := testnet.Do(ns, func() (err error) {
				conn, err = net.DialTimeout(network, addr, 3*time.Second)
				return err
			})
			return conn, err
		},
	}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// metricValue sums the samples of a metric whose labels contain every want.
func metricValue(text, name string, want ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if f := strings.Fields(l); ok && len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestMetricsAndEventsDuringAScan: scrape the daemon's metrics before and after a real
// scan from another namespace and see its counters move; the JSON API and the JSON
// log carry the same detection.
func TestMetricsAndEventsDuringAScan(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	jsonLog := filepath.Join(f.Dir, "events.json")
	f.write(t, nil, nftSettings(
		testnet.Setting{Key: "DASHBOARD", Value: "127.0.0.1:9117"},
		testnet.Setting{Key: "DASHBOARD_TOKEN_FILE", Value: filepath.Join(f.Dir, "token")},
		testnet.Setting{Key: "JSON_LOG", Value: jsonLog})...)
	d := startOurs(t, p, f, "tcp", "atcp")
	d.WaitFor(t, "Dashboard, API and metrics on http://127.0.0.1:9117/", 5*time.Second)
	base := "http://127.0.0.1:9117"
	before := nsGet(t, p.Defended, base+"/metrics")

	hit(t, p, p.ScanV4, p.DefV4, 143) // connect mode
	// A FIN to a port nobody listens on (advanced mode): capture counters move too.
	injectTCP(t, p, newAttackers(p).addr(t, 50, false), p.DefV4, 777, testnet.TCPFin)
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		after := nsGet(t, p.Defended, base+"/metrics")
		moved := metricValue(after, "portsentry_detections_total", `mode="tcp"`) > metricValue(before, "portsentry_detections_total", `mode="tcp"`) &&
			metricValue(after, "portsentry_hits_total", `mode="tcp"`, `scan="connect"`) >= 1 &&
			metricValue(after, "portsentry_bans_total", `backend="nftables"`) >= 1 &&
			metricValue(after, "portsentry_bans_active", `backend="nftables"`) >= 1 &&
			metricValue(after, "portsentry_capture_packets_total") >= 1
		return moved, after
	})
	var events struct {
		Events []struct{ Kind, Addr, Text string }
	}
	if err := json.Unmarshal([]byte(nsGet(t, p.Defended, base+"/api/events")), &events); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Events {
		found = found || (e.Kind == "detection" && e.Addr == p.ScanV4.String() && strings.Contains(e.Text, "Connect from host"))
	}
	if !found {
		t.Errorf("no detection event for %s in /api/events: %+v", p.ScanV4, events.Events)
	}
	testnet.Eventually(t, 5*time.Second, func() (bool, string) {
		data, _ := os.ReadFile(jsonLog)
		return strings.Contains(string(data), `"kind":"detection"`) && strings.Contains(string(data), `"addr":"`+p.ScanV4.String()+`"`), string(data)
	})
}

// TestDashboardInBrowser: headless Chromium, run inside the defended namespace, loads
// the live dashboard of a daemon that has just banned a scanner, and the page shows the
// ban and the detection (rendered by the page's script from the JSON API).
func TestDashboardInBrowser(t *testing.T) {
	needDaemon(t)
	testnet.Require(t, "nft", "chromium")
	t.Parallel()
	p := testnet.NewPair(t)
	f := newFiles(t)
	f.write(t, nil, nftSettings(
		testnet.Setting{Key: "DASHBOARD", Value: "127.0.0.1:9118"},
		testnet.Setting{Key: "DASHBOARD_TOKEN_FILE", Value: filepath.Join(f.Dir, "token")})...)
	d := startOurs(t, p, f, "tcp")
	d.WaitFor(t, "Dashboard, API and metrics", 5*time.Second)
	hit(t, p, p.ScanV4, p.DefV4, 143)
	d.WaitFor(t, "has been banned via nftables", 5*time.Second)

	chrome := func(extra ...string) string {
		args := append(append(testnet.ChromiumArgs(t), "--virtual-time-budget=5000"), extra...)
		out, err := p.Try(p.Defended, 60*time.Second, "chromium", append(args, "http://127.0.0.1:9118/")...)
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, out)
		}
		return out
	}
	dom := chrome("--dump-dom")
	for _, want := range []string{p.ScanV4.String(), "Connect from host: " + p.ScanV4.String()} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard DOM lacks %q", want)
		}
	}
	if dir := os.Getenv("PORTSENTRY_ARTEFACTS"); dir != "" {
		shot := filepath.Join(dir, "dashboard-live.png")
		chrome("--screenshot="+shot, "--window-size=1280,1400")
		t.Logf("screenshot: %s", shot)
	}
}

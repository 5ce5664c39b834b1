package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portsentry-go/portsentry/internal/packet"
)

// scrape fetches url and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value returns the sample of family name whose labels are exactly labels
// ("k=v,k=v"), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name, labels string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		if strings.Join(ls, ",") != labels {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsScrape(t *testing.T) {
	var tot Totals
	m := NewMetrics(&tot)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	before := scrape(t, srv.URL)
	// Pre-created series exist at zero; capture and active bans do not exist yet.
	for _, c := range []struct{ name, labels string }{
		{"portsentry_hits_total", "mode=tcp,scan=connect"},
		{"portsentry_hits_total", "mode=stcp,scan=syn"},
		{"portsentry_hits_total", "mode=audp,scan=udp"},
		{"portsentry_detections_total", "mode=sudp"},
		{"portsentry_commands_total", ""},
		{"portsentry_command_failures_total", ""},
		{"portsentry_ignored_total", ""},
		{"portsentry_reloads_total", ""},
		{"portsentry_suppressed_total", ""},
	} {
		if v, ok := value(before, c.name, c.labels); !ok || v != 0 {
			t.Errorf("before: %s{%s} = %v, %v; want 0, present", c.name, c.labels, v, ok)
		}
	}
	for _, name := range []string{"portsentry_capture_packets_total", "portsentry_capture_dropped_total", "portsentry_bans_active"} {
		if before[name] != nil {
			t.Errorf("%s present before it was set", name)
		}
	}
	if before["go_goroutines"] == nil || before["process_cpu_seconds_total"] == nil && before["process_start_time_seconds"] == nil {
		t.Errorf("runtime collectors missing")
	}

	m.Hit("tcp", "", 1)
	m.Hit("tcp", "", 1)
	m.Hit("stcp", packet.ScanSYN, 1)
	m.Hit("atcp", packet.ScanNULL, 1)
	m.Hit("atcp", "Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0", 1)
	m.Hit("sudp", "", 1)
	m.Hit("stcp", "something new", 1)
	m.Detection("stcp")
	m.Detection("tcp")
	m.Detection("tcp")
	tot.Ignored.Add(1)
	tot.Suppressed.Add(1)
	tot.Reloads.Add(1)
	m.Command(true)
	m.Command(false)
	m.Ban("nftables")
	m.Ban("nftables")
	m.Ban("route")
	m.BackendError("nftables")
	m.WriteError("history")
	m.WriteError("history")
	m.WriteError("ban_journal")
	m.WriteQueued("history", 12)
	m.WriteQueued("history", 5)
	m.WriteQueued("json_log", 0)
	m.WriteDropped("history", 3)
	var active atomic.Int64
	active.Store(7)
	m.SetActiveBans("nftables", func() float64 { return float64(active.Load()) })
	m.SetActiveBans("route", func() float64 { return 1 })
	var seen, drops atomic.Uint64
	seen.Store(1000)
	drops.Store(3)
	m.SetCapture(func() (uint64, uint64) { return seen.Load(), drops.Load() })

	after := scrape(t, srv.URL)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"portsentry_hits_total", "mode=tcp,scan=connect", 2},
		{"portsentry_hits_total", "mode=stcp,scan=syn", 1},
		{"portsentry_hits_total", "mode=atcp,scan=null", 1},
		{"portsentry_hits_total", "mode=atcp,scan=unknown", 1},
		{"portsentry_hits_total", "mode=sudp,scan=udp", 1},
		{"portsentry_hits_total", "mode=stcp,scan=other", 1},
		{"portsentry_hits_total", "mode=udp,scan=connect", 0},
		{"portsentry_detections_total", "mode=stcp", 1},
		{"portsentry_detections_total", "mode=tcp", 2},
		{"portsentry_ignored_total", "", 1},
		{"portsentry_suppressed_total", "", 1},
		{"portsentry_reloads_total", "", 1},
		{"portsentry_commands_total", "", 2},
		{"portsentry_command_failures_total", "", 1},
		{"portsentry_bans_total", "backend=nftables", 2},
		{"portsentry_bans_total", "backend=route", 1},
		{"portsentry_backend_errors_total", "backend=nftables", 1},
		{"portsentry_write_errors_total", "file=history", 2},
		{"portsentry_write_errors_total", "file=ban_journal", 1},
		{"portsentry_write_queued", "file=history", 5},
		{"portsentry_write_queued", "file=json_log", 0},
		{"portsentry_write_dropped_total", "file=history", 3},
		{"portsentry_bans_active", "backend=nftables", 7},
		{"portsentry_bans_active", "backend=route", 1},
		{"portsentry_capture_packets_total", "", 1000},
		{"portsentry_capture_dropped_total", "", 3},
	} {
		if v, ok := value(after, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	types := map[string]dto.MetricType{
		"portsentry_hits_total": dto.MetricType_COUNTER, "portsentry_bans_active": dto.MetricType_GAUGE,
		"portsentry_capture_packets_total": dto.MetricType_COUNTER, "portsentry_capture_dropped_total": dto.MetricType_COUNTER,
		"portsentry_bans_total": dto.MetricType_COUNTER, "portsentry_backend_errors_total": dto.MetricType_COUNTER,
		"portsentry_write_errors_total": dto.MetricType_COUNTER, "portsentry_write_queued": dto.MetricType_GAUGE,
		"portsentry_write_dropped_total": dto.MetricType_COUNTER,
	}
	for name, typ := range types {
		if f := after[name]; f == nil || f.GetType() != typ || f.GetHelp() == "" {
			t.Errorf("%s: type %v, help %q; want %v with help", name, f.GetType(), f.GetHelp(), typ)
		}
	}

	// The function-backed metrics follow their sources; removing them works.
	active.Store(2)
	seen.Store(5000)
	m.SetActiveBans("route", nil)
	third := scrape(t, srv.URL)
	if v, _ := value(third, "portsentry_bans_active", "backend=nftables"); v != 2 {
		t.Errorf("bans_active after change: %v", v)
	}
	if _, ok := value(third, "portsentry_bans_active", "backend=route"); ok {
		t.Errorf("bans_active{route} still present after SetActiveBans(route, nil)")
	}
	if v, _ := value(third, "portsentry_capture_packets_total", ""); v != 5000 {
		t.Errorf("capture packets after change: %v", v)
	}
	m.SetCapture(nil)
	if f := scrape(t, srv.URL)["portsentry_capture_packets_total"]; f != nil {
		t.Errorf("capture metrics present after SetCapture(nil)")
	}

	// Every family of ours follows the naming conventions.
	for name, f := range after {
		if !strings.HasPrefix(name, "portsentry_") {
			continue
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if f.GetType() == dto.MetricType_GAUGE && strings.HasSuffix(name, "_total") {
			t.Errorf("gauge %s ends in _total", name)
		}
	}
}

func TestMetricsPrivateRegistry(t *testing.T) {
	// Two sets side by side do not clash (nothing goes to the global registry).
	a, b := NewMetrics(nil), NewMetrics(nil)
	a.Hit("tcp", "", 1)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `portsentry_hits_total{mode="tcp",scan="connect"} 0`) {
		t.Errorf("second registry sees the first one's hit:\n%s", rec.Body.String())
	}
}

func TestMetricsNoAllocs(t *testing.T) {
	m := NewMetrics(nil)
	m.Ban("nftables")
	m.BackendError("nftables")
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Hit connect", func() { m.Hit("tcp", "", 1) }},
		{"Hit SYN", func() { m.Hit("stcp", packet.ScanSYN, 1) }},
		{"Hit NULL", func() { m.Hit("atcp", packet.ScanNULL, 1) }},
		{"Hit UDP stealth", func() { m.Hit("audp", "", 1) }},
		{"Detection", func() { m.Detection("sudp") }},
		{"Command", func() { m.Command(false) }},
		{"Ban", func() { m.Ban("nftables") }},
		{"BackendError", func() { m.BackendError("nftables") }},
	} {
		if n := testing.AllocsPerRun(1000, c.f); n != 0 {
			t.Errorf("%s: %v allocations per call", c.name, n)
		}
	}
}

func TestScanLabel(t *testing.T) {
	for _, c := range []struct{ mode, scan, want string }{
		{"tcp", "", "connect"},
		{"udp", "", "connect"},
		{"sudp", "", "udp"},
		{"audp", "", "udp"},
		{"stcp", "", "unknown"},
		{"stcp", packet.ScanSYN, "syn"},
		{"stcp", packet.ScanFIN, "fin"},
		{"stcp", packet.ScanXMAS, "xmas"},
		{"atcp", packet.ScanNULL, "null"},
		{"atcp", "syn", "syn"},
		{"atcp", "Unknown Type: TCP Packet Flags: SYN: 1", "unknown"},
		{"stcp", "made up", "other"},
	} {
		if got := ScanLabel(c.mode, c.scan); got != c.want {
			t.Errorf("ScanLabel(%q, %q) = %q, want %q", c.mode, c.scan, got, c.want)
		}
	}
}

func BenchmarkHit(b *testing.B) {
	m := NewMetrics(nil)
	b.ReportAllocs()
	for b.Loop() {
		m.Hit("stcp", packet.ScanSYN, 1)
	}
}

// TestBuildInfo: portsentry_build_info says which build runs.
func TestBuildInfo(t *testing.T) {
	m := NewMetrics(nil)
	m.SetBuildInfo("2.0.0-1+gabc1234")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	got := scrape(t, srv.URL)
	if v, ok := value(got, "portsentry_build_info", "goversion="+runtime.Version()+",version=2.0.0-1+gabc1234"); !ok || v != 1 {
		t.Errorf("portsentry_build_info = %v, %v; want 1 with the version and Go version", v, ok)
	}
}

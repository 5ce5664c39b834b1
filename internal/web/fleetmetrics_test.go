package web

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestFleetMetrics(t *testing.T) {
	m := NewMetrics(nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	if f := scrape(t, srv.URL)["portsentry_fleet_link_up"]; f != nil {
		t.Fatal("fleet metrics present without a fleet")
	}
	f := m.Fleet()
	if m.Fleet() != f {
		t.Fatal("a second call made new metrics")
	}
	f.Published()
	f.PublishFailed()
	f.PublishFailed()
	f.Queued(4)
	f.Received()
	f.Applied(3)
	f.Rejected("protected")
	f.Rejected("protected")
	f.Rejected("origin_cap")
	f.Lag(3 * time.Millisecond)
	f.Link(true)
	got := scrape(t, srv.URL)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"portsentry_fleet_published_total", "", 1},
		{"portsentry_fleet_publish_failures_total", "", 2},
		{"portsentry_fleet_queued", "", 4},
		{"portsentry_fleet_received_total", "", 1},
		{"portsentry_fleet_applied_total", "", 3},
		{"portsentry_fleet_rejected_total", "reason=protected", 2},
		{"portsentry_fleet_rejected_total", "reason=origin_cap", 1},
		{"portsentry_fleet_link_up", "", 1},
	} {
		if v, ok := value(got, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	h := got["portsentry_fleet_lag_seconds"]
	if h == nil || h.GetMetric()[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("lag histogram: %v", h)
	}
}

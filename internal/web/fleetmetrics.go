package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetMetrics are the fleet link's metrics. They exist only in a daemon with
// FLEET_NATS set: Metrics.Fleet registers them at its first call.
type FleetMetrics struct {
	published, publishFailures, received, applied prometheus.Counter
	rejected                                      *prometheus.CounterVec
	queued, link                                  prometheus.Gauge
	lag                                           prometheus.Histogram
}

// Fleet returns the fleet metrics, registering them the first time.
func (m *Metrics) Fleet() *FleetMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fleet != nil {
		return m.fleet
	}
	f := &FleetMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_fleet_published_total",
			Help: "This host's ban changes (bans, unbans, expiries) stored by the fleet's stream.",
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_fleet_publish_failures_total",
			Help: "Publishes to the fleet's stream that failed (they stay queued and are retried with the same id).",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_fleet_received_total",
			Help: "Messages received from other fleet hosts (replays included).",
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portsentry_fleet_applied_total",
			Help: "Other fleet hosts' bans put in force here.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portsentry_fleet_rejected_total",
			Help: "Other fleet hosts' bans not enforced here, by reason (local policy, caps, malformed or forged messages).",
		}, []string{"reason"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portsentry_fleet_queued",
			Help: "This host's ban changes waiting to be published.",
		}),
		link: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portsentry_fleet_link_up",
			Help: "1 while the link to the fleet's NATS servers works, 0 while it is down.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portsentry_fleet_lag_seconds",
			Help:    "Time from a ban made on another fleet host to its enforcement here (live messages, not replays).",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	m.reg.MustRegister(f.published, f.publishFailures, f.received, f.applied, f.rejected, f.queued, f.link, f.lag)
	m.fleet = f
	return f
}

// Published counts a message stored by the stream.
func (f *FleetMetrics) Published() { f.published.Inc() }

// PublishFailed counts a failed publish.
func (f *FleetMetrics) PublishFailed() { f.publishFailures.Inc() }

// Queued sets how many messages wait to be published.
func (f *FleetMetrics) Queued(n int) { f.queued.Set(float64(n)) }

// Received counts a peer's message.
func (f *FleetMetrics) Received() { f.received.Inc() }

// Applied counts n peers' bans put in force.
func (f *FleetMetrics) Applied(n int) { f.applied.Add(float64(n)) }

// Rejected counts a peer's ban refused, and why.
func (f *FleetMetrics) Rejected(why string) { f.rejected.WithLabelValues(why).Inc() }

// Lag observes the time from a peer's ban to its enforcement here.
func (f *FleetMetrics) Lag(d time.Duration) { f.lag.Observe(d.Seconds()) }

// Link sets the link state.
func (f *FleetMetrics) Link(up bool) {
	if up {
		f.link.Set(1)
	} else {
		f.link.Set(0)
	}
}

package fleet

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/bans"
)

// benchReceivers is how many hosts enforce each ban in BenchmarkFleet: enough to see
// the fan-out, few enough for a shared 2-core machine.
const benchReceivers = 30

// BenchmarkFleet measures, on an embedded 3-node cluster, the time from a ban being
// in force on its origin (the manager's event, after journal and backend) to its
// being in force on each of benchReceivers other hosts, with b.N bans made 5 ms
// apart; then how long a host joining late takes to catch up with 10,000 bans in the
// stream. Run: go test ./internal/fleet -run '^$' -bench Fleet -benchtime 400x
func BenchmarkFleet(b *testing.B) {
	c := newCluster(b, 3)
	var mu sync.Mutex
	made := map[netip.Prefix]time.Time{}
	var lat []time.Duration
	origin := newHostWith(b, "origin", c.urls(0), func(op bans.Op, ban bans.Ban) {
		if op == bans.OpBan && !ban.Remote() {
			mu.Lock()
			made[ban.Prefix] = time.Now()
			mu.Unlock()
		}
	})
	var hosts []*host
	for i := range benchReceivers {
		hosts = append(hosts, newHostWith(b, fmt.Sprintf("r%d", i), c.urls(i%3), func(op bans.Op, ban bans.Ban) {
			if op == bans.OpBan && ban.Remote() {
				now := time.Now()
				mu.Lock()
				if t0, ok := made[ban.Prefix]; ok {
					lat = append(lat, now.Sub(t0))
				}
				mu.Unlock()
			}
		}))
	}
	eventually(b, within, "not every host linked", all(append(hosts, origin), func(h *host) bool { return h.caughtUp.Load() >= 1 }))
	b.ResetTimer()
	var last netip.Prefix
	for i := range b.N {
		last = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		origin.block(b, last, time.Hour)
		time.Sleep(5 * time.Millisecond)
	}
	eventually(b, 2*within, "the last ban did not reach every host", all(hosts, func(h *host) bool { return h.holds(last, "origin") }))
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	samples := len(lat)
	mu.Unlock()
	b.ReportMetric(float64(samples), "enforcements")

	const backlog = 10000
	fill(b, c.url(1), backlog)
	start := time.Now()
	late := newHost(b, "late", c.urls(2))
	eventually(b, 2*within, "the late host did not catch up", func() bool { return late.caughtUp.Load() >= 1 })
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "catchup-ms")
	if n := late.m.Len(); n < backlog {
		b.Fatalf("the late host holds %d bans after its replay, want at least %d", n, backlog)
	}
}

// fill publishes n bans of a host "bulk" straight to the stream.
func fill(b *testing.B, url string, n int) {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var futures []jetstream.PubAckFuture
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
		m := FromBan("bulk", OpBan, bans.Ban{Prefix: p, Start: now, Until: now.Add(time.Hour)}, now)
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: Subject("bulk", p), Data: m.Encode()}, jetstream.WithMsgID(m.ID()))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == 1000 || i == n-1 {
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
}

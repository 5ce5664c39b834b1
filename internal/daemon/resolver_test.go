package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/portsentry-go/portsentry/internal/fifo"
)

// fakeDNS is a lookup function for the resolver. Each call is counted per address and
// answered by answer; with hang it first waits for release or the lookup's context.
type fakeDNS struct {
	mu      sync.Mutex
	calls   map[string]int
	hang    bool
	release chan struct{}
	answer  func(addr string) ([]string, error)
}

func newFakeDNS(hang bool) *fakeDNS {
	return &fakeDNS{
		calls: map[string]int{}, hang: hang, release: make(chan struct{}),
		answer: func(addr string) ([]string, error) { return []string{"host-" + addr + ".example."}, nil },
	}
}

func (f *fakeDNS) lookup(ctx context.Context, addr string) ([]string, error) {
	f.mu.Lock()
	f.calls[addr]++
	f.mu.Unlock()
	if f.hang {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.answer(addr)
}

func (f *fakeDNS) count(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[addr]
}

func (f *fakeDNS) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func fakeResolver(f *fakeDNS) *resolver {
	r := newResolver(true)
	r.lookup = f.lookup
	return r
}

var scanner = netip.MustParseAddr("198.51.100.7")

func TestResolverDisabledNeverLooksUp(t *testing.T) {
	f := newFakeDNS(false)
	r := fakeResolver(f)
	r.enabled = false
	if got := r.name(t.Context(), scanner); got != "198.51.100.7" {
		t.Errorf("got %q", got)
	}
	if f.total() != 0 {
		t.Errorf("%d lookups", f.total())
	}
}

// TestResolverCachesForItsTTL: an answer and a failure are each looked up once for
// many hits, and again once their TTL has passed.
func TestResolverCachesForItsTTL(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(string) ([]string, error) // nil: the fake's default, a name
		want   string
		ttl    time.Duration
	}{
		{"answer", nil, "host-198.51.100.7.example", resolveTTL},
		{"failure", func(string) ([]string, error) { return nil, errors.New("NXDOMAIN") }, "198.51.100.7", resolveNegTTL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeDNS(false)
				if tt.answer != nil {
					f.answer = tt.answer
				}
				r := fakeResolver(f)
				for range 100 {
					if got := r.name(t.Context(), scanner); got != tt.want {
						t.Fatalf("got %q, want %q", got, tt.want)
					}
				}
				if n := f.count("198.51.100.7"); n != 1 {
					t.Errorf("%d lookups for 100 hits", n)
				}
				time.Sleep(tt.ttl)
				r.name(t.Context(), scanner)
				if n := f.count("198.51.100.7"); n != 2 {
					t.Errorf("after the TTL: %d lookups, want 2", n)
				}
			})
		})
	}
}

func TestResolverEmptyAnswerIsNumeric(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(false)
		f.answer = func(string) ([]string, error) { return []string{"."}, nil }
		if got := fakeResolver(f).name(t.Context(), scanner); got != "198.51.100.7" {
			t.Errorf("got %q", got)
		}
	})
}

func TestResolverHangingLookupGivesNumericAtBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true)
		r := fakeResolver(f)
		start := time.Now()
		if got := r.name(t.Context(), scanner); got != "198.51.100.7" {
			t.Errorf("got %q", got)
		}
		// In the bubble time moves only when everything waits, so this is exact.
		if waited := time.Since(start); waited != resolveBudget {
			t.Errorf("caller waited %v, budget %v", waited, resolveBudget)
		}

		// The lookup goes on; while it does, further hits wait on it, not on a new one.
		r.name(t.Context(), scanner)
		if n := f.count("198.51.100.7"); n != 1 {
			t.Errorf("%d lookups in flight for one address", n)
		}

		// Its late answer is there for the next hit.
		close(f.release)
		synctest.Wait()
		if got := r.name(t.Context(), scanner); got != "host-198.51.100.7.example" {
			t.Errorf("after the late answer: %q", got)
		}
		if n := f.count("198.51.100.7"); n != 1 {
			t.Errorf("%d lookups, want 1", n)
		}
	})
}

func TestResolverLookupTimeoutIsCachedAsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true) // never released: the lookup ends at resolveTimeout
		r := fakeResolver(f)
		r.name(t.Context(), scanner)
		time.Sleep(resolveTimeout)
		synctest.Wait()
		r.mu.Lock()
		inflight := len(r.inflight)
		r.mu.Unlock()
		if inflight != 0 {
			t.Fatalf("%d lookups still in flight after their timeout", inflight)
		}
		start := time.Now()
		if got := r.name(t.Context(), scanner); got != "198.51.100.7" || time.Since(start) != 0 {
			t.Errorf("got %q after %v; want the cached failure at once", got, time.Since(start))
		}
		if n := f.count("198.51.100.7"); n != 1 {
			t.Errorf("%d lookups, want 1", n)
		}
	})
}

func TestResolverOneLookupPerAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true)
		r := fakeResolver(f)
		var wg sync.WaitGroup
		var numeric atomic.Int32
		for range 50 {
			wg.Go(func() {
				if r.name(t.Context(), scanner) == "198.51.100.7" {
					numeric.Add(1)
				}
			})
		}
		synctest.Wait()
		if n := f.count("198.51.100.7"); n != 1 {
			t.Errorf("%d lookups for 50 concurrent hits", n)
		}
		wg.Wait() // every caller gives up at its budget
		if numeric.Load() != 50 {
			t.Errorf("%d of 50 callers got the numeric address", numeric.Load())
		}
	})
}

func TestResolverAnswerReachesEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true)
		r := fakeResolver(f)
		var wg sync.WaitGroup
		var named atomic.Int32
		for range 10 {
			wg.Go(func() {
				if r.name(t.Context(), scanner) == "host-198.51.100.7.example" {
					named.Add(1)
				}
			})
		}
		synctest.Wait()
		close(f.release) // within the budget
		wg.Wait()
		if named.Load() != 10 {
			t.Errorf("%d of 10 waiters got the name", named.Load())
		}
	})
}

func TestResolverBoundsLookupsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true)
		r := fakeResolver(f)
		for i := range resolveInflight {
			go r.name(t.Context(), netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
		}
		synctest.Wait()
		if f.total() != resolveInflight {
			t.Fatalf("%d lookups started, want %d", f.total(), resolveInflight)
		}
		start := time.Now()
		if got := r.name(t.Context(), scanner); got != "198.51.100.7" || time.Since(start) != 0 {
			t.Errorf("with every slot taken: %q after %v; want the address at once", got, time.Since(start))
		}
		if f.total() != resolveInflight {
			t.Errorf("%d lookups, want %d", f.total(), resolveInflight)
		}

		// Once the slots free, lookups start again.
		close(f.release)
		synctest.Wait()
		if got := r.name(t.Context(), scanner); got != "host-198.51.100.7.example" {
			t.Errorf("after the slots freed: %q", got)
		}
	})
}

func TestResolverCacheIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(false)
		r := fakeResolver(f)
		const size = 16
		r.cache = fifo.New[netip.Addr, answer](size)
		for i := range 1000 {
			a := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
			if got, want := r.name(t.Context(), a), fmt.Sprintf("host-%s.example", a); got != want {
				t.Fatalf("got %q want %q", got, want)
			}
		}
		if n := r.cache.Len(); n > size {
			t.Errorf("cache holds %d answers, bound %d", n, size)
		}
	})
}

func TestResolverCallerContextDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeDNS(true)
		r := fakeResolver(f)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan string)
		go func() { done <- r.name(ctx, scanner) }()
		synctest.Wait()
		cancel()
		if got := <-done; got != "198.51.100.7" {
			t.Errorf("got %q", got)
		}
		synctest.Wait()
		// The abandoned lookup is not remembered as a failure of the host, and a
		// done context starts no new one.
		r.mu.Lock()
		_, cached := r.cache.Get(scanner)
		r.mu.Unlock()
		if cached {
			t.Error("a lookup abandoned at shutdown was cached")
		}
		r.name(ctx, scanner)
		if n := f.count("198.51.100.7"); n != 1 {
			t.Errorf("%d lookups, want 1", n)
		}
	})
}

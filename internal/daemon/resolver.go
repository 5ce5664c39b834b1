package daemon

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/fifo"
)

// resolver turns addresses into names for log lines and history (RESOLVE_HOST). Names
// never reach commands.
//
// Nothing waits long for a name. A caller waits at most budget; when the answer is not
// there by then it gets the numeric address, as classic does when resolution fails,
// and the lookup goes on in the background (up to timeout) so that the host's next hit
// finds its name in the cache. Answers, names and failures alike, are cached for a
// while in a bounded map, so a flood from the same hosts starts no lookup per hit.
// There is never more than one lookup per address in flight, and at most maxInflight
// in all: beyond that a new address gets its numeric form at once.
type resolver struct {
	enabled bool

	// Set by newResolver; tests replace them before the first call.
	lookup      func(ctx context.Context, addr string) ([]string, error)
	budget      time.Duration // the most a caller waits for a name
	timeout     time.Duration // the most a lookup runs
	ttl, negTTL time.Duration // how long a name, and a failure, is remembered
	maxInflight int

	mu       sync.Mutex
	cache    *fifo.Map[netip.Addr, answer]
	inflight map[netip.Addr]*lookupCall
}

// answer is a cached lookup result.
type answer struct {
	name    string // "" when the lookup failed
	expires time.Time
}

// lookupCall is one lookup in flight; done is closed once name is set.
type lookupCall struct {
	done chan struct{}
	name string // "" when the lookup failed
}

const (
	resolveBudget   = 2 * time.Second
	resolveTimeout  = 10 * time.Second
	resolveTTL      = 10 * time.Minute
	resolveNegTTL   = time.Minute
	resolveCache    = 4096
	resolveInflight = 32
)

func newResolver(enabled bool) *resolver {
	return &resolver{
		enabled:     enabled,
		lookup:      net.DefaultResolver.LookupAddr,
		budget:      resolveBudget,
		timeout:     resolveTimeout,
		ttl:         resolveTTL,
		negTTL:      resolveNegTTL,
		maxInflight: resolveInflight,
		cache:       fifo.New[netip.Addr, answer](resolveCache),
		inflight:    map[netip.Addr]*lookupCall{},
	}
}

// name returns the host's name, or its address when resolving is off, fails, or takes
// longer than the budget. ctx is the daemon's: when it is done, callers stop waiting
// and lookups in flight are abandoned.
func (r *resolver) name(ctx context.Context, a netip.Addr) string {
	numeric := a.String()
	if !r.enabled || ctx.Err() != nil {
		return numeric
	}
	r.mu.Lock()
	if ans, ok := r.cache.Get(a); ok && time.Now().Before(ans.expires) {
		r.mu.Unlock()
		return orNumeric(ans.name, numeric)
	}
	c := r.inflight[a]
	if c == nil {
		if len(r.inflight) >= r.maxInflight {
			r.mu.Unlock()
			return numeric
		}
		c = &lookupCall{done: make(chan struct{})}
		r.inflight[a] = c
		go r.run(ctx, a, c)
	}
	r.mu.Unlock()

	budget := time.NewTimer(r.budget)
	defer budget.Stop()
	select {
	case <-c.done:
		return orNumeric(c.name, numeric)
	case <-budget.C:
	case <-ctx.Done():
	}
	return numeric
}

// run performs the lookup of c and publishes its answer.
func (r *resolver) run(ctx context.Context, a netip.Addr, c *lookupCall) {
	lctx, cancel := context.WithTimeout(ctx, r.timeout)
	names, err := r.lookup(lctx, a.String())
	cancel()
	name := ""
	if err == nil && len(names) > 0 {
		name = strings.TrimSuffix(names[0], ".")
	}
	ttl := r.ttl
	if name == "" {
		ttl = r.negTTL
	}
	r.mu.Lock()
	delete(r.inflight, a)
	// A lookup cut short by the daemon stopping says nothing about the host.
	if name != "" || ctx.Err() == nil {
		r.cache.Set(a, answer{name: name, expires: time.Now().Add(ttl)})
	}
	c.name = name
	r.mu.Unlock()
	close(c.done)
}

func orNumeric(name, numeric string) string {
	if name == "" {
		return numeric
	}
	return name
}

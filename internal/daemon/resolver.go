package daemon

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// resolver turns addresses into names for log lines and history (RESOLVE_HOST). Names
// never reach commands. Lookups are bounded in time and cached in a bounded map.
type resolver struct {
	enabled bool
	mu      sync.Mutex
	cache   map[netip.Addr]string
}

const (
	resolveTimeout = 2 * time.Second
	resolveCache   = 4096
)

func newResolver(enabled bool) *resolver {
	return &resolver{enabled: enabled, cache: map[netip.Addr]string{}}
}

// name returns the host's name, or its address when resolving is off or fails.
func (r *resolver) name(ctx context.Context, a netip.Addr) string {
	if !r.enabled {
		return a.String()
	}
	r.mu.Lock()
	n, ok := r.cache[a]
	r.mu.Unlock()
	if ok {
		return n
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	n = a.String()
	if names, err := net.DefaultResolver.LookupAddr(ctx, a.String()); err == nil && len(names) > 0 {
		n = strings.TrimSuffix(names[0], ".")
	}
	r.mu.Lock()
	if len(r.cache) >= resolveCache {
		clear(r.cache) // crude but bounded; a scan storm would evict anyway
	}
	r.cache[a] = n
	r.mu.Unlock()
	return n
}

//go:build linux

package netaddr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/vishvananda/netlink"
)

// Infra follows the hosts this machine depends on: its gateways (the next hops of every
// route, link-local ones included) and its DNS resolvers (from resolv.conf files: with
// systemd-resolved, /etc/resolv.conf names only the local stub 127.0.0.53, and the
// upstream servers behind it are in the file resolved writes for other programs). A spoofed probe "from" one of
// them must never get it banned, or an attacker could cut the host off its own network
// with a single packet. Contains reads an immutable snapshot: lock-free, for the
// detection path.
type Infra struct {
	log         *slog.Logger
	resolvConfs []string
	snap        atomic.Pointer[infraSnap]

	mu   sync.Mutex // Start/Stop bookkeeping
	stop context.CancelFunc
	done chan struct{}
}

type infraSnap struct {
	gateways, resolvers []netip.Addr
	set                 *Set // both lists, for lookups
}

func newInfraSnap(gateways, resolvers []netip.Addr) *infraSnap {
	var ps []netip.Prefix
	for _, a := range slices.Concat(gateways, resolvers) {
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return &infraSnap{gateways: gateways, resolvers: resolvers, set: NewSet(ps)}
}

// NewInfra returns a tracker reading resolvers from the given resolv.conf files (those
// missing are skipped). It knows nothing until Refresh or Start.
func NewInfra(log *slog.Logger, resolvConfs ...string) *Infra {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := &Infra{log: log, resolvConfs: resolvConfs}
	i.snap.Store(newInfraSnap(nil, nil))
	return i
}

// Set returns the gateways and resolvers as an immutable set, for lookups. It is the
// same pointer until they change.
func (i *Infra) Set() *Set { return i.snap.Load().set }

// Gateways and Resolvers return the current lists, sorted.
func (i *Infra) Gateways() []netip.Addr  { return slices.Clone(i.snap.Load().gateways) }
func (i *Infra) Resolvers() []netip.Addr { return slices.Clone(i.snap.Load().resolvers) }

// Refresh reads both sources now. A source that fails keeps its previous list, so a
// passing error never unprotects a gateway.
func (i *Infra) Refresh() error {
	old := i.snap.Load()
	gateways, resolvers := old.gateways, old.resolvers
	gws, gerr := defaultGateways()
	if gerr == nil {
		gateways = gws
	}
	res, rerr := readResolvers(i.resolvConfs)
	if rerr == nil {
		resolvers = res
	}
	if !slices.Equal(gateways, old.gateways) || !slices.Equal(resolvers, old.resolvers) {
		i.log.Info("protected infrastructure", "gateways", fmt.Sprint(gateways), "resolvers", fmt.Sprint(resolvers))
		i.snap.Store(newInfraSnap(gateways, resolvers))
	}
	return errors.Join(gerr, rerr)
}

// Start refreshes now and then every `every` until ctx is done or Stop is called.
// Routes and resolv.conf change rarely (DHCP, VPN); polling keeps this simple.
func (i *Infra) Start(ctx context.Context, every time.Duration) error {
	err := i.Refresh()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	i.mu.Lock()
	i.stop, i.done = cancel, done
	i.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var last string
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := i.Refresh(); err != nil && err.Error() != last {
				i.log.Warn("cannot read gateways or resolvers", "err", err)
				last = err.Error()
			} else if err == nil {
				last = ""
			}
		}
	}()
	return err
}

// Stop ends the refresh loop and waits for it.
func (i *Infra) Stop() {
	i.mu.Lock()
	stop, done := i.stop, i.done
	i.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// defaultGateways lists the next hops of every route, IPv4 and IPv6, multipath
// included, sorted and without zones: a host behind a gateway for one network only
// (a VPN, a management LAN) is cut off from it as surely as from a default gateway.
func defaultGateways() ([]netip.Addr, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netip.Addr
	add := func(ip []byte) {
		if a, ok := netip.AddrFromSlice(ip); ok && a.IsValid() && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	for _, r := range routes {
		add(r.Gw)
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// maxResolvConf bounds a resolv.conf: a few lines in practice.
const maxResolvConf = 1 << 20

// readResolvers returns the "nameserver" addresses of the resolv.conf files, sorted. A
// missing file holds none; any other failure fails the read, so the caller keeps what
// it had. That includes a path that is not a regular file (a FIFO would otherwise
// block the read, and with it the daemon's start) or a file over maxResolvConf.
func readResolvers(paths []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, path := range paths {
		data, err := regfile.ReadAll(path, maxResolvConf)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, parseResolvers(data)...)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

func parseResolvers(data []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

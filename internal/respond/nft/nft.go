package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portsentry-go/portsentry/internal/respond"
)

// Ban is one blocked prefix, a host (/32, /128) or a network (such as an IPv6 /64),
// as Apply takes it: 0 Timeout is permanent; the kernel expires the element itself.
type Ban = respond.Ban

// Element is a ban as the kernel holds it, as List returns it.
type Element struct {
	Prefix  netip.Prefix
	Timeout time.Duration // 0 = permanent
	// Expires is the time left before the kernel drops the element (0 if permanent).
	Expires time.Duration
}

// Options configures a Backend.
type Options struct {
	Table     string         // default "portsentry"; the table is always family inet
	Netns     netns.NsHandle // 0 or netns.None(): the current network namespace
	BatchSize int            // bans per netlink transaction; default and maximum 1000
	// Verify makes Apply read the sets back after committing and fail unless every
	// prefix it sent is there (a guard against silently dropped elements). It costs a
	// dump of both sets per Apply call.
	Verify bool
}

const (
	// DefaultTable is the table name when Options.Table is empty.
	DefaultTable = "portsentry"
	// MaxBatch is the largest number of bans committed in one transaction (DESIGN.md:
	// keep nftables batches at 1000 or below).
	MaxBatch = 1000

	set4, set6        = "ban4", "ban6"
	chainIn, chainFwd = "input", "forward"
	maxTimeout        = 24 * time.Hour * 365 * 100 // sane upper bound for a timeout
	ruleComment       = "portsentry"

	probeUnknown = 0 // Setup has not run yet
	probeYes     = 1
	probeNo      = 2
)

// Backend blocks hosts with interval sets (one per address family and prefix length,
// per-element timeouts) in its own inet table, matched by drop rules on the input and
// forward hooks. Its
// methods are safe for concurrent use.
type Backend struct {
	log   *slog.Logger
	opts  Options
	table *nftables.Table

	mu        sync.Mutex      // serialises everything below
	conn      *nftables.Conn  // the library: ruleset, listing, flush
	raw       *netlink.Conn   // element transactions (rawtx.go)
	rbuf      []byte          // receive buffer for raw
	canUpdate int             // whether a re-add restarts an element's timeout (probed by Setup)
	sets      map[string]bool // our sets in the kernel, as Setup last found or made them
}

// New opens a netlink connection to nftables in the configured namespace and checks
// that the kernel answers. It changes nothing; call Setup before Apply.
func New(opts Options, log *slog.Logger) (*Backend, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if len(opts.Table) > 255 {
		return nil, fmt.Errorf("nftables: table name too long")
	}
	if opts.BatchSize <= 0 || opts.BatchSize > MaxBatch {
		opts.BatchSize = MaxBatch
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns := 0
	copts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(tuneSocket)}
	if opts.Netns > 0 {
		ns = int(opts.Netns)
		copts = append(copts, nftables.WithNetNSFd(ns))
	}
	conn, err := nftables.New(copts...)
	if err != nil {
		return nil, sockErr(err)
	}
	raw, err := dialRaw(ns)
	if err != nil {
		conn.CloseLasting()
		return nil, sockErr(err)
	}
	b := &Backend{
		log:   log,
		opts:  opts,
		table: &nftables.Table{Name: opts.Table, Family: nftables.TableFamilyINet},
		conn:  conn,
		raw:   raw,
		rbuf:  make([]byte, 64<<10),
	}
	// A harmless query proves nf_tables is there and that we may talk to it.
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		b.Close()
		return nil, unusable(err)
	}
	log.Info("blocking backend: nftables", "table", "inet "+opts.Table)
	return b, nil
}

// sockErr explains why the netlink socket could not be opened.
func sockErr(err error) error {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("nftables unusable: the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK): %w", err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("nftables unusable: permission denied (needs root or CAP_NET_ADMIN): %w", err)
	}
	return fmt.Errorf("nftables unusable: cannot open a netlink socket (bad network namespace?): %w", err)
}

// unusable explains why nftables cannot be used.
func unusable(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("nftables unusable: permission denied (needs root or CAP_NET_ADMIN): %w", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("nftables unusable: the kernel has no nf_tables support (module nf_tables not built or not loadable): %w", err)
	}
	return fmt.Errorf("nftables unusable: %w", err)
}

// Close releases the netlink socket. The kernel state stays as it is.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Join(b.conn.CloseLasting(), b.raw.Close())
}

// Table is the name of the table the backend manages (family inet).
func (b *Backend) Table() string { return b.opts.Table }

// Name is what the logs and `portsentry status` call the backend.
func (b *Backend) Name() string { return "nftables" }

// Expire does nothing: every element carries its timeout and the kernel expires it.
func (b *Backend) Expire([]netip.Prefix) error { return nil }

// flush commits the buffered batch; what names the operation for the error.
func (b *Backend) flush(what string) error {
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nftables %s (table inet %s): %w", what, b.opts.Table, err)
	}
	return nil
}

package sensor

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/capture"
	"github.com/portsentry-go/portsentry/internal/packet"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// Watch says which stealth mode, if any, watches each port. It is immutable once in
// use. Entries are 1 + the mode's index in probe.Modes, 0 for unwatched, to keep the
// tables small (64 KiB each) and the per-packet lookup a single byte load.
type Watch struct {
	tcp, udp [65536]uint8
}

// Mode returns the mode watching a port, or "".
func (w *Watch) Mode(p probe.Proto, port uint16) probe.Mode {
	if i := w.table(p)[port]; i != 0 {
		return probe.Modes[i-1]
	}
	return ""
}

// Ports returns the watched ports of a protocol, sorted.
func (w *Watch) Ports(p probe.Proto) []uint16 {
	var out []uint16
	tbl := w.table(p)
	for port := 1; port < len(tbl); port++ {
		if tbl[port] != 0 {
			out = append(out, uint16(port))
		}
	}
	return out
}

func (w *Watch) table(p probe.Proto) *[65536]uint8 {
	if p == probe.UDP {
		return &w.udp
	}
	return &w.tcp
}

// Set marks ports as watched by mode, leaving ports already claimed alone (so the
// explicit lists of -stcp/-sudp win over the advanced modes' ranges).
func (w *Watch) Set(mode probe.Mode, ports []uint16) {
	idx := uint8(mode.Index() + 1)
	tbl := w.table(mode.Proto())
	for _, p := range ports {
		if p != 0 && tbl[p] == 0 {
			tbl[p] = idx
		}
	}
}

// filter is the kernel prefilter matching the watch set, taking the datagrams sent
// from watched UDP ports too, to recognise their answers.
// A long, scattered port list is coarsened to fit the kernel's program size; the exact
// set is checked again per packet.
func (w *Watch) filter() capture.Filter {
	return capture.Filter{
		TCPPorts:   capture.Ranges(w.Ports(probe.TCP)),
		UDPPorts:   capture.Ranges(w.Ports(probe.UDP)),
		UDPReplies: true,
	}.Fit()
}

// StealthDeps are what the stealth sensor consults per packet.
type StealthDeps struct {
	// Own reports whether an address is this host's: packets to other addresses are
	// being forwarded, not aimed at us.
	Own func(netip.Addr) bool
	// InUse reports whether a local service listens on the destination (smart verify),
	// from a view that may be a second old: the daemon looks again, fresh, before it
	// acts on a host.
	InUse func(probe.Proto, netip.AddrPort) bool
}

// StealthStats are the stealth sensor's counters.
type StealthStats struct {
	Frames     atomic.Uint64 // delivered by the kernel filter
	Malformed  atomic.Uint64 // could not be decoded (truncated, garbage)
	Fragments  atomic.Uint64 // IPv4/IPv6 fragments, first or not, given to reassembly
	NotForUs   atomic.Uint64 // destination is not one of our addresses
	InUse      atomic.Uint64 // to a port a local service listens on
	Replies    atomic.Uint64 // UDP answers to datagrams this host sent (see replies.go)
	Outgoing   atomic.Uint64 // UDP datagrams this host sent from a watched port
	Unwatched  atomic.Uint64 // passed the coarse kernel filter but not watched
	Probes     atomic.Uint64 // handed on as probes
	KernelSeen atomic.Uint64 // PACKET_STATISTICS: packets the socket accepted
	KernelDrop atomic.Uint64 // PACKET_STATISTICS: packets lost for want of ring space

	// Fragment reassembly (see packet.Reassembler).
	FragReassembled atomic.Uint64 // datagrams whose ports and flags were read
	FragTimedOut    atomic.Uint64 // unfinished datagrams dropped after the timeout
	FragEvicted     atomic.Uint64 // unfinished datagrams pushed out of the full table
	FragMalformed   atomic.Uint64 // fragments no valid sender makes
	FragOverlaps    atomic.Uint64 // fragments that rewrote held header bytes
}

// String renders the counters as key=value pairs for the log.
func (s *StealthStats) String() string {
	return fmt.Sprintf("frames=%d probes=%d malformed=%d fragments=%d not_for_us=%d in_use=%d replies=%d outgoing=%d unwatched=%d kernel_seen=%d kernel_drops=%d"+
		" frag_reassembled=%d frag_timeouts=%d frag_evicted=%d frag_malformed=%d frag_overlaps=%d",
		s.Frames.Load(), s.Probes.Load(), s.Malformed.Load(), s.Fragments.Load(), s.NotForUs.Load(),
		s.InUse.Load(), s.Replies.Load(), s.Outgoing.Load(), s.Unwatched.Load(), s.KernelSeen.Load(), s.KernelDrop.Load(),
		s.FragReassembled.Load(), s.FragTimedOut.Load(), s.FragEvicted.Load(), s.FragMalformed.Load(), s.FragOverlaps.Load())
}

// BatchHandler receives the probes of one ring block, in order. The slice is reused
// once it returns.
type BatchHandler func([]probe.Probe)

// maxBatch bounds the probes handed over at once. A default 16 KiB ring block holds
// about 100; bigger ones are handed over in parts, so the batch stays in the cache.
const maxBatch = 128

// reader is the state of one capture goroutine: the decoder's scratch header, the
// probes of the current block, counts added to the shared counters once per block
// (on small virtual machines an atomic add costs as much as judging a packet), and the
// goroutine's own fragment table, made on the first fragment.
type reader struct {
	h      packet.Header
	probes []probe.Probe
	n      struct{ frames, malformed, fragments, notForUs, inUse, replies, outgoing, unwatched uint64 }
	last   lastDst
	frags  *packet.Reassembler
	fragN  packet.FragStats // frags' counters already added to the shared ones
}

// lastDst remembers the answers for the last destination judged in the current block:
// a flood, and most scans, aim at one address, often one port, packet after packet.
// It is forgotten at the end of each block, so a change of addresses or listeners
// counts from the next block on.
type lastDst struct {
	own, inUse struct {
		known, yes bool
		proto      probe.Proto
		dst        netip.AddrPort // own: only the address counts
	}
}

// Stealth watches packets for the -stcp -sudp -atcp -audp modes through AF_PACKET
// sockets: one on all interfaces by default (so interfaces that appear later are
// covered), or one per chosen interface.
type Stealth struct {
	log    *slog.Logger
	handle BatchHandler
	deps   StealthDeps
	watch  atomic.Pointer[Watch]
	sent   *replies
	caps   []*capture.Handle
	stats  StealthStats
	wg     sync.WaitGroup
	stop   chan struct{}
	// fragTimeout is how long an unfinished fragmented datagram is kept (0: the
	// packet package's default).
	fragTimeout time.Duration
}

// NewStealth opens a capture socket per interface index (none: all interfaces) with
// the filter for w and starts reading.
func NewStealth(w *Watch, deps StealthDeps, log *slog.Logger, h BatchHandler, ifindexes []int) (*Stealth, error) {
	if len(ifindexes) == 0 {
		ifindexes = []int{0}
	}
	s := &Stealth{log: log, handle: h, deps: deps, sent: newReplies(), stop: make(chan struct{}), fragTimeout: hostFragTimeout()}
	s.watch.Store(w)
	for _, ifi := range ifindexes {
		c, err := capture.Open(capture.Options{Ifindex: ifi, Filter: w.filter()})
		if err != nil {
			s.closeCaps()
			return nil, fmt.Errorf("open packet capture: %w", err)
		}
		s.caps = append(s.caps, c)
	}
	for _, c := range s.caps {
		s.wg.Go(func() { s.read(c) })
	}
	s.wg.Go(s.watchDrops)
	return s, nil
}

// Update switches to a new watch set (reload, services starting or stopping). The new
// set is published first: packets the old, wider filter still lets through are then
// judged against it.
func (s *Stealth) Update(w *Watch) error {
	s.watch.Store(w)
	var errs []error
	for _, c := range s.caps {
		if err := c.SetFilter(w.filter()); err != nil {
			errs = append(errs, fmt.Errorf("update packet filter: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Stealth) closeCaps() {
	for _, c := range s.caps {
		c.Close()
	}
}

// Stats returns the counters.
func (s *Stealth) Stats() *StealthStats { return &s.stats }

// Close stops reading and releases the socket.
func (s *Stealth) Close() {
	close(s.stop)
	s.readKernelStats() // the last counters, before the sockets go
	s.closeCaps()
	s.wg.Wait()
}

func (s *Stealth) read(c *capture.Handle) {
	r := &reader{probes: make([]probe.Probe, 0, maxBatch)}
	err := c.ReadBlocks(func(frame []byte, info capture.Info) {
		s.frame(frame, info, r)
	}, func() { s.flush(r) })
	s.flush(r)
	if err != nil && !errors.Is(err, capture.ErrClosed) {
		s.log.Error("adminalert: ERROR: packet capture stopped: " + err.Error())
	}
}

// frame judges one packet. It runs for every packet the kernel filter lets through, so
// it must not allocate. A probe is queued in r until the end of the block.
// The probe's time is the kernel's receive timestamp: reading the clock here would be
// the most expensive step on virtual machines without a fast clock source.
func (s *Stealth) frame(b []byte, info capture.Info, r *reader) {
	r.n.frames++
	h := &r.h
	if err := packet.DecodeIP(b, h); err != nil {
		if err != packet.ErrFragment {
			r.n.malformed++
			return
		}
		// A fragment: judged like a whole packet once its datagram's header is read.
		r.n.fragments++
		if !r.reassembler(s.fragTimeout).Add(b, int64(info.Sec)*1e9+int64(info.Nsec), h) {
			return
		}
	}
	if info.Outgoing {
		s.outgoing(h, info, r)
		return
	}
	if h.Proto == probe.TCP && !packet.Candidate(h.TCPFlags) {
		return
	}
	mode := s.watch.Load().Mode(h.Proto, h.DstPort)
	if mode == "" {
		r.n.unwatched++
		return
	}
	dst := h.Destination()
	if !r.isOwn(dst.Addr(), s.deps.Own) {
		r.n.notForUs++
		return
	}
	at := info.Time()
	if r.isInUse(h.Proto, dst, s.deps.InUse) {
		r.n.inUse++
		return
	}
	if h.Proto == probe.UDP && s.sent.answers(dst, h.Source(), at) {
		r.n.replies++
		return
	}
	p := probe.Probe{
		Src: h.Source(), Dst: dst, Proto: h.Proto, Mode: mode,
		IPOptions: h.IPOptions, Time: at, Spoofable: true,
	}
	if h.Proto == probe.TCP {
		p.ScanType = packet.Classify(h.TCPFlags)
	}
	r.probes = append(r.probes, p)
	if len(r.probes) == cap(r.probes) {
		s.flush(r)
	}
}

func (r *reader) isOwn(a netip.Addr, own func(netip.Addr) bool) bool {
	c := &r.last.own
	if !c.known || c.dst.Addr() != a {
		c.known, c.yes, c.dst = true, own(a), netip.AddrPortFrom(a, 0)
	}
	return c.yes
}

func (r *reader) isInUse(p probe.Proto, dst netip.AddrPort, inUse func(probe.Proto, netip.AddrPort) bool) bool {
	c := &r.last.inUse
	if !c.known || c.proto != p || c.dst != dst {
		c.known, c.yes, c.proto, c.dst = true, inUse(p, dst), p, dst
	}
	return c.yes
}

func (r *reader) reassembler(timeout time.Duration) *packet.Reassembler {
	if r.frags == nil {
		r.frags = packet.NewReassembler(packet.DefaultFragEntries, timeout)
	}
	return r.frags
}

// flush hands over the queued probes and adds the reader's counts to the shared ones.
func (s *Stealth) flush(r *reader) {
	r.last = lastDst{}
	if n := len(r.probes); n > 0 {
		s.stats.Probes.Add(uint64(n))
		s.handle(r.probes)
		r.probes = r.probes[:0]
	}
	add := func(c *atomic.Uint64, n *uint64) {
		if *n > 0 {
			c.Add(*n)
			*n = 0
		}
	}
	add(&s.stats.Frames, &r.n.frames)
	add(&s.stats.Malformed, &r.n.malformed)
	add(&s.stats.Fragments, &r.n.fragments)
	add(&s.stats.NotForUs, &r.n.notForUs)
	add(&s.stats.InUse, &r.n.inUse)
	add(&s.stats.Replies, &r.n.replies)
	add(&s.stats.Outgoing, &r.n.outgoing)
	add(&s.stats.Unwatched, &r.n.unwatched)
	if r.frags != nil {
		s.flushFrags(r)
	}
}

// flushFrags adds what the reader's fragment table counted since the last flush.
func (s *Stealth) flushFrags(r *reader) {
	now, was := r.frags.Stats(), &r.fragN
	add := func(c *atomic.Uint64, n, before uint64) {
		if n != before {
			c.Add(n - before)
		}
	}
	add(&s.stats.FragReassembled, now.Reassembled, was.Reassembled)
	add(&s.stats.FragTimedOut, now.TimedOut, was.TimedOut)
	add(&s.stats.FragEvicted, now.Evicted, was.Evicted)
	add(&s.stats.FragMalformed, now.Malformed, was.Malformed)
	add(&s.stats.FragOverlaps, now.Overlaps, was.Overlaps)
	*was = now
}

// hostFragTimeout is how long this host's own IP stack waits for the rest of a
// fragmented datagram (net.ipv4.ipfrag_time, net.ipv6.ip6frag_time, in the daemon's
// network namespace), the longer of the two, within 1 s to 2 min. The table keeps an
// unfinished datagram as long: a sender who spaces its fragments out so that the host
// still reassembles and answers them must not slip past the sensor. Without the
// files, the packet package's default.
func hostFragTimeout() time.Duration {
	var longest time.Duration
	for _, f := range []string{"/proc/sys/net/ipv4/ipfrag_time", "/proc/sys/net/ipv6/ip6frag_time"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			longest = max(longest, time.Duration(n)*time.Second)
		}
	}
	if longest == 0 {
		return packet.DefaultFragTimeout
	}
	return min(max(longest, time.Second), 2*time.Minute)
}

// outgoing records a datagram this host sent from a watched UDP port.
func (s *Stealth) outgoing(h *packet.Header, info capture.Info, r *reader) {
	if h.Proto != probe.UDP || s.watch.Load().Mode(probe.UDP, h.SrcPort) == "" {
		return // the coarsened kernel filter let through a port nobody watches
	}
	r.n.outgoing++
	s.sent.sent(h.Source(), h.Destination(), info.Time())
}

// dropInterval is how often the kernel's drop counter is read.
const dropInterval = 5 * time.Second

// watchDrops reads the socket's kernel counters and logs when packets were lost.
func (s *Stealth) watchDrops() {
	t := time.NewTicker(dropInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.readKernelStats()
	}
}

// readKernelStats copies the sockets' kernel counters and logs new drops.
func (s *Stealth) readKernelStats() {
	var seen, drops uint64
	for _, c := range s.caps {
		if st, err := c.Stats(); err == nil {
			seen += st.Packets
			drops += st.Drops
		}
	}
	before := s.stats.KernelDrop.Swap(drops)
	s.stats.KernelSeen.Store(seen)
	if drops > before {
		s.log.Warn(fmt.Sprintf("adminalert: packet capture lost %d packets (kernel ring full); %d lost in all", drops-before, drops))
	}
}

// AdvancedPorts lists the ports an advanced mode watches: 1..limit-1 minus exclusions.
// Ports in use by local services are left to the per-packet check, which follows
// services as they start and stop.
func AdvancedPorts(limit int, exclude []uint16) []uint16 {
	var out []uint16
	for p := 1; p < limit && p <= 65535; p++ {
		if !slices.Contains(exclude, uint16(p)) {
			out = append(out, uint16(p))
		}
	}
	return out
}

package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ring defaults: 512 blocks of 16 KiB, 8 MiB in all.
//
// A captured SYN takes about 160 bytes of ring (96 of headers + 60 of packet, aligned),
// so a block holds some 100 of them and the ring about 52000: 300 ms of the 170k
// packets/s flood measured on these machines. Many small blocks rather than a few big
// ones because the retire timeout hands over a block with even a single packet in it,
// one a millisecond: under a trickle each block carries only a few packets, and while
// Read pauses under a flood (see pacer) the ring must hold every block retired during
// the pause. With 512 blocks a pause can last 128 ms, a quarter of them. Measured on
// the same floods: 128 blocks of 64 KiB used 9% more CPU per packet than 256 of 32 KiB,
// and those 3.5% more than these.
const (
	DefaultBlockSize = 16 << 10
	DefaultNumBlocks = 512
	// DefaultTimeout is the block retire timeout: a packet waits at most this long in a
	// half-filled block before it is handed over. An empty block is never retired, so
	// an idle ring costs no wakeups. bench/banlatency's probe-to-ban target (p99 under
	// 5 ms) needs it this short: with 10 ms the p99 was 12.9 ms. Under a flood the
	// pacer keeps it from costing a wakeup a millisecond.
	DefaultTimeout = time.Millisecond
)

// downPoll is how often Read checks whether an interface that went down was deleted.
const downPoll = 250 * time.Millisecond

// Options configure Open. The zero value captures on every interface with the defaults
// above and a filter that accepts nothing.
type Options struct {
	// Ifindex is the interface to capture on, in the socket's namespace; 0 means all.
	// With 0, a frame received on a bridge port or bond slave and then passed to the
	// master may be seen on both (the kernel runs taps per device; not tested here);
	// use Info.Ifindex to tell them apart, or bind to the device that has the address.
	Ifindex int
	Filter  Filter
	// BlockSize is the size of one ring block in bytes, a multiple of the page size.
	BlockSize int
	// NumBlocks is the number of ring blocks.
	NumBlocks int
	// Timeout is the block retire timeout, rounded up to whole milliseconds.
	Timeout time.Duration
	// Netns, if > 0, is the network namespace to create the socket in; otherwise the
	// socket lives in the namespace of the calling thread. Only creation happens there:
	// the handle can then be used from any goroutine.
	Netns netns.NsHandle
}

func (o Options) withDefaults() (Options, error) {
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.NumBlocks == 0 {
		o.NumBlocks = DefaultNumBlocks
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	page := os.Getpagesize()
	switch {
	case o.Ifindex < 0:
		return o, fmt.Errorf("capture: negative ifindex %d", o.Ifindex)
	case o.BlockSize < page || o.BlockSize%page != 0:
		return o, fmt.Errorf("capture: block size %d is not a positive multiple of the page size %d", o.BlockSize, page)
	case o.NumBlocks < 1:
		return o, fmt.Errorf("capture: %d ring blocks", o.NumBlocks)
	case int64(o.BlockSize)*int64(o.NumBlocks) > 1<<30:
		return o, fmt.Errorf("capture: ring of %d×%d bytes is over 1 GiB", o.NumBlocks, o.BlockSize)
	case o.Timeout < 0 || o.Timeout > time.Hour:
		return o, fmt.Errorf("capture: block timeout %v out of range", o.Timeout)
	}
	return o, nil
}

// Stats are cumulative since Open.
type Stats struct {
	Packets          uint64 // packets the filter accepted, including the dropped ones
	Drops            uint64 // accepted packets lost because the ring was full
	FreezeQueueCount uint64 // times the ring filled up and the kernel froze the queue
}

var (
	// ErrClosed is returned by SetFilter after Close. errors.Is(ErrClosed, os.ErrClosed).
	ErrClosed = fmt.Errorf("capture: handle closed: %w", os.ErrClosed)
	// ErrInterfaceGone is returned by Read when the interface the handle is bound to is
	// deleted or moved to another namespace: nothing will ever arrive again. (An
	// interface that merely goes down is waited for: the kernel resumes the socket when
	// it comes back up.)
	ErrInterfaceGone = errors.New("capture: interface removed")
)

// Handle is an open capture. Read runs in one goroutine; SetFilter, Stats and Close may
// be called from any goroutine at any time, Close even from inside Read's callback.
type Handle struct {
	fd        int // the packet socket; closed, with wake, once Close and Read are both done
	wake      int // an eventfd: Close writes to it to end Read's poll
	ring      []byte
	blockSize int
	numBlocks int
	ifindex   int

	closed  atomic.Bool
	mu      sync.Mutex // guards reading, the descriptors and the ring's lifetime
	reading bool
	freed   bool // descriptors closed and ring unmapped

	statsMu sync.Mutex
	stats   Stats

	// Used only by the goroutine in Read.
	cur   int  // index of the next block to read
	down  bool // the interface went down: poll for its removal
	pacer pacer
}

// Open creates the socket, installs the filter, maps the ring and binds, in that order.
func Open(opts Options) (*Handle, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	prog, err := o.Filter.Program()
	if err != nil {
		return nil, err
	}
	fd, err := newSocket(o.Netns)
	if err != nil {
		return nil, err
	}
	ring, err := setup(fd, &o, prog)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Munmap(ring)
		unix.Close(fd)
		return nil, fmt.Errorf("capture: eventfd: %w", err)
	}
	h := &Handle{fd: fd, wake: wake, ring: ring, blockSize: o.BlockSize, numBlocks: o.NumBlocks, ifindex: o.Ifindex}
	h.pacer = newPacer(o)
	return h, nil
}

func (h *Handle) block(i int) []byte {
	return h.ring[i*h.blockSize : (i+1)*h.blockSize : (i+1)*h.blockSize]
}

// ready reports whether block i is ours to read.
func (h *Handle) ready(i int) bool {
	return atomic.LoadUint32(blockStatus(h.block(i)))&statusUser != 0
}

// Read calls fn for every captured packet, in order, until Close is called (then it
// returns nil) or the socket fails. frame starts at the IP header, holds at most
// Snaplen bytes and points into the ring: it is valid only until fn returns. Read does
// not allocate.
func (h *Handle) Read(fn func(frame []byte, info Info)) error {
	return h.ReadBlocks(fn, nil)
}

// ReadBlocks is Read that also calls end, if not nil, after the packets of each ring
// block: the caller can act on a block's packets together (and add to shared counters
// once per block rather than once per packet).
func (h *Handle) ReadBlocks(fn func(frame []byte, info Info), end func()) error {
	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		return nil
	}
	if h.reading {
		h.mu.Unlock()
		return errors.New("capture: Read is already running")
	}
	h.reading = true
	h.mu.Unlock()
	defer h.endRead()

	for !h.closed.Load() {
		if !h.ready(h.cur) {
			if d := h.pacer.caughtUp(); d > 0 {
				time.Sleep(d)
				continue
			}
			if err := h.wait(); err != nil {
				return err
			}
			continue
		}
		h.down = false
		b := h.block(h.cur)
		n := walkBlock(b, &h.closed, fn)
		atomic.StoreUint32(blockStatus(b), statusKernel) // a full barrier: our reads are done
		if h.cur++; h.cur == h.numBlocks {
			h.cur = 0
		}
		if end != nil {
			end()
		}
		h.pacer.read(n)
	}
	return nil
}

// wait blocks in poll(2) until the socket has a block for us, Close is called, or an
// error or a change of the interface is to be looked at. nil means: look at the ring
// again. The socket is not in the Go runtime's poller: under a flood every block the
// kernel retires would wake that poller, even while Read pauses.
func (h *Handle) wait() error {
	timeout := -1
	if h.down {
		timeout = int(downPoll / time.Millisecond)
	}
	fds := [2]unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}, {Fd: int32(h.wake), Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], timeout)
	switch {
	case h.closed.Load():
		return nil
	case errors.Is(err, unix.EINTR):
		return nil
	case err != nil:
		return fmt.Errorf("capture: poll: %w", err)
	case n == 0: // timed out: only while the interface is down
		if h.gone() {
			return fmt.Errorf("%w (ifindex %d)", ErrInterfaceGone, h.ifindex)
		}
		return nil
	case fds[0].Revents&unix.POLLERR != 0 && !h.ready(h.cur):
		return h.socketError()
	}
	return nil
}

// socketError reads the error the kernel reported on the socket. An interface going
// down is not an error: the kernel resumes the socket if it comes back up; but if it is
// being deleted, the unregistration that makes that visible (ifindex -1) comes later,
// so Read polls while down.
func (h *Handle) socketError() error {
	e, err := unix.GetsockoptInt(h.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		return fmt.Errorf("capture: SO_ERROR: %w", err)
	case e == 0:
		return nil
	case unix.Errno(e) == unix.ENETDOWN && h.ifindex > 0:
		h.down = true
		return nil
	}
	return fmt.Errorf("capture: socket error: %w", unix.Errno(e))
}

// gone reports whether the kernel has forgotten the bound interface: it sets the
// socket's ifindex to -1 when the interface is unregistered.
func (h *Handle) gone() bool {
	sa, err := unix.Getsockname(h.fd)
	ll, ok := sa.(*unix.SockaddrLinklayer)
	return err == nil && ok && ll.Ifindex != h.ifindex
}

func (h *Handle) endRead() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reading = false
	if h.closed.Load() {
		h.free()
	}
}

// free closes the descriptors and unmaps the ring, once; h.mu is held.
func (h *Handle) free() {
	if h.freed {
		return
	}
	h.freed = true
	unix.Munmap(h.ring)
	h.ring = nil
	unix.Close(h.fd)
	unix.Close(h.wake)
}

// SetFilter replaces the kernel filter. The swap is atomic, but packets the old filter
// accepted may still be waiting in the ring.
func (h *Handle) SetFilter(f Filter) error {
	prog, err := f.Program()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return ErrClosed
	}
	// Ignoring outgoing packets is switched off before a filter that wants them is
	// attached and on only after one that does not: no wanted packet is ever refused.
	if f.outgoing() {
		if err := setIgnoreOutgoing(h.fd, f); err != nil {
			return err
		}
	}
	if err := attachFilter(h.fd, prog); err != nil {
		return err
	}
	if !f.outgoing() {
		return setIgnoreOutgoing(h.fd, f)
	}
	return nil
}

// Stats returns the counters accumulated since Open. After Close it returns the final
// totals.
func (h *Handle) Stats() (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	if h.closed.Load() {
		return h.stats, nil
	}
	err := tpacketStats(h.fd, &h.stats)
	return h.stats, err
}

// Close stops the capture. A Read in progress returns promptly (within one pause, at
// most maxPauseCap) with nil; the socket is closed and the ring unmapped once it has.
// Close is idempotent.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return nil
	}
	h.statsMu.Lock()
	_ = tpacketStats(h.fd, &h.stats)
	h.statsMu.Unlock()
	h.closed.Store(true)
	var one [8]byte
	ne.PutUint64(one[:], 1)
	_, err := unix.Write(h.wake, one[:])
	if !h.reading {
		h.free()
	}
	if err != nil {
		return fmt.Errorf("capture: wake reader: %w", err)
	}
	return nil
}

package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ring defaults: 32 blocks of 256 KiB, 8 MiB in all.
//
// A captured SYN takes about 160 bytes of ring (96 of headers + 60 of packet, aligned), so
// a block holds some 1600 of them and the ring about 52000: 300 ms of the 170k packets/s
// flood measured on these machines before anything is dropped (with 16 blocks, bench/
// flood.sh saw occasional drops on a busy 2-core machine). Many smaller blocks rather
// than a few big ones because the retire timeout hands over a block with even a single
// packet in it: under a trickle each block carries only a few packets, and 32 blocks give
// the reader 32 timeouts of slack. 256 KiB blocks still keep wakeups under a flood to a
// few hundred per second.
const (
	DefaultBlockSize = 256 << 10
	DefaultNumBlocks = 32
	// DefaultTimeout is the block retire timeout: a packet waits at most this long in a
	// half-filled block before it is handed over. An empty block is never retired, so
	// an idle ring costs no wakeups. Under a flood it means up to a thousand wakeups a
	// second, which on small virtual machines cost a third of the daemon's CPU (10 ms
	// took CPU per packet from 3.9 to 2.7 times tcpdump's in bench/flood.sh), but
	// bench/banlatency's probe-to-ban target (p99 under 5 ms) needs it: with 10 ms the
	// p99 was 12.9 ms.
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
	file      *os.File
	rc        syscall.RawConn
	ring      []byte
	blockSize int
	numBlocks int
	ifindex   int

	closed  atomic.Bool
	mu      sync.Mutex // guards reading and the unmapping of ring
	reading bool

	statsMu sync.Mutex
	stats   Stats

	// Used only by the goroutine in Read.
	cur     int                // index of the next block to read
	woken   bool               // wait has looked at the block once already
	down    bool               // the interface went down: poll for its removal
	waitErr error              // error found by wait
	wait    func(uintptr) bool // h.waitReady, bound once so Read does not allocate
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
	// The socket is non-blocking, so os.File registers it with the runtime poller: Read
	// parks its goroutine instead of a thread, and Close wakes it.
	file := os.NewFile(uintptr(fd), "capture")
	rc, err := file.SyscallConn()
	if err != nil {
		unix.Munmap(ring)
		file.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	h := &Handle{file: file, rc: rc, ring: ring, blockSize: o.BlockSize, numBlocks: o.NumBlocks, ifindex: o.Ifindex}
	h.wait = h.waitReady
	return h, nil
}

func (h *Handle) block(i int) []byte {
	return h.ring[i*h.blockSize : (i+1)*h.blockSize : (i+1)*h.blockSize]
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
		b := h.block(h.cur)
		status := blockStatus(b)
		if atomic.LoadUint32(status)&statusUser == 0 {
			if h.down {
				h.file.SetReadDeadline(time.Now().Add(downPoll))
			}
			h.woken, h.waitErr = false, nil
			err := h.rc.Read(h.wait)
			switch {
			case h.closed.Load():
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				if h.gone() {
					return fmt.Errorf("%w (ifindex %d)", ErrInterfaceGone, h.ifindex)
				}
			case err != nil:
				return fmt.Errorf("capture: wait: %w", err)
			case h.waitErr != nil:
				return h.waitErr
			}
			continue
		}
		if h.down {
			h.down = false
			h.file.SetReadDeadline(time.Time{})
		}
		walkBlock(b, &h.closed, fn)
		atomic.StoreUint32(status, statusKernel) // a full barrier: our reads are done
		if h.cur++; h.cur == h.numBlocks {
			h.cur = 0
		}
		if end != nil {
			end()
		}
	}
	return nil
}

// waitReady runs inside RawConn.Read: first before any wait, then after every wakeup of
// the socket. true ends the wait.
func (h *Handle) waitReady(fd uintptr) bool {
	if atomic.LoadUint32(blockStatus(h.block(h.cur)))&statusUser != 0 {
		return true
	}
	if !h.woken {
		h.woken = true
		return false
	}
	// Woken with no block ready: an error may have been reported on the socket.
	e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		h.waitErr = fmt.Errorf("capture: SO_ERROR: %w", err)
	case e == 0:
		return false
	case unix.Errno(e) == unix.ENETDOWN && h.ifindex > 0:
		// The interface went down. The kernel resumes the socket if it comes back up,
		// but if it is being deleted, the unregistration that makes that visible
		// (ifindex -1) comes after this one wakeup: so Read polls while down.
		h.down = true
	default:
		h.waitErr = fmt.Errorf("capture: socket error: %w", unix.Errno(e))
	}
	return true
}

// gone reports whether the kernel has forgotten the bound interface: it sets the
// socket's ifindex to -1 when the interface is unregistered.
func (h *Handle) gone() bool {
	var gone bool
	h.rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		ll, ok := sa.(*unix.SockaddrLinklayer)
		gone = err == nil && ok && ll.Ifindex != h.ifindex
	})
	return gone
}

func (h *Handle) endRead() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reading = false
	if h.closed.Load() {
		h.unmap()
	}
}

func (h *Handle) unmap() {
	if h.ring != nil {
		unix.Munmap(h.ring)
		h.ring = nil
	}
}

// SetFilter replaces the kernel filter. The swap is atomic, but packets the old filter
// accepted may still be waiting in the ring.
func (h *Handle) SetFilter(f Filter) error {
	prog, err := f.Program()
	if err != nil {
		return err
	}
	// Ignoring outgoing packets is switched off before a filter that wants them is
	// attached and on only after one that does not: no wanted packet is ever refused.
	var aerr error
	err = h.rc.Control(func(fd uintptr) {
		if f.outgoing() {
			aerr = setIgnoreOutgoing(int(fd), f)
		}
		if aerr == nil {
			aerr = attachFilter(int(fd), prog)
		}
		if aerr == nil && !f.outgoing() {
			aerr = setIgnoreOutgoing(int(fd), f)
		}
	})
	if err != nil {
		if h.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("capture: %w", err)
	}
	return aerr
}

// Stats returns the counters accumulated since Open. After Close it returns the final
// totals.
func (h *Handle) Stats() (Stats, error) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	if h.closed.Load() {
		return h.stats, nil
	}
	var serr error
	if err := h.rc.Control(func(fd uintptr) { serr = tpacketStats(int(fd), &h.stats) }); err != nil {
		if h.closed.Load() {
			return h.stats, nil
		}
		return h.stats, fmt.Errorf("capture: %w", err)
	}
	return h.stats, serr
}

// Close stops the capture. A Read in progress returns nil promptly; the ring is unmapped
// once it has. Close is idempotent.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Swap(true) {
		return nil
	}
	h.statsMu.Lock()
	_ = h.rc.Control(func(fd uintptr) { _ = tpacketStats(int(fd), &h.stats) })
	h.statsMu.Unlock()
	err := h.file.Close() // wakes a Read parked in the poller
	if !h.reading {
		h.unmap()
	}
	return err
}

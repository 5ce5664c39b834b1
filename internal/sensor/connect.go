// Package sensor turns traffic into probes. Connect is the classic -tcp / -udp sensor:
// a real listener on every watched port, where a completed TCP connection or a UDP
// datagram is a hit.
package sensor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// Handler receives every probe a sensor produces. It must not block for long: it runs
// on the sensor's goroutine.
type Handler func(probe.Probe)

// Connect runs listeners for one connect mode (tcp or udp). Each listener is dual-stack,
// so IPv4 and IPv6 clients are both seen on one socket per port.
type Connect struct {
	mode   probe.Mode
	log    *slog.Logger
	handle Handler
	mu     sync.Mutex
	banner string
	open   map[uint16]func() // port → closes that port's listener
	wg     sync.WaitGroup
}

// NewConnect returns a sensor for mode (ModeTCP or ModeUDP); Update starts listening.
func NewConnect(mode probe.Mode, log *slog.Logger, h Handler) *Connect {
	return &Connect{mode: mode, log: log, handle: h, open: make(map[uint16]func())}
}

// Update makes the set of listening ports equal to ports: new ones are opened, removed
// ones closed, unchanged ones left alone (no hit is lost across a reload). Ports that
// cannot be bound are logged and skipped. It returns the ports now listening.
func (c *Connect) Update(ports []uint16, banner string) []uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.banner = banner
	for p, closeFn := range c.open {
		if !slices.Contains(ports, p) {
			closeFn()
			delete(c.open, p)
			c.log.Info(fmt.Sprintf("adminalert: Stopped listening on %s port: %d", c.mode.Proto(), p))
		}
	}
	for _, p := range ports {
		if _, ok := c.open[p]; ok {
			continue
		}
		closeFn, err := c.listen(p)
		if err != nil {
			c.log.Error(fmt.Sprintf("adminalert: ERROR: could not bind %s socket: %d. Attempting to continue", c.mode.Proto(), p))
			c.log.Error(fmt.Sprintf("adminalert: ERROR: %s port %d: %v", c.mode.Proto(), p, err))
			continue
		}
		c.open[p] = closeFn
		c.log.Info(fmt.Sprintf("adminalert: Going into listen mode on %s port: %d", c.mode.Proto(), p))
	}
	return c.portsLocked()
}

// Ports returns the ports currently listening, sorted.
func (c *Connect) Ports() []uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.portsLocked()
}

func (c *Connect) portsLocked() []uint16 {
	out := make([]uint16, 0, len(c.open))
	for p := range c.open {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Close stops every listener and waits for their goroutines.
func (c *Connect) Close() {
	c.mu.Lock()
	for p, closeFn := range c.open {
		closeFn()
		delete(c.open, p)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *Connect) currentBanner() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.banner
}

// listen opens one port; each listener's goroutine carries its own port number, so a
// hit is always reported on the port it arrived at (classic mixed them up after a
// failed bind).
func (c *Connect) listen(port uint16) (func(), error) {
	addr := net.JoinHostPort("", strconv.Itoa(int(port)))
	if c.mode.Proto() == probe.TCP {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		c.wg.Add(1)
		go c.serveTCP(ln, port)
		return func() { ln.Close() }, nil
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.serveUDP(pc, port)
	return func() { pc.Close() }, nil
}

// bannerTimeout bounds how long a client that does not read can hold a banner write.
const bannerTimeout = 2 * time.Second

func (c *Connect) serveTCP(ln net.Listener, port uint16) {
	defer c.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("accept failed", "port", port, "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE: don't spin
			continue
		}
		src := addrPortOf(conn.RemoteAddr())
		dst := addrPortOf(conn.LocalAddr())
		if b := c.currentBanner(); b != "" {
			conn.SetWriteDeadline(time.Now().Add(bannerTimeout))
			conn.Write([]byte(b))
		}
		conn.Close()
		c.handle(probe.Probe{Src: src, Dst: dst, Proto: probe.TCP, Mode: c.mode, Time: time.Now(), Spoofable: false})
	}
}

func (c *Connect) serveUDP(pc net.PacketConn, port uint16) {
	defer c.wg.Done()
	local := addrPortOf(pc.LocalAddr())
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("udp read failed", "port", port, "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		src := addrPortOf(from)
		if b := c.currentBanner(); b != "" {
			pc.WriteTo([]byte(b), from)
		}
		dst := netip.AddrPortFrom(netip.Addr{}, local.Port())
		c.handle(probe.Probe{Src: src, Dst: dst, Proto: probe.UDP, Mode: c.mode, Time: time.Now(), Spoofable: true})
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(probe.Canonical(ap.Addr()), ap.Port())
}

package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/history"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/web"
)

// process handles one verdict on a worker: resolve, log the detection, then either note
// that the host is already blocked or respond and record it, in classic order.
//
// Nothing slow runs here. With a native backend the ban is queued at once, before any
// classic command; the KILL_ commands run on the command pool, so a hanging one holds up
// neither this worker's other hosts nor the ban.
func (d *Daemon) process(v detect.Verdict) {
	st := d.state.Load()
	p := v.Probe
	addr := p.Src.Addr()
	port := p.Dst.Port()
	name := st.resolver.name(d.ctx, addr)
	line := detectionLine(p, name)
	d.log.Info(line)
	if p.IPOptions {
		d.log.Info(fmt.Sprintf("attackalert: Packet from host: %s/%s to %s port: %d has IP options set (detection avoidance technique).", name, addr, p.Proto, port))
	}
	if v.Action == detect.AlreadyBlocked && d.bans.Native() && d.bans.Pending(addr) {
		// Its ban is queued behind a journal the disk refuses: not in force yet.
		d.log.Info(fmt.Sprintf("attackalert: Host: %s/%s is not blocked yet: its ban waits for the ban journal to be writable", name, addr))
		return
	}
	if v.Action == detect.AlreadyBlocked {
		if p.Mode.Connect() {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s is already blocked. Ignoring", addr))
		} else {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", name, addr))
		}
		if v.Repeats > 0 {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s/%s: %d more probes while blocked (counted, not logged one by one)", name, addr, v.Repeats))
		}
		return
	}
	d.stats.Detections.Add(1)
	d.metrics.Detection(string(p.Mode))
	d.event(web.Event{Time: p.Time, Kind: web.KindDetection, Addr: addr.String(), Name: name, Port: port,
		Proto: p.Proto.String(), Mode: string(p.Mode), Scan: p.ScanType, Text: line})
	t := respond.Target{Addr: addr, Name: name, Port: port, Mode: p.Mode}
	switch v.Plan {
	case detect.PlanNotSpoofable:
		d.log.Info(fmt.Sprintf("attackalert: Not acting on host %s/%s: the probe could be spoofed (UNSPOOFABLE_ONLY)", name, addr))
		d.forget(p.Mode, addr)
		return
	case detect.PlanLogOnly:
		st.responder.Respond(d.ctx, t) // only logs that the configuration says not to act
		d.stats.Responses.Add(1)
		d.rec.record(p.Mode, history.Line(p.Time.Local(), name, addr, port, p.Proto))
		return
	}
	native := v.Plan == detect.PlanBanThenCommands
	var banned netip.Prefix
	if native {
		var ok bool
		if banned, ok = d.banFor(v, respond.Done{}); !ok {
			d.forget(p.Mode, addr)
			return
		}
		d.rec.record(p.Mode, history.Line(p.Time.Local(), name, addr, port, p.Proto)) // blocked now, whatever the commands do
	}
	d.commands.run(func(ctx context.Context) {
		out := st.responder.Respond(ctx, t)
		switch {
		case native:
			if !out.Blocked {
				d.stats.Failures.Add(1)
				d.log.Error(fmt.Sprintf("attackalert: ERROR: classic KILL_ commands failed for host %s/%s; the %s ban stays", name, addr, d.bans.Backend()))
			}
			d.note(ctx, st, banned, out.Done)
		case !out.Blocked:
			d.stats.Failures.Add(1)
			d.log.Error(fmt.Sprintf("attackalert: ERROR: Could not block host %s/%s !!", name, addr))
			d.forget(p.Mode, addr)
			return
		default:
			if v.Plan == detect.PlanCommandsThenBan {
				d.banFor(v, out.Done) // the journal's record of what the commands did
			}
			d.rec.record(p.Mode, history.Line(p.Time.Local(), name, addr, port, p.Proto))
		}
		d.stats.Responses.Add(1)
	}, func() {
		d.stats.Failures.Add(1)
		d.log.Error(fmt.Sprintf("attackalert: ERROR: command queue full: KILL_ commands not run for host %s/%s", name, addr))
		if !native {
			d.forget(p.Mode, addr)
		}
	})
}

// banFor queues the ban a verdict earns: the source, or for IPv6 the widest network
// up to BAN_IPV6_PREFIX that covers nothing protected, with what the classic commands
// did (when they ran first). It returns the banned prefix, or false, and logs why,
// when the safety gate refuses even the address alone (the view changed between the
// decision and now).
func (d *Daemon) banFor(v detect.Verdict, done respond.Done) (netip.Prefix, bool) {
	p := v.Probe
	addr := p.Src.Addr()
	bits := addr.BitLen()
	if addr.Is6() {
		bits = d.Config().BanIPv6Prefix
	}
	prefix, ok := d.view().Widen(addr, bits)
	if !ok {
		d.log.Warn(fmt.Sprintf("attackalert: Not banning %s: %v", addr, d.view().Check(netip.PrefixFrom(addr, addr.BitLen()))))
		return netip.Prefix{}, false
	}
	reason := bans.Reason{Mode: p.Mode, Port: p.Dst.Port(), Scan: p.ScanType, By: "detect", Spoofable: p.Spoofable, Addr: addr}
	if done.Any() {
		reason.Classic = []respond.Done{done}
	}
	d.bans.Ban(d.bans.NewBan(prefix, reason, -1, p.Time))
	return prefix, true
}

// note records in the ban what the classic commands did under it, so that lifting it
// undoes them. A ban that is gone already (lifted, or refused at BAN_CAP, while they
// ran) has them undone at once: nothing may stay that no ban accounts for.
func (d *Daemon) note(ctx context.Context, st *state, banned netip.Prefix, done respond.Done) {
	if !done.Any() {
		return
	}
	ok, err := d.bans.Note(banned, done)
	switch {
	case err != nil:
		d.log.Error(fmt.Sprintf("adminalert: ERROR: ban journal: %v: what the KILL_ commands did for %s is not recorded and will not be undone", err, done.Addr))
	case !ok:
		d.log.Info(fmt.Sprintf("attackalert: Ban on %s ended while its KILL_ commands ran: undoing them", banned))
		st.responder.Undo(ctx, done)
	}
}

// detectionLine is the classic first line of a detection.
func detectionLine(p probe.Probe, name string) string {
	addr, port := p.Src.Addr(), p.Dst.Port()
	switch {
	case p.Mode.Connect():
		return fmt.Sprintf("attackalert: Connect from host: %s/%s to %s port: %d", name, addr, p.Proto, port)
	case p.Proto == probe.UDP:
		return fmt.Sprintf("attackalert: UDP scan from host: %s/%s to UDP port: %d", name, addr, port)
	default:
		return fmt.Sprintf("attackalert: %s from host: %s/%s to TCP port: %d", p.ScanType, name, addr, port)
	}
}

// commandPool runs classic KILL_ commands off the detection workers: a few at a time,
// with a bounded queue, so that hanging commands delay only other commands.
type commandPool struct {
	mu     sync.Mutex // guards closed and the sending on jobs
	closed bool
	jobs   chan func(context.Context)
	ctx    context.Context
	wg     sync.WaitGroup
}

// Command pool sizes: commandWorkers run at once (each bounded by KILL_CMD_TIMEOUT);
// commandQueue more may wait.
const (
	commandWorkers = 8
	commandQueue   = 1024
)

func newCommandPool(ctx context.Context) *commandPool {
	c := &commandPool{jobs: make(chan func(context.Context), commandQueue), ctx: ctx}
	for range commandWorkers {
		c.wg.Go(func() {
			for job := range c.jobs {
				job(c.ctx)
			}
		})
	}
	return c
}

// run queues job, or calls full when the queue is full. Once the pool is closed it
// runs job itself, bounded by KILL_CMD_TIMEOUT only: the ban manager stops after the
// pool, and the undo of a ban it lifts meanwhile must still happen.
func (c *commandPool) run(job func(context.Context), full func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		job(context.WithoutCancel(c.ctx))
		return
	}
	defer c.mu.Unlock()
	select {
	case c.jobs <- job:
	default:
		full()
	}
}

// close runs what is queued and waits.
func (c *commandPool) close() {
	c.mu.Lock()
	c.closed = true
	close(c.jobs)
	c.mu.Unlock()
	c.wg.Wait()
}

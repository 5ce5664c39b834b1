package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/journal"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/web"
)

// process handles one verdict on a worker: resolve, log the detection, then either note
// that the host is already blocked or respond and record it, in classic order (SPEC §4).
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
		d.rec.record(p.Mode, journal.Line(p.Time.Local(), name, addr, port, p.Proto))
		return
	}
	native := v.Plan == detect.PlanBanThenCommands
	if native && !d.banFor(v) {
		d.forget(p.Mode, addr)
		return
	}
	if native { // the host is blocked now, whatever the commands do
		d.rec.record(p.Mode, journal.Line(p.Time.Local(), name, addr, port, p.Proto))
	}
	d.commands.run(func(ctx context.Context) {
		ok := st.responder.Respond(ctx, t).Blocked
		switch {
		case native:
			if !ok {
				d.stats.Failures.Add(1)
				d.log.Error(fmt.Sprintf("attackalert: ERROR: classic KILL_ commands failed for host %s/%s; the %s ban stays", name, addr, d.bans.Backend()))
			}
		case !ok:
			d.stats.Failures.Add(1)
			d.log.Error(fmt.Sprintf("attackalert: ERROR: Could not block host %s/%s !!", name, addr))
			d.forget(p.Mode, addr)
			return
		default:
			if v.Plan == detect.PlanCommandsThenBan {
				d.banFor(v) // the journal's record of what the commands did
			}
			d.rec.record(p.Mode, journal.Line(p.Time.Local(), name, addr, port, p.Proto))
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
// up to BAN_IPV6_PREFIX that covers nothing protected. It reports false, and logs
// why, when the safety gate refuses even the address alone (the view changed between
// the decision and now).
func (d *Daemon) banFor(v detect.Verdict) bool {
	p := v.Probe
	addr := p.Src.Addr()
	bits := addr.BitLen()
	if addr.Is6() {
		bits = d.Config().BanIPv6Prefix
	}
	prefix, ok := d.view().Widen(addr, bits)
	if !ok {
		d.log.Warn(fmt.Sprintf("attackalert: Not banning %s: %v", addr, d.view().Check(netip.PrefixFrom(addr, addr.BitLen()))))
		return false
	}
	reason := bans.Reason{Mode: p.Mode, Port: p.Dst.Port(), Scan: p.ScanType, By: "detect", Spoofable: p.Spoofable, Addr: addr}
	d.bans.Ban(d.bans.NewBan(prefix, reason, -1, p.Time))
	return true
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
	jobs chan func(context.Context)
	ctx  context.Context
	wg   sync.WaitGroup
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

// run queues job, or calls full when the queue is full.
func (c *commandPool) run(job func(context.Context), full func()) {
	select {
	case c.jobs <- job:
	default:
		full()
	}
}

// close runs what is queued and waits.
func (c *commandPool) close() {
	close(c.jobs)
	c.wg.Wait()
}

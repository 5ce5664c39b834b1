package daemon

import (
	"fmt"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/detect"
	"github.com/portsentry-go/portsentry/internal/journal"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/respond"
	"github.com/portsentry-go/portsentry/internal/web"
)

// process handles one verdict on a worker: resolve, log the detection, then either note
// that the host is already blocked or respond and record it, in classic order (SPEC §4).
func (d *Daemon) process(v detect.Verdict) {
	st := d.state.Load()
	p := v.Probe
	addr := p.Src.Addr()
	port := p.Dst.Port()
	name := st.resolver.name(d.ctx, addr)
	d.stats.Detections.Add(1)
	d.metrics.Detection(string(p.Mode))
	line := detectionLine(p, name)
	d.log.Info(line)
	d.event(web.Event{Time: p.Time, Kind: web.KindDetection, Addr: addr.String(), Name: name, Port: port,
		Proto: p.Proto.String(), Mode: string(p.Mode), Scan: p.ScanType, Text: line})
	if p.IPOptions {
		d.log.Info(fmt.Sprintf("attackalert: Packet from host: %s/%s to %s port: %d has IP options set (detection avoidance technique).", name, addr, p.Proto, port))
	}
	if v.Action == detect.AlreadyBlocked {
		if p.Mode.Connect() {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s is already blocked. Ignoring", addr))
		} else {
			d.log.Info(fmt.Sprintf("attackalert: Host: %s/%s is already blocked Ignoring", name, addr))
		}
		return
	}
	if st.cfg.UnspoofableOnly && p.Spoofable {
		d.log.Info(fmt.Sprintf("attackalert: Not acting on host %s/%s: the probe could be spoofed (UNSPOOFABLE_ONLY)", name, addr))
		d.forget(p.Mode, addr)
		return
	}
	t := respond.Target{Addr: addr, Name: name, Port: port, Mode: p.Mode}
	if !st.responder.Respond(d.ctx, t) {
		d.stats.Failures.Add(1)
		d.log.Error(fmt.Sprintf("attackalert: ERROR: Could not block host %s/%s !!", name, addr))
		d.forget(p.Mode, addr)
		return
	}
	d.stats.Responses.Add(1)
	if blockLevel(st.cfg, p.Proto) == config.BlockKill {
		reason := bans.Reason{Mode: p.Mode, Port: port, Scan: p.ScanType, By: "detect"}
		d.bans.ban(d.bans.newBan(d.bans.prefixFor(addr), reason, -1, p.Time))
	}
	d.rec.record(p.Mode, journal.Line(p.Time.Local(), name, addr, port, p.Proto))
}

func blockLevel(cfg *config.Config, proto probe.Proto) config.BlockLevel {
	if proto == probe.UDP {
		return cfg.BlockUDP
	}
	return cfg.BlockTCP
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

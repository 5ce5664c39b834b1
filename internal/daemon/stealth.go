package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/listening"
	"github.com/portsentry-go/portsentry/internal/probe"
	"github.com/portsentry-go/portsentry/internal/sensor"
)

// recheckAge bounds how stale the listening-socket view may be when a probe is about
// to be acted on; it also caps the refreshes a scan can cause at 100 a second.
const recheckAge = 10 * time.Millisecond

// stealthModes returns the packet-watching modes among modes.
func stealthModes(modes []probe.Mode) []probe.Mode {
	var out []probe.Mode
	for _, m := range modes {
		if !m.Connect() {
			out = append(out, m)
		}
	}
	return out
}

// buildWatch maps every watched port to its mode. Explicit lists (-stcp, -sudp) are set
// first so they win where an advanced range overlaps them.
func buildWatch(cfg *config.Config, modes []probe.Mode) *sensor.Watch {
	w := &sensor.Watch{}
	for _, m := range modes {
		switch m {
		case probe.ModeSTCP:
			w.Set(m, cfg.TCPPorts)
		case probe.ModeSUDP:
			w.Set(m, cfg.UDPPorts)
		}
	}
	for _, m := range modes {
		switch m {
		case probe.ModeATCP:
			w.Set(m, sensor.AdvancedPorts(cfg.AdvancedPortsTCP, cfg.AdvancedExcludeTCP))
		case probe.ModeAUDP:
			w.Set(m, sensor.AdvancedPorts(cfg.AdvancedPortsUDP, cfg.AdvancedExcludeUDP))
		}
	}
	return w
}

// startStealth starts the listening-socket tracker and the packet sensor.
func (d *Daemon) startStealth(ctx context.Context, cfg *config.Config, modes []probe.Mode) error {
	d.listening = listening.New(d.log)
	if err := d.listening.Start(ctx, listening.DefaultInterval); err != nil {
		// The tracker keeps its last good (here: empty) view and retries; without it a
		// probe to a real service could count as a hit, so say so loudly.
		d.log.Error("adminalert: ERROR: cannot read listening sockets, retrying: " + err.Error())
	}
	ifindexes, err := interfaceIndexes(cfg.InterfaceNames())
	if err != nil {
		return err
	}
	w := buildWatch(cfg, modes)
	deps := sensor.StealthDeps{Own: d.own.Contains, InUse: d.listening.InUse}
	d.stillFree = func(proto probe.Proto, dst netip.AddrPort, at time.Time) bool {
		return !d.listening.InUseNow(proto, dst, at, recheckAge)
	}
	s, err := sensor.NewStealth(w, deps, d.log, d.HandleBatch, ifindexes)
	if err != nil {
		return err
	}
	d.stealth = s
	d.logStealthStart(cfg, modes)
	return nil
}

// interfaceIndexes resolves INTERFACES; none means all interfaces. ValidateStart has
// checked the names; one can still vanish before the sensor starts.
func interfaceIndexes(names []string) ([]int, error) {
	var out []int
	for _, name := range names {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("INTERFACES: %s: %w", name, err)
		}
		out = append(out, ifi.Index)
	}
	return out, nil
}

// logStealthStart writes classic's start-up lines for the stealth modes.
func (d *Daemon) logStealthStart(cfg *config.Config, modes []probe.Mode) {
	for _, m := range modes {
		proto := m.Proto()
		switch m {
		case probe.ModeSTCP, probe.ModeSUDP:
			for _, p := range portsFor(cfg, m) {
				d.log.Info(fmt.Sprintf("adminalert: Going into stealth listen mode on %s port: %d", proto, p))
			}
		case probe.ModeATCP, probe.ModeAUDP:
			limit, exclude := cfg.AdvancedPortsTCP, cfg.AdvancedExcludeTCP
			if proto == probe.UDP {
				limit, exclude = cfg.AdvancedPortsUDP, cfg.AdvancedExcludeUDP
			}
			d.log.Info(fmt.Sprintf("adminalert: Advanced mode will monitor first %d ports", limit))
			for _, p := range exclude {
				d.log.Info(fmt.Sprintf("adminalert: Advanced mode will manually exclude port: %d ", p))
			}
			// Classic lists the ports busy at start, then the excluded ones.
			ignored := slices.DeleteFunc(d.listening.Ports(proto), func(p uint16) bool {
				return int(p) >= limit || slices.Contains(exclude, p)
			})
			for _, p := range append(ignored, exclude...) {
				d.log.Info(fmt.Sprintf("adminalert: Advanced Stealth scan detection mode activated. Ignored %s port: %d", proto, p))
			}
		}
	}
}

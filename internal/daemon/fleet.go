package daemon

import (
	"context"
	"fmt"
	"sync"

	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/fleet"
)

// openFleet makes the agent that links this host to the fleet, when FLEET_NATS is set
// (the FLEET_ keys take effect at start). It connects only once Run starts it; a fleet
// that cannot be set up is logged and left out: detection and local blocking never
// depend on it.
func (d *Daemon) openFleet(cfg *config.Config) {
	servers := cfg.FleetServers()
	if len(servers) == 0 {
		return
	}
	fm := d.metrics.Fleet()
	a, err := fleet.New(fleet.Options{Servers: servers, Name: cfg.FleetHost(), Stream: cfg.FleetStream,
		Mode: cfg.FleetMode, Creds: cfg.FleetCreds, TLSCA: cfg.FleetTLSCA, TLSCert: cfg.FleetTLSCert,
		TLSKey: cfg.FleetTLSKey, Bans: d.bans, Log: d.log,
		Hooks: fleet.Hooks{Published: fm.Published, PublishFailed: fm.PublishFailed, Queued: fm.Queued,
			Received: fm.Received, Applied: fm.Applied, Rejected: fm.Rejected, Lag: fm.Lag, Link: fm.Link}})
	if err != nil {
		d.log.Error("adminalert: ERROR: " + err.Error())
		return
	}
	if cfg.FleetMode != fleet.ModePublish && !d.bans.Native() {
		d.log.Warn(`adminalert: fleet: other hosts' bans are recorded but not enforced with BLOCK_BACKEND="classic" (no KILL_ command runs for them): set a native backend`)
	}
	d.log.Info(fmt.Sprintf("adminalert: fleet: this host is %q, mode %s, stream %s, servers %v", cfg.FleetHost(), cfg.FleetMode, cfg.FleetStream, servers))
	d.fleet = a
}

// runFleet runs the agent until the returned function is called.
func (d *Daemon) runFleet(ctx context.Context) (stop func()) {
	if d.fleet == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := d.fleet.Run(ctx); err != nil {
			d.log.Error("adminalert: ERROR: " + err.Error())
		}
	})
	return func() { cancel(); wg.Wait() }
}

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/control"
)

// service answers the control socket (portsentry list, status, block, unblock).
type service struct{ d *Daemon }

func toControl(b bans.Ban) control.Ban {
	return control.Ban{Prefix: b.Prefix, Start: b.Start, Until: b.Until, Mode: string(b.Reason.Mode),
		Port: b.Reason.Port, Scan: b.Reason.Scan, By: b.Reason.By, Origin: b.Reason.Origin, Offences: b.Offences}
}

func (s service) List() []control.Ban {
	var out []control.Ban
	for _, b := range s.d.bans.Active() {
		out = append(out, s.withEnforcement(toControl(b)))
	}
	return out
}

// withEnforcement notes in b whether the backend enforces it.
func (s service) withEnforcement(b control.Ban) control.Ban {
	b.NotEnforced = s.d.bans.Unenforced(b.Prefix)
	return b
}

// Narrowest prefixes an operator may block: wider ones would cut off whole regions of
// the Internet by a typo.
const (
	minBlockBits4 = 8
	minBlockBits6 = 32
)

// Block bans p for d (0: BAN_TIME; control.Permanent: forever), refusing prefixes that
// cover this host, its gateways, resolvers or ignored hosts, or are implausibly wide.
func (s service) Block(p netip.Prefix, d time.Duration) (control.Ban, error) {
	if err := s.d.blockable(p); err != nil {
		return control.Ban{}, err
	}
	m := s.d.bans
	switch {
	case d == 0:
		d = time.Duration(s.d.Config().BanTime) * time.Second
	case d < 0:
		d = 0 // permanent
	}
	got, ok := m.Block(m.NewBan(p, bans.Reason{By: "operator"}, d, time.Now()))
	if !ok {
		return control.Ban{}, errors.New("the ban was not recorded (BAN_CAP reached, or the journal failed: see the log)")
	}
	return s.withEnforcement(toControl(got)), nil
}

func (s service) Unblock(p netip.Prefix) ([]control.Ban, error) {
	ended, err := s.d.bans.Unblock(p)
	return s.unblocked(ended), err
}

// UnblockOrigin lifts the bans fleet host origin made ("*": every remote ban).
func (s service) UnblockOrigin(origin string) ([]control.Ban, error) {
	ended, err := s.d.bans.UnblockOrigin(origin)
	return s.unblocked(ended), err
}

// unblocked reports the bans an operator lifted; the fleet does not enforce again the
// remote ones among them until their origin bans those hosts anew.
func (s service) unblocked(ended []bans.Ban) []control.Ban {
	if s.d.fleet != nil {
		s.d.fleet.Dismiss(ended)
	}
	out := make([]control.Ban, 0, len(ended))
	for _, b := range ended {
		c := toControl(b)
		c.Stays = s.d.stays(b)
		out = append(out, c)
	}
	return out
}

func (s service) Status() control.Status {
	d := s.d
	modes := make([]string, len(d.opts.Modes))
	for i, m := range d.opts.Modes {
		modes[i] = string(m)
	}
	c := map[string]uint64{
		"hits": d.stats.Hits.Load(), "ignored": d.stats.Ignored.Load(),
		"detections": d.stats.Detections.Load(), "responses": d.stats.Responses.Load(),
		"failures": d.stats.Failures.Load(), "queue_drops": d.stats.QueueDrops.Load(),
		"suppressed": d.stats.Suppressed.Load(), "dismissed": d.stats.Dismissed.Load(),
		"impossible": d.stats.Impossible.Load(), "repeated": d.stats.Repeated.Load(),
		"reloads":          d.stats.Reloads.Load(),
		"backend_restored": d.stats.Restored.Load(), "backend_removed": d.stats.Removed.Load(),
	}
	if d.stealth != nil {
		st := d.stealth.Stats()
		c["capture_frames"], c["capture_probes"] = st.Frames.Load(), st.Probes.Load()
		c["capture_malformed"], c["capture_kernel_drops"] = st.Malformed.Load(), st.KernelDrop.Load()
		c["capture_replies"] = st.Replies.Load()
		c["capture_fragments"], c["capture_frag_reassembled"] = st.Fragments.Load(), st.FragReassembled.Load()
		c["capture_frag_timeouts"], c["capture_frag_evicted"] = st.FragTimedOut.Load(), st.FragEvicted.Load()
		c["capture_frag_malformed"], c["capture_frag_overlaps"] = st.FragMalformed.Load(), st.FragOverlaps.Load()
	}
	return control.Status{Version: d.opts.Version, Modes: modes, Backend: d.bans.Backend(),
		ActiveBans: d.bans.Len(), NotEnforced: d.bans.UnenforcedCount(), Counters: c, Started: d.started}
}

// blockable refuses prefixes an operator must not ban: implausibly wide ones, and
// any the safety gate refuses (as it refuses detections' bans).
func (d *Daemon) blockable(p netip.Prefix) error {
	narrowest := minBlockBits6
	if p.Addr().Is4() {
		narrowest = minBlockBits4
	}
	if p.Bits() < narrowest {
		return fmt.Errorf("%s is too wide: at most /%d for IPv4, /%d for IPv6", p, minBlockBits4, minBlockBits6)
	}
	return d.view().Check(p)
}

// listenControl opens the control socket; a second process (Debian's -udp beside
// -tcp) finding it taken uses one named after its modes. Without a socket the daemon
// still runs: operators lose list/block/unblock, not detection.
func (d *Daemon) listenControl(cfg *config.Config) *control.Server {
	path := cfg.ControlSocket
	if path == "" {
		return nil
	}
	srv, err := control.Listen(path, service{d}, d.log)
	if errors.Is(err, control.ErrRunning) {
		path += "." + modeSuffix(d.opts.Modes)
		srv, err = control.Listen(path, service{d}, d.log)
	}
	if err != nil {
		d.log.Error("adminalert: ERROR: no control socket: " + err.Error())
		return nil
	}
	d.log.Info("adminalert: Control socket: " + path)
	return srv
}

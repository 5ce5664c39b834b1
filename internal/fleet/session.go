package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/bans"
)

// gatherMax bounds the live messages applied in one call to the ban manager.
const gatherMax = 1000

// received is one message off the stream.
type received struct {
	subject string
	data    []byte
	seq     uint64
	pending uint64 // messages the consumer still had to deliver after this one
}

// session serves one connection: it checks the stream, replays the last message of
// every subject, makes this host hold what that replay says (peers' bans in force,
// fleet bans the stream no longer holds lifted, its own bans republished where the
// stream lacks them), and then applies live messages until the link drops.
func (a *Agent) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	str, err := a.ensureStream(sctx)
	if err != nil {
		return err
	}
	a.streamOK.Store(true)
	defer a.streamOK.Store(false)
	signal(a.out.wake)
	last := str.CachedInfo().State.LastSeq
	filter := streamSubjects
	if !a.subscribes() {
		filter = OriginSubjects(a.opts.Name) // only our own, to republish what is missing
	}
	cons, err := str.OrderedConsumer(sctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		return fmt.Errorf("stream %s: consumer: %w", a.opts.Stream, err)
	}
	in := make(chan received, gatherMax)
	// The consumer lives on one server, which may stop while this host's connection,
	// to another, stays up: missed heartbeats (2 s apart) make the ordered consumer
	// start again where it was, within seconds rather than the default 10 s or more.
	cc, err := cons.Consume(func(m jetstream.Msg) {
		r := received{subject: m.Subject(), data: m.Data()}
		if md, err := m.Metadata(); err == nil {
			r.seq, r.pending = md.Sequence.Stream, md.NumPending
		}
		select {
		case in <- r:
		case <-sctx.Done():
		}
	}, jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return fmt.Errorf("stream %s: consume: %w", a.opts.Stream, err)
	}
	defer cc.Stop()
	st := newState(a.opts.Name, a.opts.Limits, a.dismissedAt)
	replaying := last > 0 && cons.CachedInfo().NumPending > 0
	if !replaying {
		a.caughtUp(st)
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-sctx.Done():
			return nil
		case <-a.dropped:
			return errLinkLost
		case <-sweep.C:
			st.sweep(time.Now())
		case p := <-a.recheck:
			if !replaying {
				a.enforce(st, []netip.Prefix{p}, time.Now(), 0)
			}
		case r := <-in:
			batch := gather(r, in)
			now := time.Now()
			changed, at := a.take(st, batch, now, !replaying)
			if replaying {
				if end := batch[len(batch)-1]; end.pending == 0 || end.seq >= last {
					replaying = false
					a.caughtUp(st)
				}
				continue
			}
			a.enforce(st, changed, now, at)
		}
	}
}

// gather takes r and whatever else is already queued, up to gatherMax.
func gather(r received, in chan received) []received {
	batch := []received{r}
	for len(batch) < gatherMax {
		select {
		case r := <-in:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// take records a batch of messages; it returns the prefixes whose peers' bans
// changed, and when the newest live ban among them was made (for the lag).
func (a *Agent) take(st *state, batch []received, now time.Time, live bool) (changed []netip.Prefix, at int64) {
	for _, r := range batch {
		m, err := Decode(r.subject, r.data)
		if err != nil {
			a.malformed(r.subject, err)
			continue
		}
		if m.Origin != a.opts.Name && a.opts.Hooks.Received != nil {
			a.opts.Hooks.Received()
		}
		if why := st.put(m, now, live); why != "" {
			a.refused(m, why)
			continue
		}
		if m.Origin != a.opts.Name {
			changed = append(changed, m.Prefix)
			at = max(at, m.At)
		}
	}
	return changed, at
}

// enforce makes the ban manager hold, for each of prefixes, the peers' ban the state
// says is in force, or none. at, when not 0, is when the newest of them was made: the
// lag from its origin to here is observed.
func (a *Agent) enforce(st *state, prefixes []netip.Prefix, now time.Time, at int64) (applied, lifted int) {
	if !a.subscribes() || len(prefixes) == 0 {
		return 0, 0
	}
	var want []bans.Ban
	var msgs []Message
	var gone []netip.Prefix
	for _, p := range prefixes {
		if m, ok := st.effective(p, now); ok {
			want = append(want, m.Ban())
			msgs = append(msgs, m)
		} else {
			gone = append(gone, p)
		}
	}
	if len(want) > 0 {
		var refused map[netip.Prefix]string
		applied, refused = a.opts.Bans.Remote(want, now)
		for _, m := range msgs {
			if why, ok := refused[m.Prefix]; ok {
				a.refused(m, why)
			}
		}
		if h := a.opts.Hooks.Applied; h != nil && applied > 0 {
			h(applied)
		}
		if h := a.opts.Hooks.Lag; h != nil && at > 0 && applied > 0 {
			h(now.Sub(time.UnixMilli(at)))
		}
	}
	if len(gone) > 0 {
		ended, err := a.opts.Bans.LiftRemote(gone, "*")
		if err != nil {
			a.log.Error("adminalert: ERROR: fleet: " + err.Error())
		}
		lifted = len(ended)
	}
	return applied, lifted
}

// caughtUp ends a replay: the peers' bans the stream holds are put in force, remote
// bans it no longer holds are lifted, and this host's bans the stream lacks (or whose
// end it does not know) are published again, as are the ends of those it still shows
// in force.
func (a *Agent) caughtUp(st *state) {
	now := time.Now()
	active := a.opts.Bans.Active()
	var applied, lifted int
	if a.subscribes() {
		prefixes := st.prefixes()
		held := map[netip.Prefix]bool{}
		for _, p := range prefixes {
			held[p] = true
		}
		for _, b := range active {
			if b.Remote() && !held[b.Prefix] {
				prefixes = append(prefixes, b.Prefix)
			}
		}
		applied, lifted = a.enforce(st, prefixes, now, 0)
	}
	published := 0
	if a.publishes() {
		published = a.republish(st, active, now)
	}
	a.linkUp(applied, lifted, published)
}

// republish queues what the stream lacks of this host's own bans.
func (a *Agent) republish(st *state, active []bans.Ban, now time.Time) int {
	own := st.own()
	local := map[netip.Prefix]bool{}
	n := 0
	for _, b := range active {
		if b.Remote() {
			continue
		}
		local[b.Prefix] = true
		m := FromBan(a.opts.Name, OpBan, b, b.Start)
		if old, ok := own[b.Prefix]; !ok || old.ID() != m.ID() {
			a.queue(m)
			n++
		}
	}
	for p, m := range own {
		if m.Active(now) && !local[p] {
			end := m
			end.Op, end.At = OpUnban, now.UnixMilli()
			a.queue(end)
			n++
		}
	}
	return n
}

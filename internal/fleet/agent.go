package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/fifo"
)

// Sink is the ban manager as the fleet uses it (bans.Manager): the journal's bans, and
// the enforcement of remote bans under local rules.
type Sink interface {
	Active() []bans.Ban
	Remote(list []bans.Ban, now time.Time) (applied int, refused map[netip.Prefix]string)
	LiftRemote(prefixes []netip.Prefix, origin string) ([]bans.Ban, error)
}

// Modes of FLEET_MODE.
const (
	ModeBoth      = "both"
	ModePublish   = "publish"
	ModeSubscribe = "subscribe"
)

// Options configure an Agent.
type Options struct {
	Servers []string // NATS URLs
	Name    string   // this host in the fleet (a subject token)
	Stream  string
	Mode    string // ModeBoth (default), ModePublish, ModeSubscribe
	Creds   string // credentials or nkey seed file; empty: none
	TLSCA   string // PEM files; empty: the system's roots, no client certificate
	TLSCert string
	TLSKey  string
	Bans    Sink
	Limits  Limits // zero: DefaultLimits
	Log     *slog.Logger
	Hooks   Hooks
}

// Hooks count what the agent does. Any may be nil.
type Hooks struct {
	Published     func()           // a message stored by the stream
	PublishFailed func()           // a publish that failed (it stays queued)
	Queued        func(n int)      // messages waiting to be published
	Received      func()           // a message from a peer
	Applied       func(n int)      // remote bans put in force
	Rejected      func(why string) // a peer's ban refused here, and why
	Lag           func(time.Duration)
	Link          func(up bool)
}

// Agent links this host to the fleet: it publishes the host's bans and enforces its
// peers', through one JetStream stream. NATS being down affects neither detection nor
// local blocking: the agent only ever talks to the ban manager through Sink, and the
// manager never waits for it.
type Agent struct {
	opts Options
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream

	ttl      atomic.Bool   // the stream takes per-message TTLs
	streamOK atomic.Bool   // the stream was found in this session: publishing may go on
	changed  chan struct{} // the link came up (or went down): look again
	dropped  chan struct{} // the link went down: end the session
	recheck  chan netip.Prefix
	out      *outbox

	mu        sync.Mutex
	down      bool // the link is down (logged once per outage)
	closing   bool // Run is closing the connection
	connected bool // the link has been up at least once
	dismissed *fifo.Map[netip.Prefix, int64]
	warned    map[string]time.Time // refusals logged, by origin and reason

	wg sync.WaitGroup
}

// maxDismissed bounds the operators' unblocks of remote bans remembered.
const maxDismissed = 65536

// New checks the options; nothing connects until Run.
func New(opts Options) (*Agent, error) {
	if len(opts.Servers) == 0 {
		return nil, errors.New("fleet: no NATS server")
	}
	if opts.Name == "" || opts.Stream == "" || opts.Bans == nil {
		return nil, errors.New("fleet: a name, a stream and a ban manager are needed")
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeBoth
	case ModeBoth, ModePublish, ModeSubscribe:
	default:
		return nil, fmt.Errorf("fleet: unknown mode %q", opts.Mode)
	}
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{opts: opts, log: opts.Log, changed: make(chan struct{}, 1), dropped: make(chan struct{}, 1),
		recheck: make(chan netip.Prefix, 1024), out: newOutbox(), dismissed: fifo.New[netip.Prefix, int64](maxDismissed),
		warned: map[string]time.Time{}}, nil
}

func (a *Agent) publishes() bool  { return a.opts.Mode != ModeSubscribe }
func (a *Agent) subscribes() bool { return a.opts.Mode != ModePublish }

// Run connects and serves until ctx is done, then closes the connection.
func (a *Agent) Run(ctx context.Context) error {
	nc, err := a.dial()
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		nc.Close()
		return fmt.Errorf("fleet: %w", err)
	}
	a.nc, a.js = nc, js
	if a.publishes() {
		a.wg.Go(func() { a.publisher(ctx) })
	}
	a.sessions(ctx)
	a.wg.Wait()
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	nc.Close()
	return nil
}

// sessions runs one session per connection: a replay, then live messages, until the
// link drops; then waits for it to come back.
func (a *Agent) sessions(ctx context.Context) {
	failures := 0
	var lastErr string
	for ctx.Err() == nil {
		if a.nc.IsConnected() {
			drain(a.dropped)
			err := a.session(ctx)
			switch {
			case err == nil || ctx.Err() != nil || errors.Is(err, errLinkLost):
				failures = 0
			default:
				failures++
				if err.Error() != lastErr {
					a.log.Error("adminalert: ERROR: fleet: " + err.Error() + " (retrying)")
					lastErr = err.Error()
				}
			}
		}
		wait := time.NewTimer(backoff(max(failures, 1)))
		select {
		case <-ctx.Done():
		case <-a.changed:
		case <-wait.C:
		}
		wait.Stop()
	}
}

var errLinkLost = errors.New("link lost")

// linkChanged wakes the session loop when the connection comes up.
func (a *Agent) linkChanged() { signal(a.changed) }

// linkLost ends the session, logging the first loss of an outage.
func (a *Agent) linkLost(err error) {
	signal(a.dropped)
	signal(a.changed)
	a.mu.Lock()
	first := !a.down && !a.closing
	a.down = true
	connected := a.connected
	a.mu.Unlock()
	if !first {
		return
	}
	if err == nil {
		err = errors.New("connection closed")
	}
	if connected {
		a.log.Warn("adminalert: fleet: link to NATS lost: " + err.Error() + " (bans stay in force here; reconnecting)")
	} else {
		a.log.Warn(fmt.Sprintf("adminalert: fleet: cannot reach NATS at %v: %v (retrying)", a.opts.Servers, err))
	}
	if h := a.opts.Hooks.Link; h != nil {
		h(false)
	}
}

// linkUp logs that the link works again, with what the replay caught up.
func (a *Agent) linkUp(applied, lifted, published int) {
	a.mu.Lock()
	again := a.connected
	a.connected, a.down = true, false
	a.mu.Unlock()
	what := "connected to NATS"
	if again {
		what = "link to NATS back"
	}
	a.log.Info(fmt.Sprintf("adminalert: fleet: %s (%s, stream %s): %d bans caught up, %d lifted, %d of ours republished",
		what, a.nc.ConnectedUrlRedacted(), a.opts.Stream, applied, lifted, published))
	if h := a.opts.Hooks.Link; h != nil {
		h(true)
	}
}

// Local is told of every change of a local ban (the ban manager's events, after the
// ban is applied and journaled): it is queued for publishing. It never blocks.
func (a *Agent) Local(op bans.Op, b bans.Ban) {
	if b.Remote() {
		return
	}
	if op == bans.OpExpire && a.subscribes() {
		select { // a peer may still ban the prefix for longer
		case a.recheck <- b.Prefix:
		default: // the next replay sees it
		}
	}
	if !a.publishes() {
		return
	}
	m := FromBan(a.opts.Name, map[bans.Op]string{bans.OpBan: OpBan, bans.OpUnban: OpUnban, bans.OpExpire: OpExpire}[op], b, time.Now())
	a.queue(m)
}

// Dismiss is told of the remote bans an operator lifted: the messages behind them
// are not enforced again here, until their origin sends a newer one.
func (a *Agent) Dismiss(ended []bans.Ban) {
	now := time.Now().UnixMilli()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range ended {
		if b.Remote() {
			a.dismissed.Set(b.Prefix, now)
		}
	}
}

// dismissedAt is when an operator last lifted remote bans of p (unix ms; 0 never).
func (a *Agent) dismissedAt(p netip.Prefix) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, _ := a.dismissed.Get(p)
	return t
}

// refused counts a peer's refused ban and logs it, once a minute per origin and reason.
func (a *Agent) refused(m Message, why string) {
	if h := a.opts.Hooks.Rejected; h != nil {
		h(why)
	}
	k := m.Origin + " " + why
	now := time.Now()
	a.mu.Lock()
	last, seen := a.warned[k]
	if !seen || now.Sub(last) >= time.Minute {
		if len(a.warned) > 4096 {
			clear(a.warned)
		}
		a.warned[k] = now
	}
	a.mu.Unlock()
	if seen && now.Sub(last) < time.Minute {
		return
	}
	what := fmt.Sprintf("ban of %s from %s", m.Prefix, m.Origin)
	if !m.Prefix.IsValid() {
		what = "message on " + m.Origin // the subject: nothing in it can be trusted
	}
	a.log.Warn(fmt.Sprintf("adminalert: fleet: %s not enforced here: %s (such refusals are counted, logged at most once a minute)", what, why))
}

// malformed counts and logs a message refused before any local rule looked at it.
func (a *Agent) malformed(subject string, err error) {
	a.refused(Message{Origin: subject}, err.Error())
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

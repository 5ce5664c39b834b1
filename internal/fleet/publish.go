package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxQueued bounds the outbox. Beyond it the oldest waiting messages are dropped and
// counted: the journal still holds the bans, and the replay after the next connect
// publishes again whatever the stream lacks.
const maxQueued = 65536

// ttlAfterEnd is how long the stream keeps a ban after its end, where the server has
// per-message TTL: long enough for a host that was away to see the final state; after
// it, the absence of a message means the same as its end.
const ttlAfterEnd = 24 * time.Hour

// outbox holds the messages not yet stored by the stream, the newest per subject (an
// unban supersedes the ban it ends). Publishing a message that is still the newest of
// its subject removes it; a failed one stays, with its id.
type outbox struct {
	mu    sync.Mutex
	msgs  map[string]Message
	order []string // subjects, oldest first (may hold subjects already sent)
	wake  chan struct{}
	drops int
}

func newOutbox() *outbox {
	return &outbox{msgs: map[string]Message{}, wake: make(chan struct{}, 1)}
}

func (o *outbox) put(m Message) (queued int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	subj := Subject(m.Origin, m.Prefix)
	if _, ok := o.msgs[subj]; !ok {
		o.order = append(o.order, subj)
	}
	o.msgs[subj] = m
	for len(o.msgs) > maxQueued {
		oldest := o.order[0]
		o.order = o.order[1:]
		if _, ok := o.msgs[oldest]; ok {
			delete(o.msgs, oldest)
			o.drops++
		}
	}
	signal(o.wake)
	return len(o.msgs)
}

// next returns the oldest waiting messages, up to n.
func (o *outbox) next(n int) []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Message
	keep := o.order[:0]
	for _, subj := range o.order {
		if m, ok := o.msgs[subj]; ok {
			keep = append(keep, subj)
			if len(out) < n {
				out = append(out, m)
			}
		}
	}
	o.order = keep
	return out
}

// sent removes m unless a newer message of its subject has come meanwhile.
func (o *outbox) sent(m Message) (queued int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	subj := Subject(m.Origin, m.Prefix)
	if cur, ok := o.msgs[subj]; ok && cur.ID() == m.ID() {
		delete(o.msgs, subj)
	}
	return len(o.msgs)
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs)
}

func (a *Agent) queue(m Message) {
	n := a.out.put(m)
	if h := a.opts.Hooks.Queued; h != nil {
		h(n)
	}
}

// publishBatch is how many publishes are in flight at once; publishTimeout how long
// one may wait for the stream's acknowledgement.
const (
	publishBatch   = 256
	publishTimeout = 10 * time.Second
)

// publisher publishes the outbox whenever the stream is there, in batches of
// asynchronous publishes; after a failure it waits (backing off) or until the link
// comes back, and tries the same messages again with the same ids.
func (a *Agent) publisher(ctx context.Context) {
	failures := 0
	for {
		var retry *time.Timer
		var due <-chan time.Time
		if failures > 0 {
			retry = time.NewTimer(backoff(failures))
			due = retry.C
		}
		select {
		case <-ctx.Done():
		case <-a.out.wake:
		case <-due:
		}
		if retry != nil {
			retry.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		for ctx.Err() == nil && a.streamOK.Load() {
			batch := a.out.next(publishBatch)
			if len(batch) == 0 {
				failures = 0
				break
			}
			if !a.publish(ctx, batch) {
				failures++
				break
			}
			failures = 0
		}
	}
}

// publish sends batch and waits for the stream's acknowledgements; false when any
// failed.
func (a *Agent) publish(ctx context.Context, batch []Message) bool {
	h := a.opts.Hooks
	futures := make([]jetstream.PubAckFuture, len(batch))
	ok := true
	for i, m := range batch {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID()), jetstream.WithExpectStream(a.opts.Stream)}
		if ttl, set := a.msgTTL(m); set {
			opts = append(opts, jetstream.WithMsgTTL(ttl))
		}
		f, err := a.js.PublishMsgAsync(&nats.Msg{Subject: Subject(m.Origin, m.Prefix), Data: m.Encode()}, opts...)
		if err != nil {
			ok = false
			if h.PublishFailed != nil {
				h.PublishFailed()
			}
			continue
		}
		futures[i] = f
	}
	for i, f := range futures { // each ends in Ok or Err (publishTimeout)
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			n := a.out.sent(batch[i])
			if h.Published != nil {
				h.Published()
			}
			if h.Queued != nil {
				h.Queued(n)
			}
			continue
		case <-f.Err():
		}
		ok = false
		if h.PublishFailed != nil {
			h.PublishFailed()
		}
	}
	return ok
}

// msgTTL is the TTL a message gets where the stream takes them: a day past the ban's
// end; none for a permanent ban.
func (a *Agent) msgTTL(m Message) (time.Duration, bool) {
	if !a.ttl.Load() {
		return 0, false
	}
	end := time.Now()
	if m.Op == OpBan {
		if m.End == 0 {
			return 0, false
		}
		end = fromMS(m.End)
	}
	return max(time.Until(end), 0) + ttlAfterEnd, true
}

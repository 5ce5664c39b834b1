package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reconnect backoff: the first retry soon (a server restart takes a second or two),
// then doubling, so that a thousand hosts do not hammer a recovering cluster.
const (
	firstRetry = 250 * time.Millisecond
	maxRetry   = 30 * time.Second
)

// backoff is the delay before retry number n (from 1), with up to 25% jitter.
func backoff(n int) time.Duration {
	d := firstRetry
	for i := 1; i < n && d < maxRetry; i++ {
		d *= 2
	}
	d = min(d, maxRetry)
	return d + time.Duration(rand.Int64N(int64(d/4)+1))
}

// dial connects to the servers. It returns at once: RetryOnFailedConnect keeps trying
// in the background, so a cluster that is down at start delays nothing, and detection
// and local blocking never wait for it.
func (a *Agent) dial() (*nats.Conn, error) {
	o := a.opts
	opts := []nats.Option{
		nats.Name("portsentry " + o.Name),
		// Replies come to an inbox of this host's own, so that its permissions can let
		// it read its replies and nobody else's.
		nats.CustomInboxPrefix(InboxPrefix(o.Name)),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(backoff),
		// Nothing is buffered while the link is down: a publish fails at once and stays
		// in the outbox, where it keeps its id.
		nats.ReconnectBufSize(-1),
		nats.Timeout(5 * time.Second),
		// A dead link (a cut cable, a partition) is noticed within 20 s, not the
		// default 4 minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(*nats.Conn) { a.linkChanged() }),
		nats.ReconnectHandler(func(*nats.Conn) { a.linkChanged() }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { a.linkLost(err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { a.linkLost(err) }),
	}
	if o.Creds != "" {
		opt, err := credsOption(o.Creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	nc, err := nats.Connect(strings.Join(o.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return nc, nil
}

// InboxPrefix is where host name's replies (the stream's acknowledgements, the
// consumer's messages) arrive.
func InboxPrefix(name string) string { return "_INBOX_" + name }

// credsOption reads FLEET_CREDS: a credentials file (a user JWT and its seed), or a
// file holding only an nkey seed.
func credsOption(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("FLEET_CREDS: %w", err)
	}
	if strings.Contains(string(data), "BEGIN NATS USER JWT") {
		return nats.UserCredentials(path), nil
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("FLEET_CREDS %s: neither a credentials file nor an nkey seed: %w", path, err)
	}
	return opt, nil
}

// streamSubjects is what the fleet's stream holds.
var streamSubjects = SubjectRoot + ".>"

// ensureStream finds the stream, or creates it: one message per subject (each host's
// last word on each prefix), deletes and purges through the API refused, and, on
// servers that have per-message TTL (2.11 and later), ended bans dropped a day after
// their end. An existing stream is used as it is, if it keeps one message per subject
// of portsentry.ban.>; the daemon never changes it.
func (a *Agent) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	s, err := a.js.Stream(ctx, a.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = a.createStream(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", a.opts.Stream, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxMsgsPerSubject != 1 || !slices.Contains(cfg.Subjects, streamSubjects) {
		return nil, fmt.Errorf("stream %s exists but does not keep exactly one message per subject of %s (subjects %v, %d per subject): fix it or set FLEET_STREAM",
			a.opts.Stream, streamSubjects, cfg.Subjects, cfg.MaxMsgsPerSubject)
	}
	a.ttl.Store(cfg.AllowMsgTTL)
	return s, nil
}

func (a *Agent) createStream(ctx context.Context) (jetstream.Stream, error) {
	info, err := a.js.AccountInfo(ctx)
	ttl := err == nil && info.API.Level >= 1 // API level 1 came with 2.11's per-message TTL
	cfg := jetstream.StreamConfig{
		Name:              a.opts.Stream,
		Description:       "portsentry fleet bans: the last message of each host about each prefix",
		Subjects:          []string{streamSubjects},
		MaxMsgsPerSubject: 1,
		MaxMsgSize:        MaxMessage,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Duplicates:        2 * time.Minute,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowMsgTTL:       ttl,
		Replicas:          1,
	}
	if a.nc.ConnectedClusterName() != "" {
		cfg.Replicas = 3
	}
	s, err := a.js.CreateStream(ctx, cfg)
	if err != nil && cfg.Replicas > 1 && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		cfg.Replicas = 1 // a cluster of fewer than 3 JetStream servers
		s, err = a.js.CreateStream(ctx, cfg)
	}
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another host was first
		return a.js.Stream(ctx, a.opts.Stream)
	}
	if err == nil {
		a.log.Info(fmt.Sprintf("adminalert: fleet: created stream %s (%d replicas, per-message TTL %v)", cfg.Name, cfg.Replicas, ttl))
	}
	return s, err
}

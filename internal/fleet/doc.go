// Package fleet shares bans between hosts through a NATS JetStream stream: a ban made
// on one host is enforced on every other, each under its own rules.
//
// Each host publishes one message per change of one of its bans (the ban, its unban,
// its expiry) on a subject of its own for that prefix,
// portsentry.ban.<host>.v4.203-0-113-7_32; the stream keeps the last message of each
// subject, so it holds every host's final word on every prefix, and a Nats-Msg-Id made
// of the change itself lets a retried publish be stored once. A host subscribes with a
// replay of the last message per subject at every (re)connect, then live: after the
// replay it holds exactly the peers' bans in force, lifts the fleet bans the stream no
// longer holds, and publishes again whatever of its own the stream lacks, from its ban
// journal, so that a publish lost to an outage or a restart is not lost for good.
//
// A peer's ban goes through the ban manager (bans.Manager.Remote): the safety gate,
// BAN_TIME_MAX, BAN_CAP counted apart from local bans, a local ban always kept. The
// agent adds what only the fleet knows: a peer may have at most Limits.PerOrigin bans
// in force here and get at most Limits.RatePerOrigin new ones a minute; a message is
// refused when its subject is not its origin's (the NATS permissions confine each
// host to its own subjects, so the subject is what can be trusted), when it is
// malformed, or when its prefix is wider than /8 (IPv4) or /32 (IPv6). Expiry is
// local, from the message's end time, so it holds while NATS is unreachable.
package fleet

package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-go/portsentry/internal/bans"
	"github.com/portsentry-go/portsentry/internal/probe"
)

// SubjectRoot is the first tokens of every fleet subject; the stream holds
// SubjectRoot + ".>".
const SubjectRoot = "portsentry.ban"

// MaxMessage bounds one message (the stream refuses larger ones too).
const MaxMessage = 4096

// Narrowest prefixes a peer may ban here, as for an operator's block: wider ones would
// cut off whole regions of the Internet.
const (
	minBits4 = 8
	minBits6 = 32
)

// Ops of a message.
const (
	OpBan    = "ban"
	OpUnban  = "unban"  // lifted early
	OpExpire = "expire" // ran out
)

// Message is one change of one host's ban on one prefix: the ban itself, or its end.
// A later message on the same subject supersedes it, so the stream's last message of a
// subject is that host's final word on that prefix.
type Message struct {
	V        int          `json:"v"` // 1
	Op       string       `json:"op"`
	Prefix   netip.Prefix `json:"prefix"`
	Origin   string       `json:"origin"`
	Mode     string       `json:"mode,omitempty"`
	Port     uint16       `json:"port,omitempty"`
	Scan     string       `json:"scan,omitempty"`
	Start    int64        `json:"start"`         // unix ms: when the ban began
	End      int64        `json:"end,omitempty"` // unix ms: when it ends; 0 permanent
	Offences int          `json:"n,omitempty"`   // the origin's escalation count
	At       int64        `json:"at"`            // unix ms: when the origin made this change
}

// Subject is the subject of origin's messages about p, e.g.
// portsentry.ban.web1.v4.203-0-113-7_32. The origin is a token of its own so that a
// host's NATS permissions can confine it to its own subjects: a peer cannot speak for
// another.
func Subject(origin string, p netip.Prefix) string {
	fam, addr := "v4", strings.ReplaceAll(p.Addr().String(), ".", "-")
	if p.Addr().Is6() {
		fam, addr = "v6", strings.ReplaceAll(p.Addr().String(), ":", "-")
	}
	return SubjectRoot + "." + origin + "." + fam + "." + addr + "_" + strconv.Itoa(p.Bits())
}

// OriginSubjects is every subject origin may publish to.
func OriginSubjects(origin string) string { return SubjectRoot + "." + origin + ".>" }

// ID is the message's Nats-Msg-Id: the same change always has the same id, so a
// publish retried (after a timeout, a reconnect or a restart) is stored once.
func (m Message) ID() string {
	return fmt.Sprintf("%s|%s|%s|%d|%d", m.Origin, m.Prefix, m.Op, m.Start, m.End)
}

// FromBan is the message of a local ban's change.
func FromBan(origin, op string, b bans.Ban, at time.Time) Message {
	m := Message{V: 1, Op: op, Prefix: b.Prefix, Origin: origin, Mode: string(b.Reason.Mode),
		Port: b.Reason.Port, Scan: b.Reason.Scan, Start: ms(b.Start), End: ms(b.Until),
		Offences: b.Offences, At: at.UnixMilli()}
	return m
}

// Ban is the remote ban a ban message asks for.
func (m Message) Ban() bans.Ban {
	return bans.Ban{Prefix: m.Prefix, Start: fromMS(m.Start), Until: fromMS(m.End), Offences: m.Offences,
		Reason: bans.Reason{Mode: probe.Mode(m.Mode), Port: m.Port, Scan: m.Scan, By: "fleet", Origin: m.Origin}}
}

// Active reports whether m is a ban still in force at now.
func (m Message) Active(now time.Time) bool {
	return m.Op == OpBan && (m.End == 0 || now.UnixMilli() < m.End)
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// Reasons a message is refused before any local rule looks at it.
var (
	errMalformed = errors.New("malformed")
	errForged    = errors.New("forged") // its subject is not its origin's
	errTooWide   = errors.New("too_wide")
)

// Decode reads a message received on subject and checks that it is what that subject
// may carry.
func Decode(subject string, data []byte) (Message, error) {
	var m Message
	if len(data) > MaxMessage || json.Unmarshal(data, &m) != nil || m.V != 1 || !m.Prefix.IsValid() ||
		m.Prefix != m.Prefix.Masked() || m.Origin == "" || m.Start < 0 || m.End < 0 {
		return Message{}, errMalformed
	}
	switch m.Op {
	case OpBan, OpUnban, OpExpire:
	default:
		return Message{}, errMalformed
	}
	if m.Prefix.Addr().Is4In6() || m.Prefix.Addr().Zone() != "" {
		return Message{}, errMalformed
	}
	if subject != Subject(m.Origin, m.Prefix) {
		return Message{}, errForged
	}
	narrowest := minBits6
	if m.Prefix.Addr().Is4() {
		narrowest = minBits4
	}
	if m.Prefix.Bits() < narrowest {
		return Message{}, errTooWide
	}
	return m, nil
}

// Encode is the message's payload.
func (m Message) Encode() []byte {
	b, _ := json.Marshal(m) // nothing in it can fail to encode
	return b
}

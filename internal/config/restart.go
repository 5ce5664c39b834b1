package config

import (
	"fmt"
)

// Pending is a key that a reload changed but cannot apply: what it governs was set up
// at start, and the daemon keeps the value it started with until it is restarted.
type Pending struct {
	Key  string
	File string // the source of the new configuration
	Line int    // its line setting Key (or Via); 0 when neither is in the file
	// Via is the key whose line is shown when Key is not in the file and takes its
	// value from it (BAN_JOURNAL from HISTORY_FILE); empty otherwise.
	Via string
	// Part names what keeps the old value when that is not everything the key governs;
	// empty: the whole key.
	Part     string
	Old, New string // the value in force and the value the file now gives
}

// String is the log line of a pending key, e.g.
//
//	DASHBOARD changed in /etc/portsentry/portsentry.conf:330: takes effect at the next restart (still "127.0.0.1:9117")
func (p Pending) String() string {
	subject := p.Key + " changed"
	if p.Via != "" {
		subject = fmt.Sprintf("%s changed (it follows %s)", p.Key, p.Via)
	}
	where := p.File
	if p.Line > 0 {
		where = fmt.Sprintf("%s:%d", p.File, p.Line)
	} else {
		where += fmt.Sprintf(" (not set there: %q)", p.New)
	}
	effect := "takes effect at the next restart"
	if p.Part != "" {
		effect = "takes effect " + p.Part + " at the next restart"
	}
	return fmt.Sprintf("%s in %s: %s (still %q)", subject, where, effect, p.Old)
}

// PendingRestart lists, in the order of the key table, the keys whose value in next
// differs from the one the daemon started with (started) although a reload cannot apply
// them. Compare with the configuration of the start, not of the last reload: a key
// changed by an earlier reload is still pending until the daemon restarts.
func PendingRestart(started, next *Config) []Pending {
	var out []Pending
	for _, k := range keys {
		r := k.restart
		if r == nil || r.when != nil && !r.when(started) {
			continue
		}
		value := r.value
		if value == nil {
			value = func(c *Config) string { s, _ := k.format(c); return s }
		}
		was, now := value(started), value(next)
		if was == now {
			continue
		}
		p := Pending{Key: k.name, File: next.Source, Line: next.Line(k.name), Part: r.part, Old: was, New: now}
		if p.Line == 0 && r.via != "" {
			p.Via, p.Line = r.via, next.Line(r.via)
		}
		out = append(out, p)
	}
	return out
}

// RestartOnly returns, in the order of the key table, the keys that a reload never
// applies, whatever the configuration. (HOSTS_DENY_FILE and HISTORY_FILE are applied
// but for the part that BLOCK_BACKEND="hostsdeny" and DASHBOARD set up at start.)
func RestartOnly() []string {
	var out []string
	for _, k := range keys {
		if k.restart != nil && k.restart.when == nil {
			out = append(out, k.name)
		}
	}
	return out
}

package nft

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// chainPriority is where the ban chains sit on the input and forward hooks: filter-10.
//
// A drop verdict is final whichever base chain gives it, while an accept only ends the
// chain that gives it, so the ban rules do not have to run before anybody's accept
// rules to be effective. What the priority decides is only the order: at -10 the ban
// chains run just before the usual filter chains at 0 (Debian's nftables.conf,
// iptables-nft, firewalld, ufw), so a banned packet costs those chains nothing and is
// counted here. Earlier hooks were considered and not taken: prerouting at raw
// priority (-300) would also drop before conntrack sees the packet, but at input the
// connection is not yet confirmed either (a dropped packet never enters the conntrack
// table), so the gain is small, while prerouting would also see traffic that routing
// is about to discard or that the host merely bridges, and would move the ban ahead
// of NAT and of the administrator's own raw-table exceptions. Input and forward is
// what the classic KILL_ROUTE covered (the host and what it routes), with nothing
// for output, so the host can still answer its own connections' peers.
var chainPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)

// chainSpec lists the two base chains.
var chainSpec = []struct {
	name string
	hook *nftables.ChainHook
}{
	{chainIn, nftables.ChainHookInput},
	{chainFwd, nftables.ChainHookForward},
}

// banRule is `ip saddr @ban4 counter drop` or `ip6 saddr @ban6 counter drop`, with a
// comment naming us.
func (b *Backend) banRule(chain *nftables.Chain, set *nftables.Set) *nftables.Rule {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if set.Name == set6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	return &nftables.Rule{
		Table: b.table,
		Chain: chain,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
		UserData: userdata.AppendString(nil, userdata.TypeComment, ruleComment),
	}
}

// isBanRule reports whether r is the rule banRule would make for the named set.
func isBanRule(r *nftables.Rule, setName string) bool {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if setName == set6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	if len(r.Exprs) != 6 {
		return false
	}
	m, ok := r.Exprs[0].(*expr.Meta)
	if !ok || m.Key != expr.MetaKeyNFPROTO || m.SourceRegister || m.Register != 1 {
		return false
	}
	c, ok := r.Exprs[1].(*expr.Cmp)
	if !ok || c.Op != expr.CmpOpEq || c.Register != 1 || !bytes.Equal(c.Data, []byte{proto}) {
		return false
	}
	p, ok := r.Exprs[2].(*expr.Payload)
	if !ok || p.OperationType != expr.PayloadLoad || p.DestRegister != 1 ||
		p.Base != expr.PayloadBaseNetworkHeader || p.Offset != off || p.Len != n {
		return false
	}
	l, ok := r.Exprs[3].(*expr.Lookup)
	if !ok || l.SourceRegister != 1 || l.SetName != setName || l.Invert || l.IsDestRegSet {
		return false
	}
	if _, ok := r.Exprs[4].(*expr.Counter); !ok {
		return false
	}
	v, ok := r.Exprs[5].(*expr.Verdict)
	return ok && v.Kind == expr.VerdictDrop
}

func setOK(s *nftables.Set, want *nftables.Set) bool {
	return s.Interval && s.HasTimeout && !s.IsMap && !s.Constant && !s.Anonymous &&
		!s.Concatenation && s.KeyType.Name == want.KeyType.Name && s.KeyType.Bytes == want.KeyType.Bytes
}

func chainOK(c *nftables.Chain, hook *nftables.ChainHook) bool {
	return c.Type == nftables.ChainTypeFilter && c.Hooknum != nil && *c.Hooknum == *hook &&
		c.Priority != nil && *c.Priority == *chainPriority &&
		(c.Policy == nil || *c.Policy == nftables.ChainPolicyAccept)
}

// Setup creates, idempotently and in one transaction, the table inet <Table> with the
// sets ban4 (ipv4_addr) and ban6 (ipv6_addr), both flags interval,timeout, and the
// base chains input and forward (type filter, priority filter-10, policy accept), each
// holding exactly `ip saddr @ban4 counter drop` and `ip6 saddr @ban6 counter drop`.
//
// On an existing table it changes only what differs: sets that are right keep their
// elements, chains whose rules are right keep them (and their counters). A chain with
// other rules is emptied and refilled; a set or chain of the wrong kind (say, left by
// another version) is recreated.
func (b *Backend) Setup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.setup()
	return err
}

// setup does Setup and reports whether it changed the ruleset.
func (b *Backend) setup() (changed bool, err error) {
	sets := map[string]*nftables.Set{}
	chains := map[string]*nftables.Chain{}
	rules := map[string][]*nftables.Rule{}
	_, err = b.conn.ListTableOfFamily(b.opts.Table, nftables.TableFamilyINet)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return false, fmt.Errorf("nftables setup: list table inet %s: %w", b.opts.Table, err)
	default:
		ss, err := b.conn.GetSets(b.table)
		if err != nil {
			return false, fmt.Errorf("nftables setup: list sets: %w", err)
		}
		for _, s := range ss {
			sets[s.Name] = s
		}
		cs, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return false, fmt.Errorf("nftables setup: list chains: %w", err)
		}
		for _, c := range cs {
			if c.Table.Name != b.opts.Table {
				continue
			}
			chains[c.Name] = c
			rs, err := b.conn.GetRules(b.table, c)
			if err != nil {
				return false, fmt.Errorf("nftables setup: list rules of chain %s: %w", c.Name, err)
			}
			rules[c.Name] = rs
		}
	}

	b.conn.AddTable(b.table)

	// Sets of the wrong kind must go, and the rules referring to them first.
	var wantSets []*nftables.Set
	rebuildAll := false
	for _, name := range []string{set4, set6} {
		want := b.set(name)
		wantSets = append(wantSets, want)
		if s, ok := sets[name]; ok && !setOK(s, want) {
			rebuildAll = true
		}
	}
	if rebuildAll {
		for name, c := range chains {
			if len(rules[name]) > 0 {
				b.conn.FlushChain(c)
			}
			rules[name] = nil
		}
	}
	for _, want := range wantSets {
		s, ok := sets[want.Name]
		switch {
		case ok && setOK(s, want):
			continue
		case ok:
			b.log.Warn("nftables: recreating a set of the wrong kind (its elements are lost)", "set", want.Name)
			b.conn.DelSet(s)
		}
		if err := b.conn.AddSet(want, nil); err != nil {
			return false, fmt.Errorf("nftables setup: add set %s: %w", want.Name, err)
		}
		changed = true
	}

	for _, cs := range chainSpec {
		c, ok := chains[cs.name]
		if ok && !chainOK(c, cs.hook) {
			b.log.Warn("nftables: recreating a chain of the wrong kind", "chain", cs.name)
			if len(rules[cs.name]) > 0 {
				b.conn.FlushChain(c)
			}
			b.conn.DelChain(c)
			ok = false
		}
		if !ok {
			c = b.conn.AddChain(&nftables.Chain{
				Name:     cs.name,
				Table:    b.table,
				Type:     nftables.ChainTypeFilter,
				Hooknum:  cs.hook,
				Priority: chainPriority,
				Policy:   ptr(nftables.ChainPolicyAccept),
			})
			rules[cs.name] = nil
			changed = true
		}
		rs := rules[cs.name]
		if len(rs) == 2 && isBanRule(rs[0], set4) && isBanRule(rs[1], set6) {
			continue
		}
		if len(rs) > 0 {
			b.log.Warn("nftables: replacing unexpected rules", "chain", cs.name, "rules", len(rs))
			b.conn.FlushChain(c)
		}
		for _, s := range wantSets {
			b.conn.AddRule(b.banRule(c, s))
		}
		changed = true
	}
	if err := b.flush("setup"); err != nil {
		return false, err
	}
	if changed {
		b.log.Info("nftables: ruleset installed", "table", "inet "+b.opts.Table)
	}
	if b.canUpdate == probeUnknown {
		if err := b.probeUpdate(); err != nil {
			return changed, err
		}
		b.log.Info("nftables: element timeouts", "update_in_place", b.canUpdate == probeYes)
	}
	return changed, nil
}

func ptr[T any](v T) *T { return &v }

// Teardown deletes the table, its sets and chains. A missing table is not an error.
func (b *Backend) Teardown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	// DelTable rather than DestroyTable: the latter needs kernel 6.3.
	b.conn.DelTable(b.table)
	if err := b.flush("teardown"); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// Counters sums the packets and bytes the drop rules have counted.
func (b *Backend) Counters() (packets, bytes uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cs := range chainSpec {
		rs, err := b.conn.GetRules(b.table, &nftables.Chain{Name: cs.name, Table: b.table})
		if err != nil {
			return 0, 0, fmt.Errorf("nftables counters: chain %s: %w", cs.name, err)
		}
		for _, r := range rs {
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					packets += c.Packets
					bytes += c.Bytes
				}
			}
		}
	}
	return packets, bytes, nil
}

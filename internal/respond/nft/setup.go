package nft

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	proto, off, n := family(set.Name)
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

// family gives what a rule matching the named set tests: the protocol, and the
// source address's offset and length in the network header.
func family(set string) (proto byte, off, n uint32) {
	if v6, _, _ := parseSetName(set); v6 {
		return unix.NFPROTO_IPV6, 8, 16
	}
	return unix.NFPROTO_IPV4, 12, 4
}

// banRuleSet returns the set r is the ban rule of; false when r is not one (the exact
// rule banRule makes for one of our sets).
func banRuleSet(r *nftables.Rule) (string, bool) {
	if len(r.Exprs) != 6 {
		return "", false
	}
	l, ok := r.Exprs[3].(*expr.Lookup)
	if !ok {
		return "", false
	}
	if _, _, ours := parseSetName(l.SetName); !ours || !isBanRule(r, l.SetName) {
		return "", false
	}
	return l.SetName, true
}

// isBanRule reports whether r is the rule banRule would make for the named set.
func isBanRule(r *nftables.Rule, setName string) bool {
	proto, off, n := family(setName)
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
// host sets ban4 (ipv4_addr) and ban6 (ipv6_addr), flags interval,timeout, and the
// base chains input and forward (type filter, priority filter-10, policy accept), each
// holding one rule per set: `ip saddr @ban4 counter drop`, `ip6 saddr @ban6 counter
// drop`, and the same for every network set (ban4_24, ban6_64, ...) already there.
//
// On an existing table it changes only what differs: sets that are right keep their
// elements, chains whose rules are right keep them (and their counters). A chain with
// other rules is emptied and refilled; a set or chain of the wrong kind (say, left by
// another version) is recreated.
func (b *Backend) Setup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.setup(nil)
	return err
}

// found is what Setup reads of the table.
type found struct {
	sets   map[string]*nftables.Set
	chains map[string]*nftables.Chain
	rules  map[string][]*nftables.Rule
}

// read lists the table's sets, chains and rules; all empty when there is no table.
func (b *Backend) read() (found, error) {
	f := found{sets: map[string]*nftables.Set{}, chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}}
	_, err := b.conn.ListTableOfFamily(b.opts.Table, nftables.TableFamilyINet)
	switch {
	case errors.Is(err, unix.ENOENT):
		return f, nil
	case err != nil:
		return f, fmt.Errorf("nftables setup: list table inet %s: %w", b.opts.Table, err)
	}
	ss, err := b.conn.GetSets(b.table)
	if err != nil {
		return f, fmt.Errorf("nftables setup: list sets: %w", err)
	}
	for _, s := range ss {
		f.sets[s.Name] = s
	}
	cs, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return f, fmt.Errorf("nftables setup: list chains: %w", err)
	}
	for _, c := range cs {
		if c.Table.Name != b.opts.Table {
			continue
		}
		f.chains[c.Name] = c
		rs, err := b.conn.GetRules(b.table, c)
		if err != nil {
			return f, fmt.Errorf("nftables setup: list rules of chain %s: %w", c.Name, err)
		}
		f.rules[c.Name] = rs
	}
	return f, nil
}

// setup does Setup, with the sets named in extra as well, and reports whether it
// changed the ruleset.
func (b *Backend) setup(extra []string) (changed bool, err error) {
	f, err := b.read()
	if err != nil {
		return false, err
	}
	b.conn.AddTable(b.table)

	want := []string{set4, set6}
	for name := range f.sets {
		if _, _, ours := parseSetName(name); ours {
			want = append(want, name)
		}
	}
	want = append(want, extra...)
	slices.SortFunc(want, cmpSets)
	want = slices.Compact(want)

	// Sets of the wrong kind must go, and the rules referring to them first.
	rebuild := false
	for _, name := range want {
		if s, ok := f.sets[name]; ok && !setOK(s, b.set(name)) {
			rebuild = true
		}
	}
	if rebuild {
		for name, c := range f.chains {
			if len(f.rules[name]) > 0 {
				b.conn.FlushChain(c)
			}
			f.rules[name] = nil
		}
	}
	var wantSets []*nftables.Set
	for _, name := range want {
		ws := b.set(name)
		wantSets = append(wantSets, ws)
		s, ok := f.sets[name]
		switch {
		case ok && setOK(s, ws):
			continue
		case ok:
			b.log.Warn("nftables: recreating a set of the wrong kind (its elements are lost)", "set", name)
			b.conn.DelSet(s)
		}
		if err := b.conn.AddSet(ws, nil); err != nil {
			return false, fmt.Errorf("nftables setup: add set %s: %w", name, err)
		}
		changed = true
	}
	for _, cs := range chainSpec {
		if b.setupChain(f, cs.name, cs.hook, wantSets) {
			changed = true
		}
	}
	if err := b.flush("setup"); err != nil {
		b.sets = nil // unknown: the next setup reads again
		return false, err
	}
	b.sets = map[string]bool{}
	for _, name := range want {
		b.sets[name] = true
	}
	if changed {
		b.log.Info("nftables: ruleset installed", "table", "inet "+b.opts.Table, "sets", strings.Join(want, ","))
	}
	if b.canUpdate == probeUnknown {
		if err := b.probeUpdate(); err != nil {
			return changed, err
		}
		b.log.Info("nftables: element timeouts", "update_in_place", b.canUpdate == probeYes)
	}
	return changed, nil
}

// setupChain queues what makes the chain right: present, of the right kind, with one
// ban rule per set. Rules for sets that are new are appended (the others keep their
// counters); anything else in the chain is replaced. It reports whether it changed
// anything.
func (b *Backend) setupChain(f found, name string, hook *nftables.ChainHook, sets []*nftables.Set) bool {
	c, ok := f.chains[name]
	if ok && !chainOK(c, hook) {
		b.log.Warn("nftables: recreating a chain of the wrong kind", "chain", name)
		if len(f.rules[name]) > 0 {
			b.conn.FlushChain(c)
		}
		b.conn.DelChain(c)
		ok = false
	}
	rules := f.rules[name]
	if !ok {
		c = b.conn.AddChain(&nftables.Chain{
			Name:     name,
			Table:    b.table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  hook,
			Priority: chainPriority,
			Policy:   ptr(nftables.ChainPolicyAccept),
		})
		rules = nil
	}
	has := map[string]bool{}
	clean := true
	for _, r := range rules {
		s, ok := banRuleSet(r)
		if !ok || has[s] {
			clean = false
			break
		}
		has[s] = true
	}
	if !clean {
		b.log.Warn("nftables: replacing unexpected rules", "chain", name, "rules", len(rules))
		b.conn.FlushChain(c)
		clear(has)
	}
	changed := !ok || !clean
	for _, s := range sets {
		if !has[s.Name] {
			b.conn.AddRule(b.banRule(c, s))
			changed = true
		}
	}
	return changed
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

package report

import "slices"

// hostEntry is what the report keeps about one scanning host.
type hostEntry struct {
	key   string // canonical address
	name  string // the name on the host's latest line
	count uint64 // lines counted for the host (an overestimate by at most err)
	err   uint64 // count the entry inherited when it replaced an evicted host
	first int64  // earliest epoch counted under this entry
	last  int64  // latest epoch
	tcp   uint64 // lines counted per protocol since the entry began: tcp+udp = count-err
	udp   uint64
	idx   int // position in the heap
}

// topHosts counts lines per host in bounded memory with the Space-Saving algorithm
// (Metwally, Agrawal, El Abbadi 2005): up to capacity hosts are counted exactly; a new
// host arriving when the table is full replaces the host with the smallest count and
// inherits that count as its possible error. Every host whose true count exceeds
// lines/capacity is guaranteed to be in the table, and for every host in it
// count-err <= true count <= count. A min-heap on count finds the host to replace.
type topHosts struct {
	capacity int
	m        map[string]*hostEntry
	heap     []*hostEntry
	evicted  uint64 // replacements made; 0 means every count is exact
}

func newTopHosts(capacity int) *topHosts {
	if capacity < 1 {
		capacity = 1
	}
	return &topHosts{capacity: capacity, m: make(map[string]*hostEntry, min(capacity, 1024))}
}

// add counts one line for the host with key (the canonical address), name and time.
func (t *topHosts) add(key, name []byte, epoch int64, proto uint8) {
	e, ok := t.m[string(key)] // no allocation for the lookup
	switch {
	case ok:
		e.count++
		if string(name) != e.name {
			e.name = string(name)
		}
		e.first = min(e.first, epoch)
		e.last = max(e.last, epoch)
	case len(t.heap) < t.capacity:
		e = &hostEntry{key: string(key), name: string(name), count: 1, first: epoch, last: epoch, idx: len(t.heap)}
		t.m[e.key] = e
		t.heap = append(t.heap, e)
		t.up(e.idx)
	default:
		e = t.heap[0] // the smallest count; it stays at the root (idx 0) for now
		delete(t.m, e.key)
		t.evicted++
		*e = hostEntry{key: string(key), name: string(name), count: e.count + 1, err: e.count, first: epoch, last: epoch}
		t.m[e.key] = e
	}
	if proto == protoTCP {
		e.tcp++
	} else {
		e.udp++
	}
	t.down(e.idx)
}

// exact reports whether every count is exact (no host was ever replaced).
func (t *topHosts) exact() bool { return t.evicted == 0 }

// size is the number of hosts held.
func (t *topHosts) size() int { return len(t.heap) }

// top returns up to n entries, largest count first, then by address.
func (t *topHosts) top(n int) []*hostEntry {
	all := make([]*hostEntry, len(t.heap))
	copy(all, t.heap)
	sortEntries(all)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

func sortEntries(es []*hostEntry) {
	slices.SortFunc(es, func(a, b *hostEntry) int {
		switch {
		case a.count != b.count:
			if a.count > b.count {
				return -1
			}
			return 1
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
}

func (t *topHosts) less(i, j int) bool { return t.heap[i].count < t.heap[j].count }

func (t *topHosts) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.heap[i].idx = i
	t.heap[j].idx = j
}

func (t *topHosts) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

// down restores the heap below i after the count at i grew (counts only grow).
func (t *topHosts) down(i int) {
	n := len(t.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && t.less(r, l) {
			c = r
		}
		if !t.less(c, i) {
			return
		}
		t.swap(i, c)
		i = c
	}
}

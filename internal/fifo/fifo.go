// Package fifo is a map of bounded size that forgets the entry inserted longest ago
// when it is full. The daemon keeps per-host state in such maps so that a flood of
// distinct (possibly spoofed) sources can never grow its memory: one-off sources only
// recycle slots among themselves, while a host that keeps coming back is re-inserted.
package fifo

// Map is a bounded map. It is not safe for concurrent use.
type Map[K comparable, V any] struct {
	m    map[K]entry[V]
	ring []K // insertion order; once full, ring[next] is the oldest
	next int
}

type entry[V any] struct {
	v    V
	slot int // the ring slot that owns the key (a deleted key's old slot goes stale)
}

// New returns a map holding at most size entries (at least 1).
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{m: make(map[K]entry[V]), ring: make([]K, 0, max(size, 1))}
}

// Get returns the value for k.
func (f *Map[K, V]) Get(k K) (V, bool) {
	e, ok := f.m[k]
	return e.v, ok
}

// Set stores v for k. A new key takes the next ring slot; when the map is full that
// slot's key, the oldest inserted, is forgotten.
func (f *Map[K, V]) Set(k K, v V) {
	if e, ok := f.m[k]; ok {
		e.v = v
		f.m[k] = e
		return
	}
	slot := len(f.ring)
	if slot < cap(f.ring) {
		f.ring = append(f.ring, k)
	} else {
		slot = f.next
		if old := f.ring[slot]; f.m[old].slot == slot {
			delete(f.m, old) // only if the slot still owns it: a deleted key may be back
		}
		f.ring[slot] = k
		f.next = (f.next + 1) % len(f.ring)
	}
	f.m[k] = entry[V]{v: v, slot: slot}
}

// Delete forgets k.
func (f *Map[K, V]) Delete(k K) { delete(f.m, k) }

// Len is the number of entries.
func (f *Map[K, V]) Len() int { return len(f.m) }

// Range calls fn for every entry, in no particular order; fn may Delete the key it is
// given.
func (f *Map[K, V]) Range(fn func(K, V)) {
	for k, e := range f.m {
		fn(k, e.v)
	}
}

// Oldest calls fn for every entry, oldest inserted first.
func (f *Map[K, V]) Oldest(fn func(K, V)) {
	n := len(f.ring)
	for i := range n {
		slot := i
		if n == cap(f.ring) {
			slot = (f.next + i) % n
		}
		k := f.ring[slot]
		if e, ok := f.m[k]; ok && e.slot == slot {
			fn(k, e.v)
		}
	}
}

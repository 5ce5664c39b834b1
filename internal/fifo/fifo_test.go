package fifo

import (
	"testing"

	"pgregory.net/rapid"
)

// TestAgainstModel drives the map with random sets and deletes and compares it with a
// model that forgets the oldest live key once more than size are live.
func TestAgainstModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		size := rapid.IntRange(1, 6).Draw(t, "size")
		f := New[int, int](size)
		model := map[int]int{}
		var order []int // live keys, oldest first
		for i, op := range rapid.SliceOfN(rapid.IntRange(0, 29), 1, 100).Draw(t, "ops") {
			k := op % 10
			if op < 20 {
				if _, ok := model[k]; !ok {
					order = append(order, k)
					if len(order) > size {
						// The oldest slot is reused; if its key was deleted meanwhile the
						// live keys number fewer than size and nothing is evicted.
						delete(model, order[0])
						order = order[1:]
					}
				}
				model[k] = i
				f.Set(k, i)
			} else {
				f.Delete(k)
				if _, ok := model[k]; ok {
					delete(model, k)
					for j, o := range order {
						if o == k {
							order = append(order[:j], order[j+1:]...)
							break
						}
					}
				}
			}
			if f.Len() > size {
				t.Fatalf("holds %d > %d", f.Len(), size)
			}
			// The map may forget earlier than the model (a deleted key's slot still
			// counts toward the order), never later, and never holds a wrong value.
			f.Range(func(k, v int) {
				if mv, ok := model[k]; !ok || mv != v {
					t.Fatalf("key %d: %d, model %d (present %v)", k, v, mv, ok)
				}
			})
			// A key the map forgot early is new to it when set again, so the model
			// forgets it too; otherwise the two orders drift apart.
			for j := 0; j < len(order); j++ {
				if _, ok := f.Get(order[j]); !ok {
					delete(model, order[j])
					order = append(order[:j], order[j+1:]...)
					j--
				}
			}
			if last, ok := f.Get(k); op < 20 && (!ok || last != i) {
				t.Fatalf("key %d just set is missing or stale", k)
			}
			var seen []int
			f.Oldest(func(k, _ int) { seen = append(seen, k) })
			if len(seen) != f.Len() {
				t.Fatalf("Oldest visited %d of %d", len(seen), f.Len())
			}
		}
	})
}

func TestDeletedKeyIsNotEvictedByItsOldSlot(t *testing.T) {
	f := New[string, int](2)
	f.Set("a", 1)
	f.Set("b", 2)
	f.Delete("a")
	f.Set("a", 3) // a new slot: the oldest ("a"'s old one) is reused
	f.Set("c", 4) // evicts the oldest live entry, "b"
	if _, ok := f.Get("a"); !ok {
		t.Fatal("re-inserted key evicted through its stale slot")
	}
	if _, ok := f.Get("b"); ok {
		t.Fatal("oldest live key kept past the bound")
	}
}

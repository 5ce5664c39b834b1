// Package batch gathers work queued on a channel into batches, for the writers that
// pay per batch (a write and an fsync, a netlink transaction) rather than per item.
package batch

// Take returns first followed by whatever ch holds right now, up to max items in all.
// It never waits: a lone item goes out at once, and under load the channel fills while
// the previous batch is being written, so batches grow by themselves. A closed channel
// ends the batch.
func Take[T any](ch <-chan T, first T, max int) []T {
	out := append(make([]T, 0, min(max, len(ch)+1)), first)
	for len(out) < max {
		select {
		case v, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, v)
		default:
			return out
		}
	}
	return out
}

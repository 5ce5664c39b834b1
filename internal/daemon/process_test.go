package daemon

import (
	"context"
	"testing"
)

// TestCommandPoolAfterClose: a job queued once the pool is closed (the undo of a ban
// the manager lifts during shutdown) runs at once, with a context that is not done,
// rather than being lost or sent on the closed queue.
func TestCommandPoolAfterClose(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newCommandPool(ctx)
	ran := make(chan bool, 1)
	c.run(func(context.Context) { ran <- true }, func() { t.Error("queue full") })
	c.close()
	if !<-ran {
		t.Fatal("queued job did not run")
	}
	cancel()
	late := false
	c.run(func(ctx context.Context) { late = ctx.Err() == nil }, func() { t.Error("queue full after close") })
	if !late {
		t.Error("a job after close did not run at once with a live context")
	}
}

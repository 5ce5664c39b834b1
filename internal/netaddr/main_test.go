package netaddr

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, in particular the
// OwnAddrs watcher and netlink's subscription goroutines after Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

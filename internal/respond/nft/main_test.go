package nft

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a Serve loop, a
// namespace goroutine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

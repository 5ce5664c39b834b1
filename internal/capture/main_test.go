package capture

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a Read that did not
// return after Close, or a namespace goroutine that never finished.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

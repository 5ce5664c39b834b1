//go:build linux

package listening

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/proc_net_* from the live kernel test")

// TestMain fails the package if any test leaves a goroutine behind, in particular the
// refresh goroutine after Stop or a namespace-switching goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

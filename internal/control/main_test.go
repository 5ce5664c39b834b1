package control

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv, set to a socket path, turns the test binary into a client that dials the
// socket, asks for the list and prints what happened: TestOtherUserRefused runs it as
// another user.
const helperEnv = "PORTSENTRY_CONTROL_TEST_HELPER"

// TestMain runs the helper when asked to, and otherwise fails the package if a test
// leaves a goroutine behind (a connection Close did not end, say).
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helper(path))
	}
	goleak.VerifyTestMain(m)
}

func helper(path string) int {
	c, err := Dial(path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			fmt.Println("dial: EACCES")
		} else {
			fmt.Println("dial:", err)
		}
		return 0
	}
	defer c.Close()
	if _, err := c.List(); err != nil {
		var se ServerError
		if errors.As(err, &se) {
			fmt.Printf("server: %s\n", se)
		} else {
			fmt.Println("call:", err)
		}
		return 0
	}
	fmt.Println("ok")
	return 0
}

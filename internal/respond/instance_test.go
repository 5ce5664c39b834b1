package respond

import (
	"strings"
	"testing"
)

func TestCheckInstance(t *testing.T) {
	for _, ok := range []string{"", "udp", "tcp+udp", "stcp+sudp+atcp+audp", "a-b_c.d", strings.Repeat("x", MaxInstance)} {
		if err := CheckInstance(ok); err != nil {
			t.Errorf("CheckInstance(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"a b", "udp\n", "a/b", "a:b", "ä", strings.Repeat("x", MaxInstance+1)} {
		if err := CheckInstance(bad); err == nil {
			t.Errorf("CheckInstance(%q) accepted", bad)
		}
	}
}

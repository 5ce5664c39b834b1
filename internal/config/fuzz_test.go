package config

import (
	"bytes"
	"os"
	"testing"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// FuzzParse: Parse never panics, and any config it returns without errors passes the
// value rules of Validate and survives WriteTo then Parse unchanged.
func FuzzParse(f *testing.F) {
	if debian, err := os.ReadFile(debianFile); err == nil {
		f.Add(debian)
	}
	for _, seed := range []string{
		"",
		bom + "TCP_PORTS = \"1, 2-5 ,80\" # c\r\nUDP_PORTS=\"7,\"\r\n",
		"KILL_ROUTE=\"/sbin/route add -host $TARGET$ reject\"\nKILL_ROUTE=\"x\"\n",
		"  BLOCK_TCP\t=\t\"2\"\nKILL_RUN_CMD=\"/bin/echo\t$TARGET$ # x\"\n",
		"PORT_BANNER \"hi\"\nSCAN_TRIGGER=\"2147483647\"\nKILL_CMD_TIMEOUT=\"3600\"\n",
		"ADVANCED_EXCLUDE_TCP=\"10-99,1,100-110,65535\"\nHOSTS_DENY_FILE=\"/tmp/d\"\n",
		"TCP_PORTS=1\nUDP_PORTS=\"1\nFOO=\"x\"\n=\"\nRESOLVE_HOST=\"\x00\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, list, err := Parse("fuzz.conf", bytes.NewReader(data))
		if c == nil || list.HasErrors() != (err != nil) {
			t.Fatalf("Parse = %v, %v, %v", c, list, err)
		}
		if err != nil {
			c.Validate(probe.Modes) // must not panic on a partial config either
			return
		}
		if errs := c.Validate(nil); len(errs) != 0 {
			t.Fatalf("Parse accepted what Validate rejects: %v", errs)
		}
		c.Validate(probe.Modes)
		roundTrip(t, c)
	})
}

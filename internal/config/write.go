package config

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// maxHeaderSource bounds the source name quoted in WriteTo's header comment, which must
// itself stay a readable line.
const maxHeaderSource = 200

// WriteTo writes the effective settings as a config file: a header comment, then one
// KEY="value" line for every key, defaults included, in the order of Debian's file.
// Parsing the output gives back an equal Config (Source aside). It writes nothing and
// returns an error when a value cannot be written so that it reads back the same: a
// double quote or control character in a string, a KILL_CMD_TIMEOUT that is not whole
// seconds, or a line over the 64 KiB limit. Invalid values that can be written (BLOCK_TCP
// 7, port 0) are written as they are; Validate reports them.
func (c *Config) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer
	src := c.Source
	if len(src) > maxHeaderSource {
		src = src[:maxHeaderSource] + "..."
	}
	fmt.Fprintf(&buf, "# Effective portsentry configuration, read from %s\n", strconv.Quote(src))
	for _, k := range keys {
		val, err := k.format(c)
		if err != nil {
			return 0, fmt.Errorf("config: cannot write %s: %w", k.name, err)
		}
		if msg := valueProblem(val); msg != "" {
			return 0, fmt.Errorf("config: cannot write %s: %s", k.name, msg)
		}
		line := k.name + `="` + val + `"`
		if len(line) > maxLineLen {
			return 0, fmt.Errorf("config: cannot write %s: line of %d bytes is over the %d byte limit",
				k.name, len(line), maxLineLen)
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	return buf.WriteTo(w)
}

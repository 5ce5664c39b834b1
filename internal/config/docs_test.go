package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsListEveryKey checks that the key table of docs/configuration.md, which is also
// the source of the portsentry.conf(5) man page, has a row for every key the parser
// knows, and no row for a key it does not.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	// First cells look like "`TCP_PORTS`", "`BLOCK_TCP` / `BLOCK_UDP`" or
	// "`ADVANCED_PORTS_TCP` / `_UDP`" (the second name is the first with its suffix
	// replaced), optionally followed by "(new)".
	code := regexp.MustCompile("`([A-Z0-9_]+)`")
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		var prev string
		for _, m := range code.FindAllStringSubmatch(first, -1) {
			name := m[1]
			if strings.HasPrefix(name, "_") && prev != "" {
				name = prev[:strings.LastIndex(prev, "_")] + name
			}
			documented[name] = true
			prev = name
		}
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k.name] = true
		if !documented[k.name] {
			t.Errorf("docs/configuration.md has no row for %s", k.name)
		}
	}
	for name := range documented {
		if !known[name] {
			t.Errorf("docs/configuration.md documents %s, which the parser does not know", name)
		}
	}
}

package config

import (
	"os"
	"regexp"
	"slices"
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

// TestDocsListRestartOnlyKeys: the "Reload (SIGHUP)" section of docs/configuration.md
// lists exactly the keys the key table marks restart-only, in its order, and names the
// keys that are restart-only in part.
func TestDocsListRestartOnlyKeys(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Reload (SIGHUP)\n")
	if !ok {
		t.Fatal(`docs/configuration.md has no "## Reload (SIGHUP)" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^- `([A-Z0-9_]+)`").FindAllStringSubmatch(section, -1) {
		listed = append(listed, m[1])
	}
	if want := RestartOnly(); !slices.Equal(listed, want) {
		t.Errorf("the section lists %v; the key table's restart-only keys are %v", listed, want)
	}
	for _, k := range keys {
		if k.restart != nil && k.restart.when != nil && !strings.Contains(section, "`"+k.name+"`") {
			t.Errorf("the section does not say that %s is restart-only in part", k.name)
		}
	}
}

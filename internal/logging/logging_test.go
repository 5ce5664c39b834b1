package logging

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
)

func TestClassicLineAndAttrs(t *testing.T) {
	var b bytes.Buffer
	log := Stream(&b, 42, slog.LevelInfo).With("mode", "tcp")
	log.Info("attackalert: Connect from host: 198.18.0.2/198.18.0.2 to TCP port: 143")
	log.Warn("bad thing", "file", "/etc/x y", "n", 3)
	log.Debug("hidden")
	re := regexp.MustCompile(`^\S+ portsentry\[42\]: attackalert: Connect from host: 198\.18\.0\.2/198\.18\.0\.2 to TCP port: 143 mode=tcp
\S+ portsentry\[42\]: bad thing mode=tcp file="/etc/x y" n=3
$`)
	if !re.MatchString(b.String()) {
		t.Fatalf("unexpected output:\n%s", b.String())
	}
}

package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"log/syslog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"
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

// TestSyslogFallback: with no syslog daemon at start the lines go to the fallback
// stream; once one listens, the next line after the redial interval reaches it.
func TestSyslogFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "log")
		var up bool
		dial = func() (*syslog.Writer, error) {
			if !up {
				return nil, errors.New("no syslog here")
			}
			return syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_NOTICE, "portsentry")
		}
		t.Cleanup(func() { dial = defaultDial })
		var b bytes.Buffer
		log, c, err := Syslog(&b, 7, slog.LevelInfo)
		if err == nil || !strings.Contains(err.Error(), "no syslog here") {
			t.Fatalf("Syslog err = %v, want the dial error", err)
		}
		defer c.Close()
		log.Info("adminalert: first")
		if !strings.Contains(b.String(), "portsentry[7]: adminalert: first") {
			t.Fatalf("fallback got %q", b.String())
		}
		l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		up = true
		log.Info("adminalert: second") // within the redial interval: still the fallback
		time.Sleep(redialEvery)
		log.Info("adminalert: third")
		if !strings.Contains(b.String(), "adminalert: second") || strings.Contains(b.String(), "third") {
			t.Fatalf("fallback got %q", b.String())
		}
		buf := make([]byte, 512)
		n, err := l.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), "adminalert: third") {
			t.Fatalf("syslog got %q, %v", buf[:n], err)
		}
	})
}

package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
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

// TestControlCharactersEscaped: neither an attribute nor the message can put a control
// character (CR, ESC, newline, DEL, C1) or invalid UTF-8 into a line, and a line
// without any is written as before.
func TestControlCharactersEscaped(t *testing.T) {
	var b bytes.Buffer
	log := Stream(&b, 1, slog.LevelInfo)
	log.Info("command output", "output", "ok\rFAKE\x1b[2K", "err", "a\nb", "path", "x\x7fy\u0085z", "raw", "\xff", "fine", `C:\dir`)
	log.Info("adminalert: ERROR: cannot open /tmp/a\rb\x1b[2K\xfe")
	log.With("cmd", "echo\x1b]0;title\a").Warn("bad\tthing")
	got := b.String()
	for _, want := range []string{
		`command output output="ok\rFAKE\x1b[2K" err="a\nb" path="x\x7fy\u0085z" raw="\xff" fine=C:\dir` + "\n",
		`adminalert: ERROR: cannot open /tmp/a\x0db\x1b[2K\xfe` + "\n",
		`bad\x09thing cmd="echo\x1b]0;title\a"` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	for _, c := range got {
		if c != '\n' && (c < 0x20 || c == 0x7f || c >= 0x80 && c < 0xa0 || c == utf8.RuneError) {
			t.Fatalf("control character %U reached the log: %q", c, got)
		}
	}
}

// TestSeverities: classic lines go at notice whatever their slog level, ours at theirs.
func TestSeverities(t *testing.T) {
	for _, c := range []struct {
		level slog.Level
		msg   string
		want  Severity
	}{
		{slog.LevelInfo, "attackalert: Connect from host: 198.18.0.2/198.18.0.2 to TCP port: 143", SevNotice},
		{slog.LevelWarn, "attackalert: Possible spoofed flood started", SevNotice},
		{slog.LevelError, "adminalert: ERROR: could not bind TCP socket: 143", SevNotice},
		{slog.LevelInfo, "securityalert: something", SevNotice},
		{slog.LevelInfo, "own address added", SevInfo},
		{slog.LevelInfo, "protected infrastructure", SevInfo},
		{slog.LevelWarn, "accept failed", SevWarning},
		{slog.LevelError, "dashboard stopped", SevErr},
		{slog.LevelDebug, "adminalert: debug detail", SevDebug},
		{slog.LevelDebug, "probe", SevDebug},
		{slog.LevelInfo, " attackalert: not at the start", SevInfo},
	} {
		if got := SeverityOf(c.level, c.msg); got != c.want {
			t.Errorf("SeverityOf(%v, %q) = %d, want %d", c.level, c.msg, got, c.want)
		}
	}
}

// TestSyslogLevels: through a syslog socket, the classic lines arrive at daemon.notice
// (priority 29) and ours at daemon.info (30), daemon.warning (28), daemon.err (27).
func TestSyslogLevels(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dial = func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_NOTICE, "portsentry")
	}
	t.Cleanup(func() { dial = defaultDial })
	var fallback bytes.Buffer
	log, c, err := Syslog(&fallback, 7, slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	log.Info("adminalert: PortSentry is now active and listening.")
	log.Error("adminalert: ERROR: could not bind TCP socket: 143")
	log.Info("own address added", "addr", "192.0.2.1")
	log.Warn("accept failed", "port", 143)
	log.Error("dashboard stopped")
	log.Debug("detail")
	want := []string{
		"<29>", "adminalert: PortSentry is now active and listening.",
		"<29>", "adminalert: ERROR: could not bind TCP socket: 143",
		"<30>", "own address added addr=192.0.2.1",
		"<28>", "accept failed port=143",
		"<27>", "dashboard stopped",
		"<31>", "detail",
	}
	buf := make([]byte, 1024)
	for i := 0; i < len(want); i += 2 {
		l.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want[i]) || !strings.HasSuffix(strings.TrimSuffix(got, "\n"), want[i+1]) {
			t.Errorf("got %q, want %s...%s", got, want[i], want[i+1])
		}
	}
	if fallback.Len() > 0 {
		t.Errorf("fallback used: %s", fallback.String())
	}
}

// TestJournalStream: on the stream JOURNAL_STREAM names, lines carry their priority
// and no timestamp; on any other stream (the variable inherited), the usual format.
func TestJournalStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"JOURNAL_STREAM": fmt.Sprintf("%d:%d", st.Dev, st.Ino)}
	getenv = func(k string) string { return env[k] }
	t.Cleanup(func() { getenv = os.Getenv })

	if !OnJournal(f) || OnJournal(other) || OnJournal(&bytes.Buffer{}) {
		t.Fatalf("OnJournal: %v for the stream, %v for another file", OnJournal(f), OnJournal(other))
	}
	for _, w := range []*os.File{f, other} {
		log := Stream(w, 9, slog.LevelDebug)
		log.Info("attackalert: Connect from host: 198.18.0.2/198.18.0.2 to TCP port: 143")
		log.Info("own address added", "addr", "192.0.2.1")
		log.Warn("accept failed")
		log.Debug("detail")
	}
	read := func(f *os.File) string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := "<5>portsentry[9]: attackalert: Connect from host: 198.18.0.2/198.18.0.2 to TCP port: 143\n" +
		"<6>portsentry[9]: own address added addr=192.0.2.1\n" +
		"<4>portsentry[9]: accept failed\n" +
		"<7>portsentry[9]: debug: detail\n"
	if got := read(f); got != want {
		t.Errorf("on the journal stream:\n%s\nwant:\n%s", got, want)
	}
	re := regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\S+ portsentry\[9\]: \S.*\n){4}$`)
	if got := read(other); !re.MatchString(got) || strings.Contains(got, "<") {
		t.Errorf("on another stream:\n%s", got)
	}
	for _, bad := range []string{"", "1", "x:y", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)} {
		env["JOURNAL_STREAM"] = bad
		if OnJournal(f) {
			t.Errorf("JOURNAL_STREAM=%q taken as the journal", bad)
		}
	}
}

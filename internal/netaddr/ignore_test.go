package netaddr

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// diagKey renders a diagnostic compactly for comparison: "LINE:severity".
func diagKeys(l diag.List) []string {
	var out []string
	for _, d := range l {
		out = append(out, fmt.Sprintf("%d:%s", d.Line, d.Severity))
	}
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestParseIgnore(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []string // prefixes in file order
		diags []string // "LINE:severity"
		msgs  []string // substrings expected in the diagnostics, in order
	}{
		{name: "empty", in: ""},
		{name: "only comments and blanks", in: "# a\n\n   \n\t# b\n"},
		{name: "ipv4 default /32", in: "10.1.2.3\n", want: []string{"10.1.2.3/32"}},
		{name: "ipv6 default /128", in: "2001:db8::1\n", want: []string{"2001:db8::1/128"}},
		{name: "explicit bits", in: "192.168.0.0/16\n2001:db8::/32\n",
			want: []string{"192.168.0.0/16", "2001:db8::/32"}},
		{name: "unnormalised v4 network is masked", in: "10.9.9.5/24\n", want: []string{"10.9.9.0/24"}},
		{name: "unnormalised v6 network is masked", in: "2001:db8::ff/64\n", want: []string{"2001:db8::/64"}},
		{name: "v4 /0 is everything, with a warning", in: "0.0.0.0/0\n",
			want: []string{"0.0.0.0/0"}, diags: []string{"1:warning"}, msgs: []string{"every IPv4"}},
		{name: "v4 /0 of a host address is still everything", in: "1.2.3.4/0\n",
			want: []string{"0.0.0.0/0"}, diags: []string{"1:warning"}},
		{name: "v6 /0", in: "::/0\n", want: []string{"::/0"}, diags: []string{"1:warning"}, msgs: []string{"every IPv6"}},
		{name: "0.0.0.0 alone is one host", in: "0.0.0.0\n", want: []string{"0.0.0.0/32"}},
		{name: "mapped host is unmapped", in: "::ffff:10.0.0.1\n", want: []string{"10.0.0.1/32"}},
		{name: "mapped network is unmapped", in: "::ffff:10.1.2.3/104\n", want: []string{"10.0.0.0/8"}},
		{name: "all mapped is all v4", in: "::ffff:0.0.0.0/96\n", want: []string{"0.0.0.0/0"}, diags: []string{"1:warning"}},
		{name: "zone dropped", in: "fe80::1%eth0\n", want: []string{"fe80::1/128"}},
		{name: "trailing comment", in: "10.0.0.1 # gateway\n10.0.0.2#dns\n",
			want: []string{"10.0.0.1/32", "10.0.0.2/32"}},
		{name: "whitespace around", in: "  \t10.0.0.1/8  \t\n", want: []string{"10.0.0.0/8"}},
		{name: "CRLF", in: "# c\r\n10.0.0.1\r\n\r\n2001:db8::/48\r\n",
			want: []string{"10.0.0.1/32", "2001:db8::/48"}},
		{name: "no final newline", in: "10.0.0.1\n10.0.0.2", want: []string{"10.0.0.1/32", "10.0.0.2/32"}},
		{name: "byte order mark", in: "\uFEFF10.0.0.1\n", want: []string{"10.0.0.1/32"}},
		{name: "leading zeros in bits", in: "10.0.0.0/08\n", want: []string{"10.0.0.0/8"}},
		{name: "text after address is warned but kept", in: "10.0.0.1 router\n",
			want: []string{"10.0.0.1/32"}, diags: []string{"1:warning"}, msgs: []string{`"router"`}},
		{
			name: "garbage lines reported with their numbers, rest used",
			in: "10.0.0.1\n" + // 1
				"hello\n" + // 2
				"# ok\n" + // 3
				"10.0.0.0/33\n" + // 4
				"2001:db8::/129\n" + // 5
				"10.0.0.0/\n" + // 6
				"10.0.0.0/-1\n" + // 7
				"10.0.0.0/x\n" + // 8
				"010.0.0.1\n" + // 9: octal-looking, ambiguous
				"10.0.0\n" + // 10
				"/24\n" + // 11
				"10.0.0.0/1234\n" + // 12
				"1.2.3.4%eth0\n" + // 13
				"10.0.0.0/99999999999999999999999\n" + // 14: overflows int, must not become /0
				"192.168.7.7\n", // 15
			want: []string{"10.0.0.1/32", "192.168.7.7/32"},
			diags: []string{"2:error", "4:error", "5:error", "6:error", "7:error", "8:error", "9:error",
				"10:error", "11:error", "12:error", "13:error", "14:error"},
			msgs: []string{`"hello"`, "/33 too long", "/129", "missing prefix length", `"-1"`, `"x"`, "leading zero"},
		},
		{name: "dotted netmask rejected with the fix", in: "192.168.0.0/255.255.0.0\n",
			diags: []string{"1:error"}, msgs: []string{"write /16"}},
		{name: "non-contiguous dotted netmask", in: "192.168.0.0/255.0.255.0\n",
			diags: []string{"1:error"}, msgs: []string{"not contiguous"}},
		{name: "CRLF garbage keeps line numbers", in: "x\r\ny\r\n10.0.0.1\r\nz\r\n",
			want: []string{"10.0.0.1/32"}, diags: []string{"1:error", "2:error", "4:error"}},
		{name: "control bytes are escaped in messages", in: "\x00\x1b[31m\n",
			diags: []string{"1:error"}, msgs: []string{`\x00\x1b`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, diags := ParseIgnore("test.ignore", strings.NewReader(tt.in))
			if d := cmp.Diff(tt.want, prefixStrings(got)); d != "" {
				t.Errorf("prefixes (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.diags, diagKeys(diags)); d != "" {
				t.Errorf("diagnostics (-want +got):\n%s\nall:\n%v", d, diags)
			}
			checkMessages(t, diags, tt.msgs)
			for _, d := range diags {
				if d.File != "test.ignore" {
					t.Errorf("diagnostic file = %q, want test.ignore", d.File)
				}
			}
		})
	}
}

// checkMessages asserts each substring appears in the diagnostics in order.
func checkMessages(t *testing.T, diags diag.List, msgs []string) {
	t.Helper()
	i := 0
	for _, d := range diags {
		if i < len(msgs) && strings.Contains(d.String(), msgs[i]) {
			i++
		}
	}
	if i < len(msgs) {
		t.Errorf("no diagnostic containing %q (in order) in:\n%v", msgs[i], diags)
	}
}

func TestParseIgnoreUnnormalisedMatchesHostsInside(t *testing.T) {
	ps, diags := ParseIgnore("x", strings.NewReader("10.9.9.5/24\n"))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	s := NewSet(ps)
	for _, a := range []string{"10.9.9.77", "10.9.9.0", "10.9.9.255", "10.9.9.5"} {
		if !s.Contains(netip.MustParseAddr(a)) {
			t.Errorf("10.9.9.5/24 does not contain %s", a)
		}
	}
	if s.Contains(netip.MustParseAddr("10.9.10.1")) {
		t.Error("10.9.9.5/24 contains 10.9.10.1")
	}
}

func TestParseIgnoreReadError(t *testing.T) {
	r := iotest.TimeoutReader(strings.NewReader("10.0.0.1\n10.0.0.2\n")) // second read fails
	ps, diags := ParseIgnore("x", iotest.OneByteReader(strings.NewReader("10.0.0.1\n")))
	if len(ps) != 1 || len(diags) != 0 {
		t.Fatalf("one-byte reader: got %v, %v", ps, diags)
	}
	_, diags = ParseIgnore("x", r)
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "read error") {
		t.Fatalf("read error not reported: %v", diags)
	}
}

// The ignore file Debian ships (copied from portsentry 1.2-14) must load cleanly, and
// the machine's own copy too when the package is installed.
func TestParseIgnoreDebianShipped(t *testing.T) {
	paths := []string{"testdata/debian.portsentry.ignore.static"}
	if _, err := os.Stat("/etc/portsentry/portsentry.ignore.static"); err == nil {
		paths = append(paths, "/etc/portsentry/portsentry.ignore.static")
	}
	for _, p := range paths {
		ps, diags, err := LoadIgnore(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(diags) != 0 {
			t.Errorf("%s: unexpected diagnostics:\n%v", p, diags)
		}
		if p != paths[0] {
			continue // the installed copy may have been edited
		}
		if d := cmp.Diff([]string{"127.0.0.1/32", "0.0.0.0/32"}, prefixStrings(ps)); d != "" {
			t.Errorf("%s (-want +got):\n%s", p, d)
		}
	}
}

func TestLoadIgnoreErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, _, err := LoadIgnore(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v does not name %s", err, missing)
	}
	if _, _, err := LoadIgnore(t.TempDir()); err == nil {
		t.Error("directory: no error")
	}
}

func TestLoadIgnoreDiagnosticsNameThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portsentry.ignore")
	if err := os.WriteFile(path, []byte("10.0.0.1\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, diags, err := LoadIgnore(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || len(diags) != 1 {
		t.Fatalf("got %v %v", ps, diags)
	}
	if want := path + ":2: error: "; !strings.HasPrefix(diags[0].String(), want) {
		t.Errorf("diagnostic %q does not start with %q", diags[0], want)
	}
}

// TestParseIgnoreLongLine: a line over MaxIgnoreLine is an error at its FILE:LINE and
// is skipped; the lines around it, and a line exactly at the limit (with CRLF), are
// used.
func TestParseIgnoreLongLine(t *testing.T) {
	atLimit := "10.0.0.3" + strings.Repeat(" ", MaxIgnoreLine-len("10.0.0.3"))
	in := "10.0.0.1\n" + strings.Repeat("9", MaxIgnoreLine+1) + "\n10.0.0.2\n" +
		strings.Repeat("#", 1<<20) + "\r\n" + atLimit + "\r\n" + "10.0.0.4" + strings.Repeat(" ", MaxIgnoreLine) + "\n"
	ps, diags := ParseIgnore("big.ignore", strings.NewReader(in))
	if d := cmp.Diff([]string{"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"}, prefixStrings(ps)); d != "" {
		t.Errorf("prefixes (-want +got):\n%s", d)
	}
	want := []string{
		"big.ignore:2: error: line is longer than 4096 bytes; skipped",
		"big.ignore:4: error: line is longer than 4096 bytes; skipped",
		"big.ignore:6: error: line is longer than 4096 bytes; skipped",
	}
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("diagnostics (-want +got):\n%s", d)
	}
}

// TestLoadIgnoreSpecialFiles: a FIFO, a device, a directory and a file over
// MaxIgnoreSize are refused at once with an error naming them; nothing is parsed.
func TestLoadIgnoreSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.ignore")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.ignore")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 200<<20); err != nil { // sparse: 200 MB of NUL on no disk
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want error
		msg  string
	}{
		{fifo, regfile.ErrNotRegular, ": is a FIFO, not a regular file"},
		{"/dev/zero", regfile.ErrNotRegular, ": is a character device, not a regular file"},
		{dir, regfile.ErrNotRegular, ": is a directory, not a regular file"},
		{big, regfile.ErrTooLarge, ": larger than 16777216 bytes"},
	} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			ps, diags, err := LoadIgnore(tt.path)
			if ps != nil || diags != nil || !errors.Is(err, tt.want) {
				t.Errorf("LoadIgnore(%s) = %v, %v, %v; want %v", tt.path, ps, diags, err, tt.want)
			}
			if err == nil || !strings.Contains(err.Error(), tt.path+tt.msg) {
				t.Errorf("LoadIgnore(%s): error %q does not say %q", tt.path, err, tt.path+tt.msg)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("LoadIgnore(%s) blocked", tt.path)
		}
	}
}

// TestLoadIgnoreOneLineMemory: the worst file under the cap, one line of nearly 16
// MiB, costs about its size once, not a multiple of it.
func TestLoadIgnoreOneLineMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "one.ignore")
	const size = MaxIgnoreSize - 16
	if err := os.WriteFile(path, append([]byte(strings.Repeat("1", size-len("\n10.0.0.1\n"))), "\n10.0.0.1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ps, diags, err := LoadIgnore(path)
	runtime.ReadMemStats(&after)
	if err != nil || len(ps) != 1 || len(diags) != 1 || diags[0].Line != 1 {
		t.Fatalf("got %v, %v, %v", ps, diags, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*size {
		t.Errorf("allocated %d MiB for a %d MiB file", alloc>>20, size>>20)
	}
}

package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/portsentry-go/portsentry/internal/diag"
)

// maxLineLen bounds one line (without its line ending). Longer lines are reported and
// skipped instead of growing a buffer without limit on a corrupt or hostile file.
const maxLineLen = 64 << 10

const bom = "\xef\xbb\xbf"

// maxShown caps how much of the file a diagnostic quotes, so a binary file cannot turn
// into a huge log line.
const maxShown = 40

type parser struct {
	name  string
	cfg   *Config
	diags diag.List
}

func (p *parser) add(line int, sev diag.Severity, format string, args ...any) {
	p.diags = append(p.diags, diag.Diagnostic{
		File: p.name, Line: line, Severity: sev, Msg: fmt.Sprintf(format, args...),
	})
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.add(line, diag.Error, format, args...)
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.add(line, diag.Warning, format, args...)
}

// run parses every line of r; the error is only for reading.
func (p *parser) run(r io.Reader) error {
	lr := lineReader{r: bufio.NewReader(r)}
	for {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if tooLong {
			p.errorf(lr.n, "line is longer than %d bytes; skipped", maxLineLen)
			continue
		}
		if lr.n == 1 {
			line = strings.TrimPrefix(line, bom)
		}
		p.line(lr.n, line)
	}
}

// lineReader splits input into lines without ever holding more than maxLineLen bytes
// of one line, unlike bufio.Scanner which gives up on the whole input at a long line.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	n   int // number of the line last returned
}

// next returns the next line without its "\n" or "\r\n". When the line is longer than
// maxLineLen, tooLong is set and the line's content is dropped. The error is io.EOF
// once no bytes remain.
func (lr *lineReader) next() (line string, tooLong bool, err error) {
	lr.buf = lr.buf[:0]
	got := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		got = got || len(chunk) > 0
		if !tooLong && len(lr.buf)+len(chunk) > maxLineLen+len("\r\n") {
			tooLong = true
		}
		if !tooLong {
			lr.buf = append(lr.buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !(errors.Is(err, io.EOF) && got) {
			return "", false, err
		}
		lr.n++
		if tooLong {
			return "", true, nil
		}
		line = trimEOL(string(lr.buf))
		return line, len(line) > maxLineLen, nil
	}
}

func trimEOL(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

func trimBlanks(s string) string { return strings.Trim(s, " \t") }

func trimLeftBlanks(s string) string { return strings.TrimLeft(s, " \t") }

// line handles one line: comment, blank or KEY="value".
func (p *parser) line(n int, s string) {
	s = trimLeftBlanks(s)
	if s == "" || s[0] == '#' {
		return
	}
	name, rest := splitKey(s)
	k, ok := keyIndex[name]
	if !ok {
		p.unknown(n, name, s)
		return
	}
	val, ok := p.value(n, name, rest)
	if first, dup := p.cfg.lines[name]; dup {
		p.warnf(n, "%s is set twice, on line %d and line %d: the first (line %d) is used, line %d is ignored",
			name, first, n, first, n)
		return
	}
	// A broken line still counts as the setting, so that a later line does not quietly
	// take its place: first wins, whatever the first says.
	p.cfg.lines[name] = n
	if ok {
		k.parse(p, n, val)
	}
}

// splitKey splits at the first blank, "=" or quote.
func splitKey(s string) (key, rest string) {
	i := strings.IndexAny(s, " \t=\"")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

func (p *parser) unknown(n int, name, s string) {
	if !validKeyName(name) {
		p.warnf(n, "line not understood, ignored: %s", shown(s))
		return
	}
	if _, ok := keyIndex[strings.ToUpper(name)]; ok {
		p.warnf(n, "unknown key %s ignored (keys are upper case: %s)", name, strings.ToUpper(name))
		return
	}
	if k := closestKey(strings.ToUpper(name)); k != "" {
		p.warnf(n, "unknown key %s ignored (did you mean %s?)", name, k)
		return
	}
	p.warnf(n, "unknown key %s ignored", name)
}

// closestKey returns the one known key within two edits of name (a typo: BLOCK_TPC,
// KILL_RUN_COMMAND is too far), or "" when there is none or more than one.
func closestKey(name string) string {
	best, bestDist, ties := "", 3, 0
	for k := range keyIndex {
		switch d := editDistance(name, k); {
		case d < bestDist:
			best, bestDist, ties = k, d, 1
		case d == bestDist:
			ties++
		}
	}
	if ties != 1 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (ASCII key names), with a
// transposition counted as one edit.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func validKeyName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// value extracts the quoted value from what follows the key. ok is false when the
// syntax is broken (an error has been reported).
func (p *parser) value(n int, key, rest string) (val string, ok bool) {
	after := trimLeftBlanks(rest)
	spaced := len(after) < len(rest)
	switch {
	case strings.HasPrefix(after, "="):
		after = trimLeftBlanks(after[1:])
	case strings.HasPrefix(after, `"`) && spaced:
		// Classic accepts KEY "value"; keep such files working but say so.
		p.warnf(n, "missing '=' between %s and its value (accepted)", key)
	case strings.HasPrefix(after, `"`):
		p.errorf(n, "missing '=' between %s and its value", key)
		return "", false
	}
	if !strings.HasPrefix(after, `"`) {
		if strings.Contains(after, `"`) {
			p.errorf(n, `Quotes missing from %s token: the value must follow '=' in double quotes`, key)
		} else {
			p.errorf(n, "Quotes missing from %s token", key)
		}
		return "", false
	}
	end := strings.IndexByte(after[1:], '"')
	if end < 0 {
		p.errorf(n, "Quotes missing from %s token: no closing quote", key)
		return "", false
	}
	val, tail := after[1:1+end], trimLeftBlanks(after[2+end:])
	if tail != "" && tail[0] != '#' {
		p.errorf(n, "%s: unexpected text after the closing quote: %s (a value cannot hold a double quote)",
			key, shown(tail))
		return "", false
	}
	if msg := valueProblem(val); msg != "" {
		p.errorf(n, "%s: %s", key, msg)
		return "", false
	}
	return val, true
}

// valueProblem says why s cannot be a value: a double quote would end it early and
// control characters (other than tab) are invisible mistakes that classic silently cut
// the value at. The same rule decides what WriteTo can write.
func valueProblem(s string) string {
	for _, c := range []byte(s) {
		switch {
		case c == '"':
			return "value contains a double quote"
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("value contains control character %q", rune(c))
		}
	}
	return ""
}

// shown quotes s for a diagnostic, cut to maxShown runes.
func shown(s string) string {
	if utf8.RuneCountInString(s) <= maxShown {
		return fmt.Sprintf("%q", s)
	}
	cut := 0
	for i := 0; i < maxShown; i++ {
		_, size := utf8.DecodeRuneInString(s[cut:])
		cut += size
	}
	return fmt.Sprintf("%q...", s[:cut])
}

// Package netaddr holds the address sets that decide whom PortSentry never acts on: the
// operator's ignore file (IPv4 and IPv6 networks) and the host's own addresses, followed
// live from the kernel.
package netaddr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portsentry-go/portsentry/internal/diag"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// maxShown caps how much of a bad token a diagnostic quotes, so a binary file or a
// runaway line cannot produce a megabyte-long log line.
const maxShown = 60

// Limits of an ignore file. A long ignore list is a few thousand lines of at most a
// few dozen bytes; anything near these sizes is not an ignore file.
const (
	MaxIgnoreSize = 16 << 20 // bytes in a file
	MaxIgnoreLine = 4096     // bytes in a line, without its line ending
)

// LoadIgnore reads and parses the ignore file at path. The error is only for I/O
// (missing file, permission, something that is not a regular file, such as a FIFO or
// /dev/zero, or a file of more than MaxIgnoreSize bytes); it is an *fs.PathError
// naming the path. Problems inside the file are diagnostics and the usable lines are
// still returned.
func LoadIgnore(path string) ([]netip.Prefix, diag.List, error) {
	data, err := regfile.ReadAll(path, MaxIgnoreSize)
	if err != nil {
		return nil, nil, err
	}
	prefixes, diags := ParseIgnore(path, bytes.NewReader(data))
	return prefixes, diags, nil
}

// ParseIgnore parses an ignore file: one address per line with optional /bits, '#'
// comments (whole line or trailing), blank lines and surrounding whitespace. Every
// returned prefix is valid, masked and unmapped (IPv4-mapped IPv6 becomes IPv4). A bad
// line yields an Error diagnostic naming name and the line number and is skipped; the
// rest is still used, because a typo must not drop every other ignore entry. So is a
// line longer than MaxIgnoreLine bytes, of which no more than that is ever held.
func ParseIgnore(name string, r io.Reader) ([]netip.Prefix, diag.List) {
	var (
		out   []netip.Prefix
		diags diag.List
		buf   []byte
	)
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		// Read one line in chunks, keeping at most the limit (and a CRLF) of it.
		buf = buf[:0]
		n, tooLong := 0, false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			n += len(chunk)
			if !tooLong && len(buf)+len(chunk) > MaxIgnoreLine+len("\r\n") {
				tooLong, buf = true, buf[:0]
			}
			if !tooLong {
				buf = append(buf, chunk...)
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		line := string(buf)
		if !tooLong && len(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")) > MaxIgnoreLine {
			tooLong = true
		}
		if lineNo == 1 {
			// Editors on other systems sometimes prepend a UTF-8 byte order mark.
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		switch {
		case tooLong:
			diags = append(diags, diag.Diagnostic{File: name, Line: lineNo, Severity: diag.Error,
				Msg: fmt.Sprintf("line is longer than %d bytes; skipped", MaxIgnoreLine)})
		case n > 0:
			p, ds := parseIgnoreLine(line)
			for _, d := range ds {
				d.File, d.Line = name, lineNo
				diags = append(diags, d)
			}
			if p.IsValid() {
				out = append(out, p)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				diags = append(diags, diag.Diagnostic{File: name, Severity: diag.Error,
					Msg: fmt.Sprintf("read error after line %d: %v", lineNo, err)})
			}
			return out, diags
		}
	}
}

// parseIgnoreLine parses one line. It returns an invalid Prefix when the line holds no
// usable entry; the diagnostics it returns still lack File and Line.
func parseIgnoreLine(line string) (netip.Prefix, diag.List) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line) // also drops the \r of CRLF files
	if len(fields) == 0 {
		return netip.Prefix{}, nil
	}
	p, msg := parseEntry(fields[0])
	if msg != "" {
		return netip.Prefix{}, diag.List{{Severity: diag.Error, Msg: msg}}
	}
	var diags diag.List
	if len(fields) > 1 {
		// Classic PortSentry read the leading address and ignored the rest of the line.
		// Keep the entry (dropping it could get a trusted host blocked) but say so.
		diags = append(diags, warn("text after the address ignored: %s", quote(strings.Join(fields[1:], " "))))
	}
	if p.Bits() == 0 {
		diags = append(diags, warn("%s matches every %s address: nothing of that family will ever be acted on", p, family(p.Addr())))
	}
	return p, diags
}

// parseEntry parses "ADDR" or "ADDR/BITS" into a normalised prefix, or returns why not.
func parseEntry(tok string) (netip.Prefix, string) {
	addrPart, bitsPart, hasBits := strings.Cut(tok, "/")
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("invalid address %s: %s", quote(addrPart), reason(err, addrPart))
	}
	// A zone names a link, which means nothing for "never block this host"; the set
	// compares addresses without zones anyway.
	addr = addr.WithZone("")
	bits := addr.BitLen()
	if hasBits {
		var msg string
		if bits, msg = parseBits(bitsPart, addr.BitLen()); msg != "" {
			return netip.Prefix{}, msg
		}
	}
	return Canonical(netip.PrefixFrom(addr, bits)), ""
}

// parseBits parses the prefix length after '/'. Only decimal bit counts are accepted:
// portsentry(8) documents "<IP Address>/<Netmask Bits>" and classic fed the text to
// atoi, so a dotted netmask never worked; we reject it with the equivalent to write.
func parseBits(s string, maxBits int) (int, string) {
	if s == "" {
		return 0, "missing prefix length after '/'"
	}
	if m, err := netip.ParseAddr(s); err == nil && m.Is4() {
		if ones, ok := maskBits(m); ok {
			return 0, fmt.Sprintf("dotted netmask %s is not supported, write /%d", s, ones)
		}
		return 0, fmt.Sprintf("dotted netmask %s is not supported (and not contiguous), write /BITS", s)
	}
	if strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Sprintf("invalid prefix length %s", quote(s))
	}
	// Atoi fails only on overflow here; such a number is as much too long as 129.
	if n, err := strconv.Atoi(s); err == nil && n <= maxBits {
		return n, ""
	}
	return 0, fmt.Sprintf("prefix length /%s too long (at most /%d)", shorten(s), maxBits)
}

// maskBits returns the length of a contiguous dotted IPv4 netmask.
func maskBits(m netip.Addr) (int, bool) {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&(1<<31) != 0 {
		v <<= 1
		ones++
	}
	return ones, v == 0
}

// reason strips netip's `ParseAddr("...")` preamble, which repeats the (possibly long)
// input that the diagnostic already quotes.
func reason(err error, in string) string {
	msg := strings.TrimPrefix(err.Error(), "ParseAddr("+strconv.Quote(in)+"): ")
	return shorten(msg)
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func warn(format string, args ...any) diag.Diagnostic {
	return diag.Diagnostic{Severity: diag.Warning, Msg: fmt.Sprintf(format, args...)}
}

// quote renders user text safely (control bytes escaped) and bounded in length.
func quote(s string) string {
	if len(s) > maxShown {
		return strconv.Quote(s[:maxShown]) + "..."
	}
	return strconv.Quote(s)
}

// shorten bounds text already known to be printable.
func shorten(s string) string {
	if len(s) > maxShown {
		return s[:maxShown] + "..."
	}
	return s
}

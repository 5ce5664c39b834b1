// Command mdman turns one of the project's markdown documents into a man page, so that
// docs/ stays the one source of the manual and nothing is edited twice. It knows the
// small subset of markdown the docs use: "#" to "###" headings, paragraphs, "-" and
// "1." lists, tables, indented or fenced code blocks, and inline code, bold, italics and
// links.
//
//	mdman -name portsentry.conf -section 5 -desc "..." [-date D] [-source S] IN.md >OUT
//
// The first-level heading of the document and HTML comments are dropped: the NAME
// section, made from -name and -desc, takes the heading's place, and text before the
// first "##" heading goes under DESCRIPTION. A table becomes a list of tagged paragraphs: the first
// column is the tag, the last the text, and any columns between them follow the text as
// "(header: value)".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

func main() {
	var m manPage
	flag.StringVar(&m.name, "name", "", "name of the page (required)")
	flag.StringVar(&m.section, "section", "8", "manual section")
	flag.StringVar(&m.desc, "desc", "", "one-line description for the NAME section (required)")
	flag.StringVar(&m.date, "date", "", "date in the page footer")
	flag.StringVar(&m.source, "source", "portsentry", "source in the page footer")
	flag.StringVar(&m.manual, "manual", "", "manual title in the page header")
	flag.Parse()
	if m.name == "" || m.desc == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mdman -name NAME -section N -desc TEXT [-date D] [-source S] [-manual M] FILE.md")
		os.Exit(2)
	}
	in, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
	defer in.Close()
	w := bufio.NewWriter(os.Stdout)
	if err := m.convert(in, w); err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
}

type manPage struct {
	name, section, desc, date, source, manual string
}

// convert reads markdown from r and writes roff (man macros) to w.
func (m *manPage) convert(r io.Reader, w io.Writer) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	out := &strings.Builder{}
	fmt.Fprintf(out, ".TH %s %s %s %s %s\n", quote(strings.ToUpper(m.name)), quote(m.section),
		quote(m.date), quote(m.source), quote(m.manual))
	fmt.Fprintf(out, ".SH NAME\n%s \\- %s\n", escape(m.name), escape(m.desc))
	inSection := false
	for i := 0; i < len(lines); {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if !inSection && trimmed != "" && !strings.HasPrefix(line, "# ") && !strings.HasPrefix(trimmed, "<!--") {
			if !strings.HasPrefix(line, "## ") {
				out.WriteString(".SH DESCRIPTION\n")
			}
			inSection = true
		}
		switch {
		case trimmed == "":
			i++
		case strings.HasPrefix(trimmed, "<!--"):
			for i < len(lines) && !strings.Contains(lines[i], "-->") {
				i++
			}
			i++ // the line that closes the comment
		case strings.HasPrefix(line, "# "):
			i++ // the title: NAME replaces it
		case strings.HasPrefix(line, "## "):
			fmt.Fprintf(out, ".SH %s\n", quote(inline(strings.ToUpper(strings.TrimPrefix(line, "## ")))))
			i++
		case strings.HasPrefix(line, "### "):
			fmt.Fprintf(out, ".SS %s\n", quote(inline(strings.TrimPrefix(line, "### "))))
			i++
		case strings.HasPrefix(trimmed, "```"):
			i++
			var code []string
			for i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```") {
				code = append(code, lines[i])
				i++
			}
			i++ // the closing fence
			writeCode(out, code)
		case strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t"):
			var code []string
			for i < len(lines) && (strings.HasPrefix(lines[i], "    ") || strings.HasPrefix(lines[i], "\t") ||
				strings.TrimSpace(lines[i]) == "" && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    ")) {
				code = append(code, strings.TrimPrefix(strings.TrimPrefix(lines[i], "    "), "\t"))
				i++
			}
			writeCode(out, code)
		case strings.HasPrefix(trimmed, "|"):
			var rows []string
			for i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "|") {
				rows = append(rows, strings.TrimSpace(lines[i]))
				i++
			}
			writeTable(out, rows)
		case listItem(line) != "":
			for i < len(lines) && listItem(lines[i]) != "" {
				mark := listItem(lines[i])
				text := []string{strings.TrimSpace(lines[i][len(mark):])}
				i++
				for i < len(lines) && strings.HasPrefix(lines[i], "  ") && listItem(lines[i]) == "" &&
					strings.TrimSpace(lines[i]) != "" {
					text = append(text, strings.TrimSpace(lines[i]))
					i++
				}
				if strings.HasPrefix(mark, "-") {
					out.WriteString(".IP \\(bu 2\n")
				} else {
					fmt.Fprintf(out, ".IP %s 4\n", strings.TrimSpace(mark))
				}
				writeText(out, strings.Join(text, " "))
			}
		default:
			var para []string
			for i < len(lines) && strings.TrimSpace(lines[i]) != "" && !blockStart(lines[i]) {
				para = append(para, strings.TrimSpace(lines[i]))
				i++
			}
			out.WriteString(".PP\n")
			writeText(out, strings.Join(para, " "))
		}
	}
	_, err = io.WriteString(w, out.String())
	return err
}

// blockStart reports whether a line ends a paragraph by starting another block.
func blockStart(line string) bool {
	t := strings.TrimSpace(line)
	return strings.HasPrefix(line, "#") || strings.HasPrefix(t, "|") || strings.HasPrefix(t, "```") ||
		listItem(line) != ""
}

// listItem returns the marker ("- " or "3. ") that starts a list item, or "".
func listItem(line string) string {
	if strings.HasPrefix(line, "- ") {
		return "- "
	}
	n := 0
	for n < len(line) && line[n] >= '0' && line[n] <= '9' {
		n++
	}
	if n > 0 && strings.HasPrefix(line[n:], ". ") {
		return line[:n+2]
	}
	return ""
}

func writeCode(out *strings.Builder, code []string) {
	for len(code) > 0 && strings.TrimSpace(code[len(code)-1]) == "" {
		code = code[:len(code)-1]
	}
	out.WriteString(".PP\n.RS 4\n.nf\n")
	for _, l := range code {
		out.WriteString(lineStart(escape(l)) + "\n")
	}
	out.WriteString(".fi\n.RE\n")
}

// writeTable renders a header row, the |---| row and the body rows as tagged paragraphs.
func writeTable(out *strings.Builder, rows []string) {
	if len(rows) < 2 {
		for _, r := range rows {
			out.WriteString(".PP\n")
			writeText(out, r)
		}
		return
	}
	header := cells(rows[0])
	for _, r := range rows[2:] {
		c := cells(r)
		if len(c) == 0 {
			continue
		}
		out.WriteString(".TP\n")
		writeText(out, c[0])
		var extra []string
		for j := 1; j < len(c)-1; j++ {
			h := ""
			if j < len(header) {
				h = header[j] + ": "
			}
			extra = append(extra, h+c[j])
		}
		var body []string
		if len(c) > 1 {
			body = append(body, c[len(c)-1])
		}
		if len(extra) > 0 {
			body = append(body, "("+strings.Join(extra, "; ")+")")
		}
		writeText(out, strings.Join(body, " "))
	}
}

// cells splits a table row into its trimmed cells; "\|" stays a literal bar.
func cells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	row = strings.TrimSuffix(row, "|")
	var out []string
	var cur strings.Builder
	inCode := false
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteByte('|')
			i++
		case row[i] == '`':
			inCode = !inCode
			cur.WriteByte('`')
		case row[i] == '|' && !inCode:
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(row[i])
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// writeText writes inline markdown as one line of text; groff fills the paragraph.
func writeText(out *strings.Builder, md string) {
	out.WriteString(lineStart(inline(md)) + "\n")
}

// lineStart protects a roff line that would otherwise start with a control character.
func lineStart(s string) string {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}

// inline converts code spans, bold, italics and links, and escapes everything else.
func inline(md string) string {
	var out strings.Builder
	for i := 0; i < len(md); {
		switch {
		case md[i] == '`':
			end := strings.IndexByte(md[i+1:], '`')
			if end < 0 {
				out.WriteString(escape(md[i:]))
				return out.String()
			}
			out.WriteString(`\fB` + escape(md[i+1:i+1+end]) + `\fR`)
			i += end + 2
		case strings.HasPrefix(md[i:], "**"):
			end := strings.Index(md[i+2:], "**")
			if end < 0 {
				out.WriteString(escape("**"))
				i += 2
				continue
			}
			out.WriteString(`\fB` + inline(md[i+2:i+2+end]) + `\fR`)
			i += end + 4
		case md[i] == '*' && i+1 < len(md) && md[i+1] != ' ':
			end := strings.IndexByte(md[i+1:], '*')
			if end < 0 {
				out.WriteString(escape("*"))
				i++
				continue
			}
			out.WriteString(`\fI` + inline(md[i+1:i+1+end]) + `\fR`)
			i += end + 2
		case md[i] == '[':
			close := strings.Index(md[i:], "](")
			if close < 0 {
				out.WriteString(escape("["))
				i++
				continue
			}
			end := strings.IndexByte(md[i+close:], ')')
			if end < 0 {
				out.WriteString(escape("["))
				i++
				continue
			}
			out.WriteString(inline(md[i+1 : i+close]))
			i += close + end + 1
		default:
			j := i + 1
			for j < len(md) && !strings.ContainsRune("`*[", rune(md[j])) {
				j++
			}
			out.WriteString(escape(md[i:j]))
			i = j
		}
	}
	return out.String()
}

// escape makes text safe for roff: backslashes and minus signs, and any non-ASCII
// character as a named or \[uXXXX] glyph so the page does not depend on the reader's
// locale.
func escape(s string) string {
	var out strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			out.WriteString(`\e`)
		case r == '-':
			out.WriteString(`\-`)
		case r == '\u2014':
			out.WriteString(`\(em`)
		case r == '\u2013':
			out.WriteString(`\(en`)
		case r == '\u2192':
			out.WriteString(`\(->`)
		case r == '\u2264':
			out.WriteString(`\(<=`)
		case r == '\u2265':
			out.WriteString(`\(>=`)
		case r == '\u00d7':
			out.WriteString(`\(mu`)
		case r == '\u2019':
			out.WriteString(`\(cq`)
		case r == '\u201c':
			out.WriteString(`\(lq`)
		case r == '\u201d':
			out.WriteString(`\(rq`)
		case r == utf8.RuneError:
			out.WriteString("?")
		case r >= 0x80:
			fmt.Fprintf(&out, `\[u%04X]`, r)
		default:
			out.WriteRune(r)
		}
	}
	return out.String()
}

// quote makes a macro argument: in double quotes, with inner quotes doubled.
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

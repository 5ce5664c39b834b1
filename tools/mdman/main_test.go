package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestConvert(t *testing.T) {
	md := "# title\n\nIntro `-c FILE` and **bold**, *it*, [link](x.md).\n\n" +
		"## Options\n\n| option | default | meaning |\n|---|---|---|\n| `-x` | 1 | does x \\| y |\n\n" +
		"- one\n  continued\n- two\n\n    code -a\n    .dot\n\n.starts with a dot — dash\n"
	m := manPage{name: "demo", section: "8", desc: "a demo"}
	var out strings.Builder
	if err := m.convert(strings.NewReader(md), &out); err != nil {
		t.Fatal(err)
	}
	want := `.TH "DEMO" "8" "" "" ""
.SH NAME
demo \- a demo
.SH DESCRIPTION
.PP
Intro \fB\-c FILE\fR and \fBbold\fR, \fIit\fR, link.
.SH "OPTIONS"
.TP
\fB\-x\fR
does x | y (default: 1)
.IP \(bu 2
one continued
.IP \(bu 2
two
.PP
.RS 4
.nf
code \-a
\&.dot
.fi
.RE
.PP
\&.starts with a dot \(em dash
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// TestDocsRender converts the two documents the package turns into man pages and, when
// groff is installed, checks that they render without warnings.
func TestDocsRender(t *testing.T) {
	dir := t.TempDir()
	for _, doc := range []struct{ src, name, section string }{
		{"../../docs/portsentry.8.md", "portsentry", "8"},
		{"../../docs/configuration.md", "portsentry.conf", "5"},
	} {
		in, err := os.Open(doc.src)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		m := manPage{name: doc.name, section: doc.section, desc: "test"}
		err = m.convert(in, &out)
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
		page := filepath.Join(dir, doc.name+"."+doc.section)
		if err := os.WriteFile(page, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("groff"); err != nil {
			continue
		}
		cmd := exec.Command("groff", "-man", "-ww", "-z", "-Tutf8", page)
		msg, err := cmd.CombinedOutput()
		if err != nil || len(msg) > 0 {
			t.Errorf("%s: groff: %v\n%s", doc.src, err, msg)
		}
	}
}

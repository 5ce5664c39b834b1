package web

import (
	"bytes"
	"embed"
	"fmt"
	"github.com/portsentry-go/portsentry/internal/style"
	"html/template"
)

//go:embed assets/dashboard.html.tmpl assets/dashboard.css assets/dashboard.js
var assets embed.FS

var (
	pageTmpl *template.Template
	pageCSS  string
	pageJS   string
	// pageCSP allows the page's own style and script, pinned by hash, requests to
	// its own origin (the API) and nothing else; no one may frame it.
	pageCSP string
)

func init() {
	css, err1 := assets.ReadFile("assets/dashboard.css")
	js, err2 := assets.ReadFile("assets/dashboard.js")
	tmpl, err3 := assets.ReadFile("assets/dashboard.html.tmpl")
	if err1 != nil || err2 != nil || err3 != nil {
		panic("web: embedded assets missing")
	}
	pageCSS, pageJS = style.Base+string(css), string(js)
	pageCSP = fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; connect-src 'self'; img-src 'none'; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", style.Hash(pageCSS), style.Hash(pageJS))
	pageTmpl = template.Must(template.New("dashboard").Parse(string(tmpl)))
}

type pageData struct {
	Unblock   bool   // POST /api/unblock is enabled
	Report    bool   // /report is served
	TokenFile string // where the token is, for the hint
	CSS       template.CSS
	JS        template.JS
}

// renderPage renders the dashboard once per server: it holds no data, only the
// script that fetches it.
func renderPage(d pageData) ([]byte, error) {
	d.CSS, d.JS = template.CSS(pageCSS), template.JS(pageJS)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("web: dashboard page: %w", err)
	}
	return buf.Bytes(), nil
}

package report

import (
	"embed"
	"encoding/json"
	"fmt"
	"github.com/portsentry-go/portsentry/internal/style"
	"html/template"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

//go:embed assets/report.html.tmpl assets/report.css assets/report.js
var assets embed.FS

var (
	pageTmpl *template.Template
	pageCSS  string
	pageJS   string
	// pageCSP allows exactly the page's own style and script (by hash) and nothing
	// else: no network, no other script. Even if an escaping bug let a hostile host
	// name into the markup as a script, the browser would refuse to run it.
	pageCSP string
)

func init() {
	css, err1 := assets.ReadFile("assets/report.css")
	js, err2 := assets.ReadFile("assets/report.js")
	tmpl, err3 := assets.ReadFile("assets/report.html.tmpl")
	if err1 != nil || err2 != nil || err3 != nil {
		panic("report: embedded assets missing")
	}
	pageCSS, pageJS = style.Base+string(css), string(js)
	pageCSP = fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; img-src 'none'; base-uri 'none'; form-action 'none'",
		style.Hash(pageCSS), style.Hash(pageJS))
	pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
		"group":   func(n any) string { return group(n) },
		"pct":     pct,
		"utc":     utcText,
		"inc":     func(i int) int { return i + 1 },
		"add":     func(a, b float64) float64 { return a + b },
		"sub":     func(a, b float64) float64 { return a - b },
		"lower":   strings.ToLower,
		"addrKey": sortableAddr,
	}).Parse(string(tmpl)))
}

// WriteJSON writes s as indented JSON (see docs/report.md for the fields).
func WriteJSON(w io.Writer, s *Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteHTML writes s as one self-contained HTML page: no external resource of any
// kind, so it works offline, from a file, or served as is by any web server.
func WriteHTML(w io.Writer, s *Summary, opts Options) error {
	opts.fill()
	p := &page{
		S:       s,
		Source:  clean(s.Source),
		CSP:     pageCSP,
		CSS:     template.CSS(pageCSS),
		JS:      template.JS(pageJS),
		HostCap: opts.HostCapacity,
	}
	if s.First != nil {
		p.First, p.Last = *s.First, *s.Last
		p.Span = spanText(*s.Last - *s.First)
	}
	p.Range = rangeText(s)
	p.Split.TCP, p.Split.UDP = splitWidths(s.Protocols.TCP, s.Protocols.UDP, 200)
	p.Chart = buildChart(s.Timeline, opts.Location)
	for _, h := range s.TopScanners {
		p.Scanners = append(p.Scanners, scannerView{Scanner: h, Address: clean(h.Address), Name: clean(h.Name),
			Bar: barWidth(h.Probes, s.TopScanners[0].Probes)})
	}
	for _, pc := range s.TopPorts {
		p.Ports = append(p.Ports, portView{PortCount: pc, Class: strings.ToLower(pc.Proto),
			Service: serviceName(pc.Port, pc.Proto), Bar: barWidth(pc.Probes, s.TopPorts[0].Probes)})
	}
	rows := make([]Row, len(s.Rows))
	for i, r := range s.Rows {
		r.Name, r.Addr = clean(r.Name), clean(r.Addr)
		rows[i] = r
	}
	sc := *s
	sc.Rows = rows
	p.S = &sc
	return pageTmpl.Execute(w, p)
}

// clean makes text from the file safe to put in a page as text: valid UTF-8, control
// characters replaced. (Markup characters are escaped by html/template.)
func clean(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

type page struct {
	S           *Summary
	Source      string
	CSP         string
	CSS         template.CSS
	JS          template.JS
	HostCap     int
	Range       string
	First, Last int64
	Span        string
	Split       struct{ TCP, UDP float64 }
	Chart       chart
	Scanners    []scannerView
	Ports       []portView
}

type scannerView struct {
	Scanner
	Address, Name string
	Bar           float64
}

type portView struct {
	PortCount
	Class, Service string
	Bar            float64
}

func barWidth(n, max uint64) float64 {
	if max == 0 {
		return 0
	}
	return round2(float64(n) * 100 / float64(max))
}

func splitWidths(a, b int64, total float64) (float64, float64) {
	if a+b == 0 {
		return 0, 0
	}
	wa := round2(float64(a) * total / float64(a+b))
	return wa, round2(total - wa)
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// group formats an integer with thousands separators: 1234567 -> "1,234,567".
func group(n any) string {
	var s string
	switch v := n.(type) {
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	default:
		s = fmt.Sprint(v)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// pct formats part/whole as a percentage with one decimal.
func pct(part, whole int64) string {
	if whole == 0 {
		return "0%"
	}
	return strconv.FormatFloat(float64(part)*100/float64(whole), 'f', 1, 64) + "%"
}

// utcText is the no-JavaScript rendering of an epoch.
func utcText(epoch int64) string {
	return time.Unix(epoch, 0).UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// spanText says how long a period is, to the two largest units: "3 days 4 hours".
func spanText(sec int64) string {
	d, h, m, x := sec/86400, sec%86400/3600, sec%3600/60, sec%60
	pair := func(a int64, an string, b int64, bn string) string {
		if b == 0 {
			return plural(a, an)
		}
		return plural(a, an) + " " + plural(b, bn)
	}
	switch {
	case d > 0:
		return pair(d, "day", h, "hour")
	case h > 0:
		return pair(h, "hour", m, "minute")
	case m > 0:
		return pair(m, "minute", x, "second")
	}
	return plural(x, "second")
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return group(n) + " " + unit + "s"
}

func rangeText(s *Summary) string {
	switch {
	case s.Since != nil && s.Until != nil:
		return "lines from " + utcText(*s.Since) + " to before " + utcText(*s.Until)
	case s.Since != nil:
		return "lines since " + utcText(*s.Since)
	case s.Until != nil:
		return "lines before " + utcText(*s.Until)
	}
	return ""
}

// sortableAddr gives an address a key that sorts numerically as text: IPv4 before
// IPv6, each by value.
func sortableAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "z" + s
	}
	b := a.As16()
	if a.Is4() {
		return "4" + fmt.Sprintf("%x", b[12:])
	}
	return "6" + fmt.Sprintf("%x", b)
}

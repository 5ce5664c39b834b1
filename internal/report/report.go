// Package report turns a classic PortSentry history file into a summary: counts, top
// scanners, top ports, a timeline, the protocol split and the newest lines. It streams:
// memory stays bounded however long the file is (see Options for the bounds), so a
// report over years of history runs from cron as easily as over a day.
//
// The summary is written as one self-contained HTML page (WriteHTML) or as JSON
// (WriteJSON). docs/report.md describes both.
package report

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults for Options fields left zero.
const (
	DefaultRows         = 1000
	DefaultTop          = 20
	DefaultHostCapacity = 10000
	DefaultMaxBuckets   = 2000
	DefaultMalformed    = 10
	// maxLine is the longest line read; a longer one is malformed and skipped. Classic
	// lines are under 300 bytes.
	maxLine = 64 << 10
	// maxHourBars: the chart shows hours while the span is at most this many hours.
	maxHourBars = 16 * 24
	// excerptLen caps how much of a malformed line is quoted.
	excerptLen = 120
)

// Options control a report. The zero value is usable.
type Options struct {
	Source string    // the file's name, shown in the report
	Since  time.Time // lines before Since are left out (zero: no bound)
	Until  time.Time // lines at or after Until are left out (zero: no bound)

	Rows         int // newest lines kept for the table (0: DefaultRows, <0: none)
	Top          int // entries in the top scanner and port lists (0: DefaultTop)
	HostCapacity int // hosts counted exactly (0: DefaultHostCapacity)
	MaxBuckets   int // timeline buckets kept while reading (0: DefaultMaxBuckets)
	MaxMalformed int // malformed lines described (0: DefaultMalformed)

	Location *time.Location   // zone of the chart's buckets and labels (nil: time.Local)
	Now      func() time.Time // the generation time (nil: time.Now)
}

func (o *Options) fill() {
	if o.Rows == 0 {
		o.Rows = DefaultRows
	} else if o.Rows < 0 {
		o.Rows = 0
	}
	if o.Top <= 0 {
		o.Top = DefaultTop
	}
	if o.HostCapacity <= 0 {
		o.HostCapacity = DefaultHostCapacity
	}
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = DefaultMaxBuckets
	}
	if o.MaxMalformed <= 0 {
		o.MaxMalformed = DefaultMalformed
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Summary is the result of a report. Its JSON form is the -format json output.
type Summary struct {
	Source    string `json:"source"`
	Generated int64  `json:"generated"` // epoch seconds
	Zone      string `json:"zone"`      // zone of the timeline, e.g. "EET (UTC+02:00)"
	Since     *int64 `json:"since"`     // the requested range, epoch seconds; null: open
	Until     *int64 `json:"until"`

	Lines        int64 `json:"lines"`         // lines read, every kind
	Blank        int64 `json:"blank_lines"`   // empty lines, skipped
	OutsideRange int64 `json:"outside_range"` // good lines outside since/until

	// Probes counts the history lines in range. Each is one acted-on detection, and
	// classic writes one "Blocked" line per acted-on detection whatever BLOCK_TCP/UDP
	// say, so Bans is the same number, under the name operators look for.
	Probes             int64     `json:"probes"`
	Bans               int64     `json:"bans"`
	First              *int64    `json:"first"` // epoch of the earliest line in range
	Last               *int64    `json:"last"`
	DistinctHosts      uint64    `json:"distinct_hosts"`
	DistinctHostsExact bool      `json:"distinct_hosts_exact"`
	Protocols          Protocols `json:"protocols"`

	TopScanners      []Scanner   `json:"top_scanners"`
	TopScannersExact bool        `json:"top_scanners_exact"`
	TopPorts         []PortCount `json:"top_ports"`
	Timeline         Timeline    `json:"timeline"`
	Malformed        Malformed   `json:"malformed"`

	// Rows are the newest lines in range, newest first (HTML only).
	Rows []Row `json:"-"`
	// RowsOmitted is how many lines in range the table leaves out.
	RowsOmitted int64 `json:"-"`
}

// Protocols is the TCP/UDP split of the probes.
type Protocols struct {
	TCP int64 `json:"tcp"`
	UDP int64 `json:"udp"`
}

// Scanner is one entry of the top scanner list.
type Scanner struct {
	Address string `json:"address"`
	Name    string `json:"name"` // the name on the host's latest line ("" when it is the address)
	Probes  uint64 `json:"probes"`
	// MaxOvercount: Probes may exceed the true count by this much (0 when exact).
	MaxOvercount uint64 `json:"max_overcount"`
	// TCP and UDP split the lines counted since the host got its entry: they add up to
	// Probes-MaxOvercount.
	TCP   uint64 `json:"tcp"`
	UDP   uint64 `json:"udp"`
	First int64  `json:"first"` // earliest line counted for the host
	Last  int64  `json:"last"`
}

// PortCount is one entry of the top port list.
type PortCount struct {
	Port   uint16 `json:"port"`
	Proto  string `json:"protocol"`
	Probes uint64 `json:"probes"`
}

// Timeline is the probes per bucket over the span, empty buckets included.
type Timeline struct {
	Unit    string   `json:"unit"` // "hour", "day", "week", "2 weeks", ...
	Buckets []Bucket `json:"buckets"`
}

// Malformed describes the lines that are not history lines.
type Malformed struct {
	Count int64     `json:"count"`
	First []BadLine `json:"first"` // the first few
}

// BadLine is one malformed line.
type BadLine struct {
	Line    int64  `json:"line"` // 1-based
	Reason  string `json:"reason"`
	Excerpt string `json:"excerpt"` // the start of the line, valid UTF-8
}

// Row is one line of the table.
type Row struct {
	Line int64 // line number in the file
	Record
}

// aggregator is the bounded state kept while reading.
type aggregator struct {
	opts         Options
	since, until int64
	hasSince     bool
	hasUntil     bool
	s            Summary
	first, last  int64
	ports        []uint64 // proto<<16 | port
	hosts        *topHosts
	hll          hyperLogLog
	tl           *timeline
	ring         []ringRow
	ringNext     int
	ringFull     bool
}

// ringRow holds one table line; its buffers are reused as the ring turns.
type ringRow struct {
	line  int64
	epoch int64
	buf   []byte // date, name, addr concatenated
	nName int
	nAddr int
	port  uint16
	proto uint8
}

// Build reads a history from r and summarises it. Malformed lines are counted and
// described in the summary, never fatal; the error is for reading r.
func Build(r io.Reader, opts Options) (*Summary, error) {
	a := newAggregator(opts)
	if err := a.read(r); err != nil {
		return nil, err
	}
	return a.finish(), nil
}

func newAggregator(opts Options) *aggregator {
	opts.fill()
	a := &aggregator{
		opts:  opts,
		ports: make([]uint64, 2<<16),
		hosts: newTopHosts(opts.HostCapacity),
		tl:    newTimeline(opts.Location, opts.MaxBuckets),
		ring:  make([]ringRow, opts.Rows),
	}
	if !opts.Since.IsZero() {
		a.since, a.hasSince = opts.Since.Unix(), true
	}
	if !opts.Until.IsZero() {
		a.until, a.hasUntil = opts.Until.Unix(), true
	}
	return a
}

// read adds every line of r.
func (a *aggregator) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			a.s.Lines++
			a.bad(line, reasonTooLong)
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of it
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		} else if len(line) > 0 {
			a.s.Lines++
			a.addLine(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (a *aggregator) addLine(line []byte) {
	trimmed := line
	for len(trimmed) > 0 && (trimmed[len(trimmed)-1] == '\n' || trimmed[len(trimmed)-1] == '\r') {
		trimmed = trimmed[:len(trimmed)-1]
	}
	if len(trimmed) == 0 {
		a.s.Blank++
		return
	}
	v, reason := parseLine(line)
	if reason != "" {
		a.bad(trimmed, reason)
		return
	}
	if a.hasSince && v.epoch < a.since || a.hasUntil && v.epoch >= a.until {
		a.s.OutsideRange++
		return
	}
	if a.s.Probes == 0 {
		a.first, a.last = v.epoch, v.epoch
	}
	a.s.Probes++
	a.first, a.last = min(a.first, v.epoch), max(a.last, v.epoch)
	if v.proto == protoTCP {
		a.s.Protocols.TCP++
	} else {
		a.s.Protocols.UDP++
	}
	a.ports[int(v.proto)<<16|int(v.port)]++
	a.hosts.add(v.key, v.name, v.epoch, v.proto)
	a.hll.add(v.key)
	a.tl.add(v.epoch)
	if len(a.ring) > 0 {
		a.keepRow(&v)
	}
}

func (a *aggregator) keepRow(v *view) {
	r := &a.ring[a.ringNext]
	r.line, r.epoch, r.port, r.proto = a.s.Lines, v.epoch, v.port, v.proto
	r.buf = append(append(append(r.buf[:0], v.date...), v.name...), v.addr...)
	r.nName, r.nAddr = len(v.name), len(v.addr)
	a.ringNext++
	if a.ringNext == len(a.ring) {
		a.ringNext, a.ringFull = 0, true
	}
}

func (a *aggregator) bad(line []byte, reason string) {
	a.s.Malformed.Count++
	if len(a.s.Malformed.First) < a.opts.MaxMalformed {
		a.s.Malformed.First = append(a.s.Malformed.First, BadLine{Line: a.s.Lines, Reason: reason, Excerpt: excerpt(line)})
	}
}

// excerpt returns the start of a line as valid UTF-8 with control characters shown
// as U+FFFD.
func excerpt(b []byte) string {
	b = []byte(strings.TrimRight(string(b[:min(len(b), excerptLen+4)]), "\r\n"))
	cut := len(b) > excerptLen
	if cut {
		b = b[:excerptLen]
	}
	s := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
	if cut {
		s += "…"
	}
	return s
}

func (a *aggregator) finish() *Summary {
	s := &a.s
	o := a.opts
	s.Source = o.Source
	s.Generated = o.Now().Unix()
	if a.hasSince {
		s.Since = &a.since
	}
	if a.hasUntil {
		s.Until = &a.until
	}
	s.Bans = s.Probes
	if s.Probes > 0 {
		s.First, s.Last = &a.first, &a.last
	}
	if a.hosts.exact() {
		s.DistinctHosts, s.DistinctHostsExact = uint64(a.hosts.size()), true
	} else {
		// The estimate cannot be below what the table proves.
		s.DistinctHosts = max(a.hll.estimate(), uint64(a.hosts.size()))
	}

	s.TopScannersExact = a.hosts.exact()
	s.TopScanners = []Scanner{}
	for _, e := range a.hosts.top(o.Top) {
		sc := Scanner{Address: e.key, Name: e.name, Probes: e.count, MaxOvercount: e.err,
			TCP: e.tcp, UDP: e.udp, First: e.first, Last: e.last}
		if sc.Name == sc.Address {
			sc.Name = ""
		}
		s.TopScanners = append(s.TopScanners, sc)
	}
	s.TopPorts = topPorts(a.ports, o.Top)

	// The chart covers the requested range too, so that "-since 24h" shows 24 hours
	// even when the first probe came later.
	if s.Probes > 0 || a.hasSince || a.hasUntil {
		if a.hasSince {
			a.tl.extend(a.since)
		}
		if a.hasUntil {
			a.tl.extend(a.until - 1)
		} else if a.hasSince {
			a.tl.extend(max(s.Generated, a.since))
		}
	}
	level := a.tl.displayLevel(maxHourBars)
	s.Timeline = Timeline{Unit: unitName(level), Buckets: a.tl.buckets(level)}
	if s.Timeline.Buckets == nil {
		s.Timeline.Buckets = []Bucket{}
	}
	s.Zone = zoneName(o.Location, o.Now())
	if s.Malformed.First == nil {
		s.Malformed.First = []BadLine{}
	}
	s.Rows = a.rows()
	s.RowsOmitted = s.Probes - int64(len(s.Rows))
	return s
}

// rows returns the kept lines, newest first (by time, then by position in the file).
func (a *aggregator) rows() []Row {
	n := a.ringNext
	if a.ringFull {
		n = len(a.ring)
	}
	out := make([]Row, 0, n)
	for _, r := range a.ring[:n] {
		d := string(r.buf[:19])
		out = append(out, Row{Line: r.line, Record: Record{
			Epoch: r.epoch, Date: d[:10], Time: d[11:],
			Name: string(r.buf[19 : 19+r.nName]),
			Addr: string(r.buf[19+r.nName : 19+r.nName+r.nAddr]),
			Port: r.port, Proto: protoNames[r.proto],
		}})
	}
	slices.SortFunc(out, func(x, y Row) int {
		if x.Epoch != y.Epoch {
			return cmpInt(y.Epoch, x.Epoch)
		}
		return cmpInt(y.Line, x.Line)
	})
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func topPorts(counts []uint64, n int) []PortCount {
	var out []PortCount
	for i, c := range counts {
		if c > 0 {
			out = append(out, PortCount{Port: uint16(i & 0xffff), Proto: protoNames[i>>16], Probes: c})
		}
	}
	slices.SortFunc(out, func(x, y PortCount) int {
		switch {
		case x.Probes != y.Probes:
			if x.Probes > y.Probes {
				return -1
			}
			return 1
		case x.Port != y.Port:
			return int(x.Port) - int(y.Port)
		}
		return strings.Compare(x.Proto, y.Proto)
	})
	if len(out) > n {
		out = out[:n]
	}
	if out == nil {
		out = []PortCount{}
	}
	return out
}

// zoneName describes loc at t, e.g. "EET (UTC+02:00)" or "UTC".
func zoneName(loc *time.Location, t time.Time) string {
	name, off := t.In(loc).Zone()
	if off == 0 && (name == "UTC" || name == "GMT" || name == "") {
		return "UTC"
	}
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	return name + " (UTC" + string(sign) + pad2(off/3600) + ":" + pad2(off%3600/60) + ")"
}

func pad2(n int) string {
	return string([]byte{byte('0' + n/10%10), byte('0' + n%10)})
}

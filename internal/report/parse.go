package report

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
)

// Record is one parsed history line (SPEC §6):
//
//	1795535595 - 11/24/2026 15:53:15 Host: name.example/10.99.0.2 Port: 143 TCP Blocked
//
// Date, Time, Name and Addr keep the text exactly as written, so that a Record formats
// back to the line it came from.
type Record struct {
	Epoch int64  // seconds since 1970, the time of the detection
	Date  string // MM/DD/YYYY in the writer's local time
	Time  string // HH:MM:SS in the writer's local time
	Name  string // resolved name, or the address again when not resolving
	Addr  string // the numeric address, IPv4 or IPv6
	Port  uint16
	Proto string // "TCP" or "UDP"
}

// String formats r as a history line, without the newline.
func (r Record) String() string {
	return fmt.Sprintf("%d - %s %s Host: %s/%s Port: %d %s Blocked",
		r.Epoch, r.Date, r.Time, r.Name, r.Addr, r.Port, r.Proto)
}

// ParseLine parses one history line. A trailing "\n" or "\r\n" is allowed. Every line
// ParseLine accepts formats back (Record.String) to exactly its text without the line
// ending: the parser accepts only the canonical form classic PortSentry writes.
func ParseLine(line string) (Record, error) {
	v, reason := parseLine([]byte(line))
	if reason != "" {
		return Record{}, errors.New(reason)
	}
	return v.record(), nil
}

// Protocol indexes.
const (
	protoTCP = 0
	protoUDP = 1
)

var protoNames = [2]string{"TCP", "UDP"}

// view is a parsed line whose text fields point into the line's buffer. It is what
// the aggregator works with, so that a line costs no allocation unless something
// about it has to be kept.
type view struct {
	epoch int64
	date  []byte // "MM/DD/YYYY HH:MM:SS"
	name  []byte
	addr  []byte
	key   []byte // addr, canonicalised (differs only for non-canonical IPv6 text)
	port  uint16
	proto uint8
}

func (v *view) record() Record {
	return Record{
		Epoch: v.epoch,
		Date:  string(v.date[:10]),
		Time:  string(v.date[11:]),
		Name:  string(v.name),
		Addr:  string(v.addr),
		Port:  v.port,
		Proto: protoNames[v.proto],
	}
}

// Reasons a line is malformed. They are constants so that a bad line costs no
// allocation; each names the first thing found wrong, reading from the end of the line
// (a line cut short by a crash or a full disk fails the first test).
const (
	reasonEnd      = `does not end in "TCP Blocked" or "UDP Blocked" (truncated, or not a history line)`
	reasonPort     = `no valid "Port: N" (0..65535) before the protocol`
	reasonEpoch    = `does not start with "EPOCH - " (decimal seconds)`
	reasonDate     = `no valid "MM/DD/YYYY HH:MM:SS Host: " after the epoch`
	reasonHost     = `host field is not NAME/ADDRESS`
	reasonName     = `host name is empty or contains a blank or control character`
	reasonAddr     = `address after the last "/" is not an IPv4 or IPv6 address`
	reasonMismatch = `date and time are more than 15 hours away from the epoch`
	reasonTooLong  = `line longer than 64 KiB`
)

var (
	sufBlocked = []byte(" Blocked")
	sepPort    = []byte(" Port: ")
	sepHost    = []byte(" Host: ")
)

// maxSkew bounds the difference between the written local date/time and the epoch:
// UTC offsets run from -12:00 to +14:00.
const maxSkew = 15 * 3600

// parseLine parses b (the line ending is allowed) and returns the view, or the reason
// the line is malformed.
func parseLine(b []byte) (v view, reason string) {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})

	// From the end: " TCP Blocked" / " UDP Blocked".
	if !bytes.HasSuffix(b, sufBlocked) || len(b) < len(sufBlocked)+4 {
		return v, reasonEnd
	}
	rest := b[:len(b)-len(sufBlocked)]
	switch string(rest[len(rest)-4:]) {
	case " TCP":
		v.proto = protoTCP
	case " UDP":
		v.proto = protoUDP
	default:
		return v, reasonEnd
	}
	rest = rest[:len(rest)-4]

	// " Port: N".
	i := len(rest)
	for i > 0 && isDigit(rest[i-1]) {
		i--
	}
	port, ok := parseUint(rest[i:], 65535)
	if !ok || !bytes.HasSuffix(rest[:i], sepPort) {
		return v, reasonPort
	}
	v.port = uint16(port)
	rest = rest[:i-len(sepPort)]

	// From the start: "EPOCH - MM/DD/YYYY HH:MM:SS Host: ".
	j := 0
	for j < len(rest) && isDigit(rest[j]) {
		j++
	}
	epoch, ok := parseUint(rest[:j], 1<<40)
	if !ok || !bytes.HasPrefix(rest[j:], []byte(" - ")) {
		return v, reasonEpoch
	}
	v.epoch = int64(epoch)
	rest = rest[j+3:]
	const dateLen = len("MM/DD/YYYY HH:MM:SS")
	if len(rest) < dateLen+len(sepHost) || !bytes.Equal(rest[dateLen:dateLen+len(sepHost)], sepHost) {
		return v, reasonDate
	}
	v.date = rest[:dateLen]
	civil, ok := parseDate(v.date)
	if !ok {
		return v, reasonDate
	}
	host := rest[dateLen+len(sepHost):]

	// "NAME/ADDRESS": the address follows the last slash (addresses never hold one).
	slash := bytes.LastIndexByte(host, '/')
	if slash < 0 {
		return v, reasonHost
	}
	v.name, v.addr = host[:slash], host[slash+1:]
	if len(v.name) == 0 || !validName(v.name) {
		return v, reasonName
	}
	v.key, ok = addrKey(v.addr)
	if !ok {
		return v, reasonAddr
	}
	if d := civil - v.epoch; d > maxSkew || d < -maxSkew {
		return v, reasonMismatch
	}
	return v, ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseUint parses canonical decimal (no sign, no leading zero) up to max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' || len(b) > 15 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= max
}

// digits parses exactly len(b) decimal digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseDate checks "MM/DD/YYYY HH:MM:SS" and returns it as seconds since 1970 read as
// if it were UTC (the "civil" time), for comparison with the epoch.
func parseDate(b []byte) (int64, bool) {
	if b[2] != '/' || b[5] != '/' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	mo, ok1 := digits(b[0:2])
	d, ok2 := digits(b[3:5])
	y, ok3 := digits(b[6:10])
	h, ok4 := digits(b[11:13])
	mi, ok5 := digits(b[14:16])
	s, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 60 {
		return 0, false
	}
	return daysFromCivil(y, mo, d)*86400 + int64(h*3600+mi*60+s), true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date
// (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// validName rejects what no resolver or classic's own formatting can produce: blanks
// and control characters (they would also break every other reader of the file).
func validName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// addrKey validates an address and returns the key that identifies the host: the text
// itself for IPv4 (checked without allocating) and canonical IPv6 text otherwise.
func addrKey(b []byte) ([]byte, bool) {
	if ipv4(b) {
		return b, true
	}
	if bytes.IndexByte(b, ':') < 0 {
		return nil, false
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return nil, false
	}
	if c := a.String(); c != string(b) {
		return []byte(c), true
	}
	return b, true
}

// ipv4 reports whether b is a dotted quad as inet_ntoa writes it (no leading zeros).
func ipv4(b []byte) bool {
	parts := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '.')
		field := b
		if i >= 0 {
			field, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return false // trailing dot
			}
		} else {
			b = nil
		}
		if _, ok := parseUint(field, 255); !ok {
			return false
		}
		parts++
	}
	return parts == 4
}

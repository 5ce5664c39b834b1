package packet

import "fmt"

// The classic scan names (SPEC §3), byte for byte as PortSentry 1.2 logs them. The NULL
// scan's leading space is classic's own and existing log parsers expect it.
const (
	ScanNULL = " TCP NULL scan"
	ScanXMAS = "TCP XMAS scan"
	ScanFIN  = "TCP FIN scan"
	ScanSYN  = "TCP SYN/Normal scan"
)

// scanNames holds the name of every one of the 64 flag sets, built once, so that
// Classify never formats or allocates per packet, not even for "Unknown Type" strings.
var scanNames = func() (t [flagMask + 1]string) {
	for f := range t {
		t[f] = classic(uint8(f))
	}
	return t
}()

// Classify names a TCP flag set the way classic PortSentry does; ECE and CWR are ignored.
//
// The rules are tried in order and the first match wins. XMAS is FIN, URG and PSH all
// set, whatever the other flags: classic 1.2 tests exactly `fin && urg && psh` (so
// SYN|FIN|PSH|URG is an XMAS scan too), and SPEC §3 says "FIN+URG+PSH" with no "only",
// unlike the FIN and SYN rules. nmap -sX sends FIN|PSH|URG, which matches either reading.
func Classify(flags uint8) string {
	return scanNames[flags&flagMask]
}

// Candidate reports whether a TCP packet with these flags may be a stealth hit at all.
// ACK or RST means the packet belongs to a real connection or is backscatter from
// someone else's spoofed traffic (SPEC §3), so it never is.
func Candidate(flags uint8) bool {
	return flags&(FlagACK|FlagRST) == 0
}

// classic is the rule table itself; it runs only to fill scanNames.
func classic(f uint8) string {
	const xmas = FlagFIN | FlagURG | FlagPSH
	switch {
	case f == 0:
		return ScanNULL
	case f&xmas == xmas:
		return ScanXMAS
	case f == FlagFIN:
		return ScanFIN
	case f == FlagSYN:
		return ScanSYN
	}
	return fmt.Sprintf("Unknown Type: TCP Packet Flags: SYN: %d FIN: %d ACK: %d PSH: %d URG: %d RST: %d",
		bit(f, FlagSYN), bit(f, FlagFIN), bit(f, FlagACK), bit(f, FlagPSH), bit(f, FlagURG), bit(f, FlagRST))
}

func bit(f, mask uint8) int {
	if f&mask != 0 {
		return 1
	}
	return 0
}

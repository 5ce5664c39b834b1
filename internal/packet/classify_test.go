package packet

import (
	"fmt"
	"testing"
)

// classicC transcribes PortSentry 1.2's ReportPacketType as literally as Go allows: one
// boolean per flag and the same if/else chain, so Classify is checked against the
// original logic rather than against itself.
func classicC(flags uint8) string {
	b := func(mask uint8) int {
		if flags&mask != 0 {
			return 1
		}
		return 0
	}
	syn, fin, ack, psh, urg, rst := b(0x02), b(0x01), b(0x10), b(0x08), b(0x20), b(0x04)
	if syn == 0 && fin == 0 && ack == 0 && psh == 0 && rst == 0 && urg == 0 {
		return " TCP NULL scan"
	} else if fin == 1 && urg == 1 && psh == 1 {
		return "TCP XMAS scan"
	} else if fin == 1 && syn != 1 && ack != 1 && psh != 1 && rst != 1 && urg != 1 {
		return "TCP FIN scan"
	} else if syn == 1 && fin != 1 && ack != 1 && psh != 1 && rst != 1 && urg != 1 {
		return "TCP SYN/Normal scan"
	}
	return fmt.Sprintf("Unknown Type: TCP Packet Flags: SYN: %d FIN: %d ACK: %d PSH: %d URG: %d RST: %d",
		syn, fin, ack, psh, urg, rst)
}

func TestClassifyAllCombinations(t *testing.T) {
	for f := range 64 {
		if got, want := Classify(uint8(f)), classicC(uint8(f)); got != want {
			t.Errorf("Classify(%#02x) = %q, want %q", f, got, want)
		}
	}
}

// TestClassifyIgnoresECN: ECE (0x40) and CWR (0x80) never change the name, so an
// ECN-setup SYN (SYN|ECE|CWR, sent by Linux with net.ipv4.tcp_ecn=1) is still a SYN scan.
func TestClassifyIgnoresECN(t *testing.T) {
	for f := range 256 {
		if got, want := Classify(uint8(f)), classicC(uint8(f)&0x3f); got != want {
			t.Errorf("Classify(%#02x) = %q, want %q", f, got, want)
		}
	}
	if got := Classify(FlagSYN | 0x40 | 0x80); got != ScanSYN {
		t.Errorf("ECN SYN = %q", got)
	}
}

// TestClassifyNmap pins the exact strings for the packets nmap's stealth scans send.
func TestClassifyNmap(t *testing.T) {
	for _, c := range []struct {
		scan  string
		flags uint8
		want  string
	}{
		{"-sS", 0x02, "TCP SYN/Normal scan"},
		{"-sF", 0x01, "TCP FIN scan"},
		{"-sN", 0x00, " TCP NULL scan"},
		{"-sX", 0x29, "TCP XMAS scan"},
		{"hping3 -SFPU", 0x2b, "TCP XMAS scan"},
		{"-sM (FIN|ACK)", 0x11, "Unknown Type: TCP Packet Flags: SYN: 0 FIN: 1 ACK: 1 PSH: 0 URG: 0 RST: 0"},
		{"SYN|FIN", 0x03, "Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0"},
		{"FIN|PSH", 0x09, "Unknown Type: TCP Packet Flags: SYN: 0 FIN: 1 ACK: 0 PSH: 1 URG: 0 RST: 0"},
		{"URG only", 0x20, "Unknown Type: TCP Packet Flags: SYN: 0 FIN: 0 ACK: 0 PSH: 0 URG: 1 RST: 0"},
		{"all six", 0x3f, "TCP XMAS scan"},
	} {
		if got := Classify(c.flags); got != c.want {
			t.Errorf("nmap %s (%#02x): Classify = %q, want %q", c.scan, c.flags, got, c.want)
		}
	}
	if ScanNULL != " TCP NULL scan" || ScanXMAS != "TCP XMAS scan" || ScanFIN != "TCP FIN scan" || ScanSYN != "TCP SYN/Normal scan" {
		t.Error("exported scan-name constants differ from the classic strings")
	}
}

func TestCandidate(t *testing.T) {
	for f := range 256 {
		ack, rst := f&0x10 != 0, f&0x04 != 0
		if got, want := Candidate(uint8(f)), !ack && !rst; got != want {
			t.Errorf("Candidate(%#02x) = %v, want %v", f, got, want)
		}
	}
	for _, f := range []uint8{0x00, 0x01, 0x02, 0x29, 0xc2} { // NULL FIN SYN XMAS ECN-SYN
		if !Candidate(f) {
			t.Errorf("Candidate(%#02x) = false for a stealth scan packet", f)
		}
	}
}

func TestClassifyNoAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for f := range 256 {
			_ = Classify(uint8(f))
		}
	})
	if allocs != 0 {
		t.Errorf("Classify allocates %.1f times per run", allocs)
	}
}

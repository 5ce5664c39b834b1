//go:build linux

package listening

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/portsentry-go/portsentry/internal/probe"
)

// procNetDir is read when sock_diag is unavailable. thread-self (not self, which is
// the main thread) so that a thread that joined another network namespace reads that
// namespace's tables.
var procNetDir = "/proc/thread-self/net"

// readProc reads the fallback file of one kind. A missing file means the family is
// disabled (ipv6.disable=1): no sockets, not an error.
func readProc(k kind) ([]listener, error) {
	data, err := os.ReadFile(filepath.Join(procNetDir, k.proc))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ls, err := parseProcNet(data, k.proto, binary.NativeEndian)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.proc, err)
	}
	return ls, nil
}

// parseProcNet extracts the listeners from the contents of /proc/net/{tcp,tcp6,udp,udp6}.
// The kernel prints addresses as 32-bit words in host byte order, hence order (tests
// pass the order of the machine the sample was captured on). /proc has no v6only
// flag, so an IPv6 wildcard is taken as dual-stack, Linux's default.
func parseProcNet(data []byte, proto probe.Proto, order binary.ByteOrder) ([]listener, error) {
	var out []listener
	for i, line := range bytes.Split(data, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || (i == 0 && string(f[0]) == "sl") {
			continue // blank, or the column header
		}
		l, ok, err := parseProcLine(f, proto, order)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// parseProcLine reads "sl: local remote st ...": the slot number, local and remote
// address:port, and the state in hex.
func parseProcLine(f [][]byte, proto probe.Proto, order binary.ByteOrder) (l listener, ok bool, err error) {
	if len(f) < 4 || !bytes.HasSuffix(f[0], []byte(":")) {
		return l, false, errors.New("not a socket line")
	}
	local, lport, err := parseProcAddr(f[1], order)
	if err != nil {
		return l, false, fmt.Errorf("local address: %w", err)
	}
	_, _, err = parseProcAddr(f[2], order) // validated only: the peer does not decide
	if err != nil {
		return l, false, fmt.Errorf("remote address: %w", err)
	}
	state, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil {
		return l, false, fmt.Errorf("state: %w", err)
	}
	if !takesPackets(proto, uint8(state)) {
		return l, false, nil
	}
	return newListener(proto, local, lport, false), true, nil
}

// parseProcAddr decodes "0100007F:03E9" (IPv4) or 32 hex digits and a port (IPv6).
func parseProcAddr(b []byte, order binary.ByteOrder) (netip.Addr, uint16, error) {
	hexAddr, hexPort, found := bytes.Cut(b, []byte(":"))
	if !found {
		return netip.Addr{}, 0, fmt.Errorf("%q: no port", b)
	}
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("port: %w", err)
	}
	var raw [16]byte
	if len(hexAddr) != 8 && len(hexAddr) != 32 {
		return netip.Addr{}, 0, fmt.Errorf("%q: want 8 or 32 hex digits", hexAddr)
	}
	for i := 0; i < len(hexAddr); i += 8 {
		w, err := strconv.ParseUint(string(hexAddr[i:i+8]), 16, 32)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("address: %w", err)
		}
		order.PutUint32(raw[i/2:], uint32(w))
	}
	if len(hexAddr) == 8 {
		return netip.AddrFrom4([4]byte(raw[:4])), uint16(port), nil
	}
	return netip.AddrFrom16(raw), uint16(port), nil
}

// Package capture is the packet source of the stealth modes (-stcp -sudp -atcp -audp).
//
// It reads from an AF_PACKET socket of type SOCK_DGRAM (so every frame starts at the
// IP header, whatever the link type) through a TPACKET_V3 memory-mapped ring, and it
// installs a classic BPF program in the kernel so that only candidate packets reach user
// space: inbound IPv4/IPv6 packets addressed to this host that are TCP without ACK and
// RST, or UDP, to a watched destination port, and fragments of TCP or UDP. Established connections, outgoing traffic,
// broadcasts and everything that is not TCP or UDP are dropped by the kernel before they
// are copied anywhere, so they cost the daemon nothing. (With Filter.UDPReplies the
// datagrams this host sends from a watched UDP port pass too, marked Info.Outgoing.)
//
// The kernel filter is a prefilter, not the final word. User space must still decode the
// packet (internal/packet) and check the destination port against the exact watched set,
// because:
//   - an IPv6 packet whose transport header follows extension headers is passed up
//     unexamined (walking the chain in classic BPF is not worth it; it is rare);
//   - every IPv4 or IPv6 fragment of a watched protocol, first or not, is passed up
//     unexamined: its ports and flags may be in another fragment (nmap -f puts the TCP
//     flags in the second), and user space reassembles them (packet.Reassembler);
//   - Coarsen and Filter.Fit widen the port set when the exact one does not fit in a
//     kernel program;
//   - after SetFilter the ring may still hold packets accepted by the previous filter.
//
// Only the first Snaplen bytes of a packet are captured: enough for any IPv4 header with
// options plus a TCP header with options, which is all the sensors look at.
package capture

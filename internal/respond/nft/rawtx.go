package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Set elements are added and deleted with netlink messages built here rather than
// with the library's SetAddElements/SetDestroyElements, for two reasons found on the
// kernel (6.18):
//
//   - Re-adding an element restarts its timeout only when the message carries
//     NFTA_SET_ELEM_EXPIRATION (or a timeout different from the stored one); the
//     library cannot send that attribute.
//   - DESTROYSETELEM on an interval set whose start element has expired but not yet
//     been reaped skips the start and removes the end element. The rbtree's garbage
//     collector then pairs the orphaned start with the end element of the next range
//     up and deletes that: 10.0.0.3 (expired) and 10.0.0.100 turn into 10.0.0.100 -
//     10.0.0.199, or, with nothing above, a range to 255.255.255.255. Destroy+add as
//     a refresh does the same. So elements are removed only with DELSETELEM, whose
//     failure on an absent or expired start aborts the whole transaction, never
//     leaving half an interval; see Backend.remove for how absent ones are skipped.

const (
	msgNewSetElem = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)
	msgDelSetElem = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELSETELEM)

	// maxMsgElems bounds the elements in one netlink message: their list is one
	// attribute, whose length field is 16 bits (the overflow behind v0.3.0's silent
	// drops). 512 IPv6 start elements with timeouts are about 27 KiB.
	maxMsgElems = 512
)

// elem is one set element: the start of an interval (with the ban's timeout) or its
// end.
type elem struct {
	key     []byte
	end     bool
	timeout time.Duration // start elements only; 0 = permanent
}

// elemsOf gives the elements of prefix p: the start and, unless p reaches the top of
// the address space (an open interval), the end = last address + 1.
func elemsOf(p netip.Prefix, timeout time.Duration) []elem {
	iv := toInterval(p)
	els := []elem{{key: iv.start, timeout: timeout}}
	if iv.end != nil {
		els = append(els, elem{key: iv.end, end: true})
	}
	return els
}

// rangeElems gives the elements of a stored range, for deleting it.
func rangeElems(r decoded) []elem {
	els := []elem{{key: r.start.AsSlice()}}
	if r.end.IsValid() {
		els = append(els, elem{key: r.end.AsSlice(), end: true})
	}
	return els
}

// tx is one nf_tables transaction under construction.
type tx struct {
	table string
	msgs  []netlink.Message
	n     int // elements
}

func (t *tx) add(set string, els []elem) {
	t.elems(msgNewSetElem, netlink.Request|netlink.Create, set, els)
}
func (t *tx) del(set string, els []elem) { t.elems(msgDelSetElem, netlink.Request, set, els) }

func (t *tx) elems(typ netlink.HeaderType, flags netlink.HeaderFlags, set string, els []elem) {
	for len(els) > 0 {
		n := min(len(els), maxMsgElems)
		part := els[:n]
		els = els[n:]
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, t.table)
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
			for _, e := range part {
				list.Nested(unix.NFTA_LIST_ELEM, func(a *netlink.AttributeEncoder) error {
					a.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
						k.Bytes(unix.NFTA_DATA_VALUE, e.key)
						return nil
					})
					if e.end {
						a.Uint32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
					}
					if e.timeout > 0 && typ == msgNewSetElem {
						ms := uint64(e.timeout.Milliseconds())
						a.Uint64(unix.NFTA_SET_ELEM_TIMEOUT, ms)
						// The expiration makes a re-add restart the timer (kernel 6.10+).
						a.Uint64(unix.NFTA_SET_ELEM_EXPIRATION, ms)
					}
					return nil
				})
			}
			return nil
		})
		data, err := ae.Encode()
		if err != nil {
			panic(fmt.Sprintf("nft: encoding set elements: %v", err)) // only on a programming error
		}
		t.msgs = append(t.msgs, netlink.Message{
			Header: netlink.Header{Type: typ, Flags: flags},
			Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
		})
		t.n += n
	}
}

// batchHeader is the nfgenmsg of the batch begin and end messages: resource id is the
// nftables subsystem, big-endian.
var batchHeader = []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}

// commit sends t as one batch and returns the first error the kernel reports. The
// kernel handles a batch synchronously inside sendmsg, so when that returns every
// reply is queued: they are read without waiting.
func (b *Backend) commit(t *tx) error {
	if len(t.msgs) == 0 {
		return nil
	}
	msgs := make([]netlink.Message, 0, len(t.msgs)+2)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: batchHeader})
	msgs = append(msgs, t.msgs...)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: batchHeader})
	if _, err := b.raw.SendMessages(msgs); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	rc, err := b.raw.SyscallConn()
	if err != nil {
		return err
	}
	var first error
	buf := b.rbuf
	for {
		var n int
		var rerr error
		if err := rc.Control(func(fd uintptr) {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
		}); err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return first
		}
		if rerr != nil {
			return fmt.Errorf("receive batch replies: %w", rerr)
		}
		replies, err := netlinkParse(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range replies {
			if m.Header.Type != netlink.Error || len(m.Data) < 4 {
				continue
			}
			code := int32(binary.NativeEndian.Uint32(m.Data))
			if code != 0 && first == nil {
				first = fmt.Errorf("%s: %w", msgName(m.Data[4:]), unix.Errno(-code))
			}
		}
	}
}

// msgName names the message an error refers to (the echoed header after the code).
func msgName(h []byte) string {
	if len(h) < 6 {
		return "batch"
	}
	switch netlink.HeaderType(binary.NativeEndian.Uint16(h[4:6])) {
	case msgNewSetElem:
		return "NFT_MSG_NEWSETELEM"
	case msgDelSetElem:
		return "NFT_MSG_DELSETELEM"
	}
	return "batch"
}

// dialRaw opens the second netlink socket, used for element transactions.
func dialRaw(ns int) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns})
	if err != nil {
		return nil, err
	}
	// Errors then echo only the header of the failed message, not its elements.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	if err := tuneSocket(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

package bans

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/atomicfile"
	"github.com/portsentry-go/portsentry/internal/regfile"
)

// compact rewrites the journal with one record per active ban and one per remembered
// offence count, then swaps it in with rename, so a crash leaves either the old file or
// the new one, never a mix. The caller holds j.mu.
func (j *Journal) compact() error {
	var n int
	err := atomicfile.Write(j.path, atomicfile.Options{Perm: 0o640}, func(w io.Writer) (err error) {
		n, err = j.writeSnapshot(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("ban journal compaction: %w", err)
	}
	nf, err := regfile.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("ban journal compaction: %w", err)
	}
	// The lock stays with the file now at the path (the old one is unlinked).
	if err := syscall.Flock(int(nf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		nf.Close()
		return fmt.Errorf("ban journal compaction: lock: %w", err)
	}
	j.w.Close()
	j.w = appendfile.New(nf)
	j.records = n
	return nil
}

// writeSnapshot writes the current state as records and returns how many.
func (j *Journal) writeSnapshot(f io.Writer) (int, error) {
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	n := 0
	var err error
	j.offences.Oldest(func(p netip.Prefix, count int) {
		if _, ok := j.active[p]; ok || err != nil {
			return
		}
		// An "expire" record of a ban that is over carries the offence count forward.
		err = enc.Encode(record{Op: OpExpire, Prefix: p.String(), Offences: count})
		n++
	})
	for _, b := range j.active {
		if err != nil {
			break
		}
		err = enc.Encode(record{Op: OpBan, Prefix: b.Prefix.String(), At: toMillis(b.Start), Until: toMillis(b.Until), Offences: b.Offences, Reason: b.Reason})
		n++
	}
	if err != nil {
		return 0, err
	}
	return n, w.Flush()
}

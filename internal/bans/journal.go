package bans

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/fifo"
	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/portsentry-go/portsentry/internal/respond"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrLocked means another process has the journal open.
var ErrLocked = errors.New("in use by another process")

// offenceMemory bounds how many prefixes' offence counts are remembered once their bans
// are over (about 100 bytes each): enough for escalation, bounded under floods.
const offenceMemory = 65536

// Journal is the ban journal. It is safe for concurrent use.
type Journal struct {
	mu       sync.Mutex
	path     string
	w        *appendfile.File // nil once closed
	active   map[netip.Prefix]Ban
	remote   int // active bans from other fleet hosts
	offences *fifo.Map[netip.Prefix, int]
	records  int // records in the file, for deciding when to compact
	// compactAt is the record count below which a compaction that failed (a full
	// disk) is not tried again, so that it is not retried at every ban.
	compactAt int
}

// Replay tells what Open found in the file.
type Replay struct {
	Records int   // valid records read
	Corrupt []int // line numbers of invalid lines that were skipped
	Torn    bool  // the last line was incomplete (a crash mid-write) and was cut off
	// Expired are bans that ran out while the daemon was down; Open records their expiry.
	Expired []Ban
	// ExpireErr is why recording those expiries failed (a full disk). It does not keep
	// the journal from opening: the bans stay active in it until the manager's expiry
	// tick records them, and nothing re-asserts them meanwhile, their time being up.
	ExpireErr error
}

// Open replays the journal at path (creating it and its directory if needed), records
// the expiry of bans that ran out before now, and opens it for appending.
func Open(path string, now time.Time) (*Journal, Replay, error) {
	j := &Journal{path: path, active: map[netip.Prefix]Ban{}, offences: fifo.New[netip.Prefix, int](offenceMemory)}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, Replay{}, fmt.Errorf("ban journal: %w", err)
	}
	// A regular file only: the replay of a FIFO would wait for a writer for ever, and
	// a device (/dev/null) would keep no ban.
	f, err := regfile.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, Replay{}, fmt.Errorf("ban journal: %w", err)
	}
	// One process per journal: two would each replay, compact and overwrite the other's
	// records. The lock goes with the file descriptor, so a crash releases it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, Replay{}, fmt.Errorf("ban journal %s: %w", path, ErrLocked)
		}
		return nil, Replay{}, fmt.Errorf("ban journal %s: lock: %w", path, err)
	}
	rep, good, err := j.replay(f)
	if err == nil && rep.Torn {
		err = f.Truncate(good) // new records must not be glued onto half a line
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekEnd)
	}
	if err != nil {
		f.Close()
		return nil, Replay{}, fmt.Errorf("ban journal %s: %w", path, err)
	}
	j.w = appendfile.New(f)
	rep.Expired, rep.ExpireErr = j.Lift(OpExpire, j.Due(now), now)
	return j, rep, nil
}

// replay applies every valid line of r and returns the offset just past the last
// complete line.
func (j *Journal) replay(r io.Reader) (Replay, int64, error) {
	var rep Replay
	var good int64
	br := bufio.NewReaderSize(r, 1<<16)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] != '\n' {
			rep.Torn = true // a final line without its newline: cut off mid-write
			break
		}
		if len(b) > 0 {
			good += int64(len(b))
			if j.applyLine(bytes.TrimSpace(b)) {
				rep.Records++
			} else {
				rep.Corrupt = append(rep.Corrupt, line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, good, err
		}
	}
	j.records = rep.Records
	return rep, good, nil
}

func (j *Journal) applyLine(b []byte) bool {
	var r record
	if json.Unmarshal(b, &r) != nil {
		return false
	}
	p, err := netip.ParsePrefix(r.Prefix)
	if err != nil || p != p.Masked() {
		return false
	}
	switch r.Op {
	case OpBan:
		j.put(Ban{Prefix: p, Start: fromMillis(r.At), Until: fromMillis(r.Until), Reason: r.Reason, Offences: r.Offences})
	case OpUnban, OpExpire:
		j.del(p)
	default:
		return false
	}
	if r.Offences > offence(j.offences, p) {
		j.offences.Set(p, r.Offences)
	}
	return true
}

// NextOffence is the offence number a new ban of p would have (1 for a first ban).
// An active ban that is banned again keeps its number.
func (j *Journal) NextOffence(p netip.Prefix) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if b, ok := j.active[p]; ok {
		return b.Offences
	}
	return offence(j.offences, p) + 1
}

// Add records bans and returns them as stored (with their offence numbers). A prefix
// that is already banned gets the new ban's times: a repeat detection renews it.
func (j *Journal) Add(bans ...Ban) ([]Ban, error) {
	out, err := j.AddNoSync(bans...)
	if err == nil {
		err = j.Sync()
	}
	return out, err
}

// AddNoSync is Add without the fsync: the records are written (a crash of the process
// cannot lose them) but not yet forced to disk. The daemon puts the bans in the kernel
// and then calls Sync, so the disk's latency is not between probe and ban.
//
// When the write fails (a full disk) nothing is recorded, nothing of it is left in the
// file, and it returns no bans. When only the compaction that may follow fails, the
// bans are recorded and returned with the error.
func (j *Journal) AddNoSync(bans ...Ban) ([]Ban, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Ban, len(bans))
	recs := make([]record, len(bans))
	for i, b := range bans {
		b.Prefix = b.Prefix.Masked()
		if old, ok := j.active[b.Prefix]; ok {
			b.Offences = old.Offences
			b.Reason.Classic = mergeDone(old.Reason.Classic, b.Reason.Classic) // a renewal keeps them
		} else {
			b.Offences = offence(j.offences, b.Prefix) + 1
		}
		out[i] = b
		recs[i] = record{Op: OpBan, Prefix: b.Prefix.String(), At: toMillis(b.Start), Until: toMillis(b.Until), Offences: b.Offences, Reason: b.Reason}
	}
	if err := j.append(recs); err != nil {
		return nil, err
	}
	for _, b := range out {
		j.put(b)
		j.offences.Set(b.Prefix, b.Offences)
	}
	return out, j.compactIfGrown()
}

// Sync forces what was written to disk.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w == nil {
		return errors.New("ban journal is closed")
	}
	if err := j.w.Sync(); err != nil {
		return fmt.Errorf("ban journal: %w", err)
	}
	return nil
}

// Note records in p's active ban what the classic KILL_ actions did for one address
// under it (they run after the ban is made), replacing what was noted for that address;
// false when p is not banned.
func (j *Journal) Note(p netip.Prefix, d respond.Done) (bool, error) {
	if ok, err := j.note(p, d); !ok || err != nil {
		return ok, err
	}
	return true, j.Sync()
}

func (j *Journal) note(p netip.Prefix, d respond.Done) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, ok := j.active[p.Masked()]
	if !ok {
		return false, nil
	}
	b.Reason.Classic = mergeDone(b.Reason.Classic, []respond.Done{d})
	rec := record{Op: OpBan, Prefix: b.Prefix.String(), At: toMillis(b.Start), Until: toMillis(b.Until), Offences: b.Offences, Reason: b.Reason}
	if err := j.append([]record{rec}); err != nil {
		return true, err
	}
	j.put(b)
	return true, nil
}

// Lift ends the active bans among prefixes (op is OpUnban or OpExpire) and returns the
// bans it ended. Prefixes that are not banned are skipped, so lifting twice is harmless.
func (j *Journal) Lift(op Op, prefixes []netip.Prefix, at time.Time) ([]Ban, error) {
	ended, err := j.lift(op, prefixes, at)
	if err == nil && len(ended) > 0 {
		err = j.Sync()
	}
	return ended, err
}

func (j *Journal) lift(op Op, prefixes []netip.Prefix, at time.Time) ([]Ban, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var ended []Ban
	var recs []record
	for _, p := range prefixes {
		b, ok := j.active[p.Masked()]
		if !ok {
			continue
		}
		ended = append(ended, b)
		recs = append(recs, record{Op: op, Prefix: b.Prefix.String(), At: toMillis(at), Offences: b.Offences})
	}
	if err := j.append(recs); err != nil {
		return nil, err
	}
	for _, b := range ended {
		j.del(b.Prefix)
	}
	return ended, nil
}

// Due lists the active bans that have run out at now.
func (j *Journal) Due(now time.Time) []netip.Prefix {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []netip.Prefix
	for p, b := range j.active {
		if b.Expired(now) {
			out = append(out, p)
		}
	}
	return out
}

// Active returns the active bans, oldest first.
func (j *Journal) Active() []Ban {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Ban, 0, len(j.active))
	for _, b := range j.active {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Ban) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out
}

// Get returns the active ban of exactly p.
func (j *Journal) Get(p netip.Prefix) (Ban, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, ok := j.active[p.Masked()]
	return b, ok
}

// put makes b the active ban of its prefix, keeping the remote count. The caller holds
// j.mu (or has the journal to itself, replaying).
func (j *Journal) put(b Ban) {
	j.del(b.Prefix)
	j.active[b.Prefix] = b
	if b.Remote() {
		j.remote++
	}
}

// del ends p's active ban, if any; the caller holds j.mu.
func (j *Journal) del(p netip.Prefix) {
	if old, ok := j.active[p]; ok {
		delete(j.active, p)
		if old.Remote() {
			j.remote--
		}
	}
}

// Remote is the number of active bans from other fleet hosts.
func (j *Journal) Remote() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.remote
}

// Len is the number of active bans.
func (j *Journal) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.active)
}

// Close closes the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w == nil {
		return nil
	}
	err := j.w.Close()
	j.w = nil
	return err
}

// append writes records in one write; a failed one leaves nothing in the file.
func (j *Journal) append(recs []record) error {
	if len(recs) == 0 {
		return nil
	}
	if j.w == nil {
		return errors.New("ban journal is closed")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode adds the newline
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if err := j.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("ban journal: %w", err)
	}
	j.records += len(recs)
	return nil
}

// compactIfGrown compacts when the file has grown well beyond what it needs to hold.
// Only new bans call it: lifts add at most one record per ban, so they cannot grow the
// file much between two bans, and their callers need not tell a failed compaction
// from a failed lift.
func (j *Journal) compactIfGrown() error {
	if j.records <= compactFloor || j.records <= 4*(len(j.active)+j.offences.Len()) || j.records < j.compactAt {
		return nil
	}
	if err := j.compact(); err != nil {
		j.compactAt = j.records + compactFloor
		return err
	}
	return nil
}

// compactFloor keeps small journals from being rewritten over and over.
const compactFloor = 10000

// offence is p's remembered offence count, 0 if none.
func offence(m *fifo.Map[netip.Prefix, int], p netip.Prefix) int {
	n, _ := m.Get(p)
	return n
}

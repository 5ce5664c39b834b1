package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// writeTimeout bounds how long a response may wait for a client that does not read.
const writeTimeout = 5 * time.Second

// probeTimeout bounds the dial that tells a live daemon from a stale socket file.
const probeTimeout = time.Second

// Server serves the control socket. Create it with Listen; stop it with Close.
type Server struct {
	path string
	svc  Service
	log  *slog.Logger
	ln   *net.UnixListener

	idle   time.Duration              // IdleTimeout; shorter in tests
	peerOK func(uid uint32) bool      // who may talk to the daemon
	conns  map[*net.UnixConn]struct{} // live connections, guarded by mu
	mu     sync.Mutex
	closed bool // guarded by mu
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// ErrRunning is Listen's error when another daemon answers on the socket.
var ErrRunning = errors.New("another portsentry is running")

// Listen creates the control socket at path and serves it in goroutines until Close.
// The parent directory is created (mode 0750) if missing. A socket file that nothing
// answers on is replaced; if a daemon answers, Listen fails with ErrRunning. The socket gets mode 0600 and, when running as root, owner root. log
// may be nil.
func Listen(path string, svc Service, log *slog.Logger) (*Server, error) {
	euid := uint32(os.Geteuid())
	return listen(path, svc, log, IdleTimeout, func(uid uint32) bool { return uid == 0 || uid == euid })
}

func listen(path string, svc Service, log *slog.Logger, idle time.Duration, peerOK func(uint32) bool) (*Server, error) {
	if svc == nil {
		return nil, errors.New("control socket: no service")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the file itself, after the goroutines are gone.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fail(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 0, 0); err != nil {
			return fail(err)
		}
	}
	s := &Server{
		path:   path,
		svc:    svc,
		log:    log,
		ln:     ln,
		idle:   idle,
		peerOK: peerOK,
		conns:  map[*net.UnixConn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// removeStale removes path if it is a socket nothing answers on. It fails if a daemon
// answers, or if path exists and is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket: %w (%s answers)", ErrRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: removing stale %s: %w", path, err)
	}
	return nil
}

// Path is the socket's file name.
func (s *Server) Path() string { return s.path }

// Close stops accepting, closes live connections, waits for the goroutines and removes
// the socket file. It may be called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		err := s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
		s.closeErr = err
	})
	return s.closeErr
}

func (s *Server) accept() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little and go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn(fmt.Sprintf("control socket: accept: %v", err))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve answers one connection's requests until it closes, idles or errs.
func (s *Server) serve(c *net.UnixConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	uid, err := peerUID(c)
	if err != nil || !s.peerOK(uid) {
		if err != nil {
			s.log.Warn(fmt.Sprintf("control socket: refused a connection: peer credentials: %v", err))
		} else {
			s.log.Warn(fmt.Sprintf("control socket: refused a connection from uid %d: only root may use it", uid))
		}
		s.reply(c, response{Error: errPermission})
		return
	}
	r := bufio.NewReaderSize(c, MaxRequest)
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			s.reply(c, response{Error: fmt.Sprintf("request too large (limit %d bytes)", MaxRequest)})
			return
		}
		if len(line) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			if !s.reply(c, s.handle(line)) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Debug(fmt.Sprintf("control socket: read: %v", err))
			}
			return
		}
	}
}

// reply writes one response line; false if the connection is unusable.
func (s *Server) reply(c *net.UnixConn, resp response) bool {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(response{Error: "internal error: " + err.Error()})
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.Write(append(b, '\n'))
	return err == nil
}

// handle decodes and runs one request. A panic in the Service is turned into an error
// response rather than taking the daemon down.
func (s *Server) handle(line []byte) (resp response) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return response{Error: "bad request: " + err.Error()}
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error(fmt.Sprintf("control socket: %s: panic: %v", req.Cmd, v))
			resp = response{Error: fmt.Sprintf("internal error in %s", req.Cmd)}
		}
	}()
	switch req.Cmd {
	case CmdList:
		bans := s.svc.List()
		if bans == nil {
			bans = []Ban{}
		}
		return response{OK: true, Bans: bans}
	case CmdStatus:
		st := s.svc.Status()
		return response{OK: true, Status: &st}
	case CmdBlock:
		p, err := ParsePrefix(req.Prefix)
		if err != nil {
			return response{Error: err.Error()}
		}
		d, err := ParseDuration(req.Duration)
		if err != nil {
			return response{Error: err.Error()}
		}
		b, err := s.svc.Block(p, d)
		if err != nil {
			return response{Error: err.Error()}
		}
		s.log.Info(fmt.Sprintf("control socket: operator blocked %s", p))
		return response{OK: true, Ban: &b}
	case CmdUnblock:
		if req.Origin != "" {
			return s.unblockOrigin(req)
		}
		p, err := ParsePrefix(req.Prefix)
		if err != nil {
			return response{Error: err.Error()}
		}
		bans, err := s.svc.Unblock(p)
		if err != nil {
			return response{Error: err.Error()}
		}
		if bans == nil {
			bans = []Ban{}
		}
		s.log.Info(fmt.Sprintf("control socket: operator unblocked %s (%d bans lifted)", p, len(bans)))
		return response{OK: true, Bans: bans}
	case "":
		return response{Error: `bad request: missing "cmd"`}
	}
	return response{Error: fmt.Sprintf("unknown command %q (want list, status, block or unblock)", req.Cmd)}
}

// unblockOrigin lifts one fleet host's bans, or every remote ban.
func (s *Server) unblockOrigin(req request) response {
	if req.Prefix != "" {
		return response{Error: "bad request: a prefix or an origin, not both"}
	}
	origin, err := ParseOrigin(req.Origin)
	if err != nil {
		return response{Error: err.Error()}
	}
	bans, err := s.svc.UnblockOrigin(origin)
	if err != nil {
		return response{Error: err.Error()}
	}
	if bans == nil {
		bans = []Ban{}
	}
	s.log.Info(fmt.Sprintf("control socket: operator unblocked the bans of fleet host %s (%d bans lifted)", origin, len(bans)))
	return response{OK: true, Bans: bans}
}

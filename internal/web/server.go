package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portsentry-go/portsentry/internal/atomicfile"
	"github.com/portsentry-go/portsentry/internal/control"
	"github.com/portsentry-go/portsentry/internal/regfile"
	"github.com/portsentry-go/portsentry/internal/report"
)

// DefaultAddr is the listener's address when Options.Addr is empty.
const DefaultAddr = "127.0.0.1:9117"

// NoToken as Options.TokenFile turns unblocking through the listener off: no token is
// made and POST /api/unblock always answers 403.
const NoToken = "-"

// Limits of the API.
const (
	DefaultEventsMax = 100     // events per /api/events answer without max=
	maxUnblockBody   = 4 << 10 // bytes in a POST /api/unblock body
)

// Source is what the dashboard needs of the daemon: the read and unblock part of
// control.Service, which the daemon passes as is. Its methods are called from request
// goroutines, concurrently.
type Source interface {
	Status() control.Status
	List() []control.Ban
	// Unblock lifts every active ban inside or covering p and returns them (see
	// control.Service). The daemon records the matching "unban" events itself.
	Unblock(p netip.Prefix) ([]control.Ban, error)
}

// Options configure the listener.
type Options struct {
	// Addr is the host:port to listen on (DefaultAddr when empty). On a non-loopback
	// address reading is open to the network (unblocking still needs the token) and
	// Start logs a warning; the daemon's configuration refuses one unless
	// DASHBOARD_ALLOW_REMOTE is set, before Start is called.
	Addr string
	// AllowedHosts are host names, besides IP literals and "localhost", accepted in
	// a request's Host header (the defence against DNS rebinding). Needed only when
	// the dashboard is reached through a name, e.g. behind a reverse proxy.
	AllowedHosts []string
	// TokenFile is where Start writes the unblock token (required; NoToken disables
	// unblocking; the daemon's default is config.DefaultDashboardTokenFile). The file is mode 0600, its directory created
	// 0750 if missing; Close removes it.
	TokenFile string
	// HistoryFile, when set, is served as the history report at /report, built at
	// each request (see docs/report.md).
	HistoryFile string
	// Log receives the listener's messages (nothing is logged when nil).
	Log *slog.Logger

	// now and hook are for tests: the clock, and a function called with every
	// request before it is served.
	now  func() time.Time
	hook func(*http.Request)
}

// Server is a running listener.
type Server struct {
	opts  Options
	src   Source
	ev    *Events
	m     *Metrics
	log   *slog.Logger
	ln    net.Listener
	srv   *http.Server
	token []byte // nil: unblocking disabled
	page  []byte
	done  chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Start checks opts, writes the token file, listens on opts.Addr and serves until
// Close. ev and m may be nil: the events are then empty and /metrics is not served.
func Start(opts Options, src Source, ev *Events, m *Metrics) (*Server, error) {
	if src == nil {
		return nil, errors.New("web: no source")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.TokenFile == "" {
		return nil, errors.New("web: no token file (NoToken for none)")
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ev == nil {
		ev = NewEvents(0)
	}
	s := &Server{opts: opts, src: src, ev: ev, m: m, log: log, done: make(chan struct{})}
	if opts.TokenFile != NoToken {
		tok, err := newToken()
		if err != nil {
			return nil, err
		}
		if err := writeToken(opts.TokenFile, tok); err != nil {
			return nil, err
		}
		s.token = []byte(tok)
	}
	var err error
	if s.page, err = renderPage(pageData{Unblock: s.token != nil, Report: opts.HistoryFile != "", TokenFile: opts.TokenFile}); err != nil {
		s.removeToken()
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.removeToken()
		return nil, fmt.Errorf("web: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if !loopback(ln.Addr()) {
		log.Warn("dashboard listening on a non-loopback address: anyone who can reach it can read bans and events",
			"addr", ln.Addr().String())
	} else {
		log.Info("dashboard listening", "addr", ln.Addr().String())
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("dashboard stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the listener is bound to (with the real port when Options.Addr
// asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the listener, waits up to five seconds for requests in flight, and
// removes the token file.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.closeErr = s.srv.Close()
		}
		<-s.done
		s.removeToken()
	})
	return s.closeErr
}

// loopback reports whether the listener's address is a loopback one.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// newToken returns 256 random bits, URL-safe.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("web: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeToken writes the token file, mode 0600, replacing it atomically. A path that is
// there but is not a regular file (/dev/null, say) is refused: the rename would
// replace it.
func writeToken(path, tok string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("web: token file: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("web: token file: %w", err)
	}
	return nil
}

// removeToken removes the token file if it still holds this server's token.
func (s *Server) removeToken() {
	if s.token == nil {
		return
	}
	// A FIFO put there would otherwise hold the shutdown up.
	if b, err := regfile.ReadAll(s.opts.TokenFile, 4096); err == nil && bytes.Equal(bytes.TrimSpace(b), s.token) {
		os.Remove(s.opts.TokenFile)
	}
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.HandleFunc("GET /api/status", s.status)
	mux.HandleFunc("GET /api/bans", s.bans)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/timeline", s.timeline)
	mux.HandleFunc("POST /api/unblock", s.unblock)
	if s.m != nil {
		mux.Handle("GET /metrics", s.m.Handler())
	}
	if s.opts.HistoryFile != "" {
		mux.HandleFunc("GET /report", s.report)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.hook != nil {
			s.opts.hook(r)
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Content-Security-Policy", apiCSP)
		if !s.hostAllowed(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "unknown host name in the request (see AllowedHosts in docs/dashboard.md)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// apiCSP is the policy of everything but the pages: nothing may load or frame it.
const apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// hostAllowed accepts IP literals, localhost and the configured names. A page from
// another site whose name was pointed at this address (DNS rebinding) carries its own
// name in Host and is turned away, so it cannot even read.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.TrimSuffix(host, ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range s.opts.AllowedHosts {
		if strings.EqualFold(host, strings.TrimSuffix(a, ".")) {
			return true
		}
	}
	return false
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	w.Write(s.page)
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	f, err := regfile.Open(s.opts.HistoryFile) // a FIFO would hold the request for ever
	if err != nil {
		s.log.Warn("dashboard: history report", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the history file cannot be read")
		return
	}
	defer f.Close()
	sum, err := report.Build(f, report.Options{Source: s.opts.HistoryFile, Now: s.opts.now})
	if err != nil {
		s.log.Warn("dashboard: history report", "err", err)
		writeError(w, http.StatusInternalServerError, "the history file cannot be read")
		return
	}
	var buf bytes.Buffer
	if err := report.WriteHTML(&buf, sum, report.Options{Now: s.opts.now}); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The page carries its own hash-pinned policy; this one only adds framing.
	h.Set("Content-Security-Policy", "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Write(buf.Bytes())
}

// StatusView is the answer of /api/status: control.Status and the time it was taken.
type StatusView struct {
	control.Status
	Now           time.Time `json:"now"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Unblock       bool      `json:"unblock"` // whether POST /api/unblock is enabled
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.src.Status()
	now := s.opts.now()
	v := StatusView{Status: st, Now: now.UTC(), Unblock: s.token != nil}
	if !st.Started.IsZero() {
		v.UptimeSeconds = int64(now.Sub(st.Started) / time.Second)
	}
	if v.Modes == nil {
		v.Modes = []string{}
	}
	if v.Counters == nil {
		v.Counters = map[string]uint64{}
	}
	writeJSON(w, http.StatusOK, v)
}

// BanView is one ban in /api/bans.
type BanView struct {
	control.Ban
	Permanent bool `json:"permanent"`
	// RemainingSeconds is the time left, from the answer's Now; absent when permanent.
	RemainingSeconds *float64 `json:"remaining_seconds,omitempty"`
}

// BansView is the answer of /api/bans.
type BansView struct {
	Now   time.Time `json:"now"`
	Count int       `json:"count"`
	Bans  []BanView `json:"bans"` // newest first
}

func (s *Server) bans(w http.ResponseWriter, r *http.Request) {
	now := s.opts.now()
	bans := s.src.List()
	v := BansView{Now: now.UTC(), Count: len(bans), Bans: make([]BanView, 0, len(bans))}
	for _, b := range bans {
		bv := BanView{Ban: b, Permanent: b.Permanent()}
		if !bv.Permanent {
			left := max(0, b.Until.Sub(now).Seconds())
			left = float64(int64(left*1000)) / 1000
			bv.RemainingSeconds = &left
		}
		v.Bans = append(v.Bans, bv)
	}
	slices.SortStableFunc(v.Bans, func(a, b BanView) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want an event ID (a whole number)")
			return
		}
		since = n
	}
	limit := DefaultEventsMax
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "max: want a whole number from 1")
			return
		}
		limit = min(n, s.ev.Cap())
	}
	writeJSON(w, http.StatusOK, s.ev.Page(since, limit))
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.ev.Timeline(s.opts.now()))
}

// UnblockResult is the answer of POST /api/unblock.
type UnblockResult struct {
	OK        bool          `json:"ok"`
	Error     string        `json:"error,omitempty"`
	Prefix    string        `json:"prefix,omitempty"`
	Unblocked []control.Ban `json:"unblocked,omitzero"`
}

func (s *Server) unblock(w http.ResponseWriter, r *http.Request) {
	if s.token == nil {
		writeError(w, http.StatusForbidden, "unblocking through the dashboard is disabled")
		return
	}
	if why := crossOrigin(r); why != "" {
		s.log.Warn("dashboard: cross-origin unblock refused", "remote", r.RemoteAddr, "why", why)
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	if !s.authorized(r) {
		s.log.Warn("dashboard: unblock without a valid token", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="portsentry"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong token (sudo cat "+s.opts.TokenFile+")")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
		return
	}
	var req struct {
		Prefix string `json:"prefix"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUnblockBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "want a JSON object {\"prefix\":\"ADDRESS or CIDR\"}")
		return
	}
	p, err := control.ParsePrefix(req.Prefix)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ended, err := s.src.Unblock(p)
	s.log.Info("dashboard: unblock", "prefix", p.String(), "lifted", len(ended), "remote", r.RemoteAddr, "err", err)
	res := UnblockResult{OK: err == nil, Prefix: p.String(), Unblocked: ended}
	if res.Unblocked == nil {
		res.Unblocked = []control.Ban{}
	}
	if err != nil {
		res.Error = err.Error()
		writeJSON(w, http.StatusInternalServerError, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// crossOrigin explains why a state-changing request comes from another site, or
// returns "". Browsers send Origin with every POST and Sec-Fetch-Site with every
// request; tools such as curl send neither, and need the token all the same.
func crossOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "Sec-Fetch-Site: " + site
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if origin == "null" {
		return "Origin: null"
	}
	if !strings.EqualFold(origin, "http://"+r.Host) && !strings.EqualFold(origin, "https://"+r.Host) {
		return "Origin " + origin + " is not " + r.Host
	}
	return ""
}

// authorized checks the bearer token in constant time.
func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return false
	}
	// Comparing digests keeps the time independent of the length as well.
	got := sha256.Sum256([]byte(strings.TrimSpace(auth[len(prefix):])))
	want := sha256.Sum256(s.token)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encoding: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, UnblockResult{OK: false, Error: msg})
}

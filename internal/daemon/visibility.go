package daemon

import (
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/portsentry-go/portsentry/internal/appendfile"
	"github.com/portsentry-go/portsentry/internal/batch"
	"github.com/portsentry-go/portsentry/internal/config"
	"github.com/portsentry-go/portsentry/internal/history"
	"github.com/portsentry-go/portsentry/internal/web"
)

// event records what happened for the dashboard's live view and, when JSON_LOG is
// set, for log shippers.
func (d *Daemon) event(ev web.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.ID = d.events.Add(ev)
	if d.jsonLog != nil {
		d.jsonLog.write(ev)
	}
}

// jsonLog writes events as JSON lines from its own goroutine, in batches, so that a
// slow disk never slows detection: when its queue is full, events are dropped and
// counted. A full disk does not stop it either: the file queues what it cannot write
// (see appendfile.Queue).
type jsonLog struct {
	file    *history.File
	lines   chan string
	dropped atomic.Uint64
	done    chan struct{}
	log     *slog.Logger
}

func openJSONLog(path string, log *slog.Logger, r appendfile.Report) (*jsonLog, error) {
	f, err := history.Open(path, false, r)
	if err != nil {
		return nil, err
	}
	j := &jsonLog{file: f, lines: make(chan string, maxBatch), done: make(chan struct{}), log: log}
	go j.run()
	return j, nil
}

func (j *jsonLog) write(ev web.Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	select {
	case j.lines <- string(b):
	default:
		j.dropped.Add(1)
	}
}

func (j *jsonLog) run() {
	defer close(j.done)
	for first := range j.lines {
		lines := batch.Take(j.lines, first, maxBatch)
		if err := j.file.Append(lines...); err != nil {
			j.log.Error("adminalert: ERROR: JSON_LOG: " + err.Error())
		}
	}
}

func (j *jsonLog) close() {
	close(j.lines)
	<-j.done
	if n := j.dropped.Load(); n > 0 {
		j.log.Warn("adminalert: JSON_LOG: events dropped while the writer was behind", "count", n)
	}
	j.file.Close()
}

// startWeb starts the dashboard listener when DASHBOARD is set; without it the daemon
// runs on, so a taken port never stops detection.
func (d *Daemon) startWeb(cfg *config.Config) *web.Server {
	if cfg.Dashboard == "" {
		return nil
	}
	srv, err := web.Start(web.Options{
		Addr: cfg.Dashboard, TokenFile: cfg.DashboardTokenFile, HistoryFile: cfg.HistoryFile, Log: d.log,
	}, service{d}, d.events, d.metrics) // the control socket's service
	if err != nil {
		d.log.Error("adminalert: ERROR: no dashboard: " + err.Error())
		return nil
	}
	d.log.Info("adminalert: Dashboard, API and metrics on http://" + srv.Addr() + "/")
	return srv
}

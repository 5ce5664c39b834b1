// Package web is the daemon's optional HTTP listener: the live dashboard, its JSON API
// and the Prometheus metrics, all on one address.
//
// Start serves
//
//	GET  /                 the dashboard (one self-contained page, no external asset)
//	GET  /api/status       the daemon's summary (control.Status, plus now and uptime)
//	GET  /api/bans         the active bans with their remaining time
//	GET  /api/events       recent events from the Events ring (?since=ID&max=N)
//	GET  /api/timeline     detections per minute over the last hour
//	POST /api/unblock      {"prefix":"..."}: lift bans, with the bearer token only
//	GET  /metrics          Prometheus metrics from Metrics' private registry
//	GET  /report           the history report, live (only with Options.HistoryFile)
//
// The daemon's configuration keeps the listener on loopback unless
// DASHBOARD_ALLOW_REMOTE is set (Start warns about a non-loopback one). Reading is
// open to whoever can reach the listener; unblocking needs the token that Start writes to
// Options.TokenFile (mode 0600, readable by root only), so only someone who could use
// the control socket can lift a ban through the page. docs/dashboard.md describes the
// permission model and docs/api.md the endpoints.
package web

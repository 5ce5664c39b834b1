// Package web serves the live dashboard, the JSON API and Prometheus metrics.
package web

import _ "github.com/prometheus/client_golang/prometheus" // pinned in go.mod

// Package style holds what the history report and the live dashboard share, so both
// pages look alike: the base stylesheet (colours, type, tables, panels) and the hash
// their Content-Security-Policy uses to allow exactly their own inline style and script.
package style

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
)

// Base is the shared stylesheet; each page appends its own rules.
//
//go:embed base.css
var Base string

// Hash is the CSP source expression ('sha256-...' without quotes) for inline content s.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

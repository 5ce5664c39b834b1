// Package duration parses the durations the commands take (ban times, report
// windows): Go's syntax ("90m", "1h30m") with whole days in front ("7d", "1d12h"),
// since Go's own has no unit longer than an hour.
package duration

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// maxDays keeps a number of days within time.Duration.
const maxDays = int64(1<<63-1) / int64(24*time.Hour)

// ErrSyntax is what Parse's errors match.
var ErrSyntax = errors.New("not a positive duration such as 90m, 12h, 7d or 1d12h")

// Parse parses a positive duration: "Nd" for N days, optionally followed by a Go
// duration, or a Go duration alone. Zero, negative and overflowing values are errors.
func Parse(s string) (time.Duration, error) {
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 || n > maxDays {
			return 0, ErrSyntax
		}
		days = time.Duration(n) * 24 * time.Hour
		rest = s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, ErrSyntax
		}
	}
	if d < 0 || days+d < days || days+d == 0 {
		return 0, ErrSyntax
	}
	return days + d, nil
}

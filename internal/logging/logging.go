// Package logging builds tollgate's structured logger: JSON lines on one
// writer, durations written as text ("30s", "1.5ms") rather than slog's
// default integer nanoseconds, which no reader parses at a glance.
package logging

import (
	"io"
	"log/slog"
)

// New returns a JSON logger at level writing to w.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}))
}

// ReplaceAttr renders every duration attribute (in groups too) as its
// time.Duration.String() form. Use it in any slog.HandlerOptions.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

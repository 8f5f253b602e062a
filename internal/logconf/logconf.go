// Package logconf builds the slog.Logger both binaries log with.
package logconf

import (
	"fmt"
	"io"
	"log/slog"
)

// CheckLevel reports whether level is one New accepts.
func CheckLevel(level string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("%q: want debug, info, warn or error", level)
	}
	return nil
}

// CheckFormat reports whether format is one New accepts.
func CheckFormat(format string) error {
	if format != "json" && format != "text" {
		return fmt.Errorf("%q: want json or text", format)
	}
	return nil
}

// New returns a logger writing to w. format is "json" or "text"; level is
// "debug", "info", "warn" or "error". Check them first with CheckLevel and
// CheckFormat to name the variable they came from.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	if err := CheckLevel(level); err != nil {
		return nil, fmt.Errorf("log level %w", err)
	}
	if err := CheckFormat(format); err != nil {
		return nil, fmt.Errorf("log format %w", err)
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

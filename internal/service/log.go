package service

import (
	"context"
	"io"
	"log/slog"

	tlog "go.temporal.io/sdk/log"

	"github.com/triggerflow/triggerflow/config"
)

// NewLogger returns a slog logger writing JSON (production) or text (dev)
// at the configured level.
func NewLogger(cfg config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level.Slog()}
	if cfg.Format == config.LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// TemporalLogger adapts l for the Temporal SDK, dropping records below
// level: the SDK logs every poll and retry at debug and info, which would
// drown the application's own logs.
func TemporalLogger(l *slog.Logger, level config.LogLevel) tlog.Logger {
	h := &minLevel{Handler: l.Handler(), min: level.Slog()}
	return tlog.NewStructuredLogger(slog.New(h).With("component", "temporal-sdk"))
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h *minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h *minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return &minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h *minLevel) WithGroup(name string) slog.Handler {
	return &minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

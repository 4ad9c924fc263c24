package daemon

import (
	"context"
	"fmt"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/service"
	"github.com/triggerflow/triggerflow/streams"
)

// Ingest runs the ingest service until ctx ends: it consumes delivery tasks
// from JetStream and signals each to its document's workflow, acknowledging
// a task only once Temporal holds the signal.
func Ingest(ctx context.Context, cfg *config.IngestFile, opts Options) error {
	opts = opts.withDefaults(cfg.Log)
	b, err := openBase("ingest", cfg.HTTP, cfg.NATS, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	log, ops, js := b.log, b.ops, b.js
	if err := streams.EnsureWhenReachable(ctx, js, cfg.NATS.Streams(), log); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS
		}
		return fmt.Errorf("streams: %w", err)
	}

	metrics, closeMetrics := service.TemporalMetrics(opts.Registry, log)
	defer closeMetrics.Close()
	tc, err := service.DialTemporal(cfg.Temporal, log, cfg.Log.TemporalLevel, metrics)
	if err != nil {
		return err
	}
	defer tc.Close()

	in, err := ingest.New(
		ingest.Config{NATS: cfg.NATS, Temporal: cfg.Temporal, Ingest: cfg.Ingest, Sharing: ingest.Sharing(cfg.Ingest.Sharing), PinnedTTL: cfg.Ingest.PinnedTTL.D()},
		js, tc, deadletter.NewPublisher(js, cfg.NATS.DeadLetterSubject),
		ingest.WithLogger(log), ingest.WithRegisterer(opts.Registry),
	)
	if err != nil {
		return err
	}
	ops.AddCheck("dependencies", in.Ready)
	go reportReady(ctx, in.Ready, ops.Addr(), opts.OnReady)
	log.Info("ingest started", "stream", cfg.NATS.Stream, "consumer", cfg.NATS.Consumer, "temporal", cfg.Temporal.HostPort, "ops", ops.Addr())
	return in.Run(ctx)
}

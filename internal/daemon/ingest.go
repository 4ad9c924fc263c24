package daemon

import (
	"context"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/engine"
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
	log, ops, nc := b.log, b.ops, b.nc
	if ok, err := b.ensureStreams(ctx, cfg.NATS); !ok {
		return err
	}

	tc, closeTemporal, err := dialTemporal(cfg.Temporal, cfg.Log.TemporalLevel, log, opts.Registry)
	if err != nil {
		return err
	}
	defer closeTemporal()

	verifier, err := taskVerifier("ingest.verifyKeysFile", cfg.Ingest.VerifyKeysFile)
	if err != nil {
		return err
	}
	f, err := engine.NewFactory(
		engine.Deps{Logger: log, NATS: nc, Temporal: tc, Registerer: opts.Registry, TaskVerifier: verifier},
		engine.WithConfig(engine.Config{Streams: cfg.NATS.Streams(), Ingest: cfg.Ingester()}),
	)
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := f.Ingester()
	if err != nil {
		return err
	}
	ops.AddCheck("dependencies", in.Ready)
	go reportReady(ctx, in.Ready, ops.Addr(), opts.OnReady)
	log.Info("ingest started", "stream", cfg.NATS.Stream, "consumer", cfg.NATS.Consumer, "temporal", cfg.Temporal.HostPort, "ops", ops.Addr())
	return in.Run(ctx)
}

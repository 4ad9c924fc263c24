package daemon

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/codec"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/secrets"
)

// CodecPath is where the worker's ops server serves the codec server
// (worker.codecServer): the Temporal UI's codec endpoint is
// http://<http.addr>/codec, to which it appends /decode and /encode.
const CodecPath = "/codec"

// Worker runs the delivery worker until ctx ends: it polls the task queue
// for delivery workflows and runs their webhook activities, signing with
// the tenant's secrets and tokens, and serves the token keys (JWKS).
func Worker(ctx context.Context, cfg *config.WorkerFile, opts Options) error {
	opts = opts.withDefaults(cfg.Log)
	b, err := openBase("worker", cfg.HTTP, cfg.NATS, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	log, ops, nc, js := b.log, b.ops, b.nc, b.js
	if ok, err := b.ensureStreams(ctx, cfg.NATS); !ok {
		return err
	}

	sm, err := secrets.New(ctx, cfg.Worker.Secrets.ForSecrets(), js)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	key, err := authn.LoadOrCreateKey(cfg.Worker.Tokens.KeyFile)
	if err != nil {
		return fmt.Errorf("worker.tokens.keyFile: %w", err)
	}
	issuer, err := authn.NewIssuer(authn.Config{
		Issuer: cfg.Worker.Tokens.Issuer, Audience: cfg.Worker.Tokens.Audience, TTL: cfg.Worker.Tokens.TTL.D(), Key: key,
	})
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	ops.Handle("GET "+authn.JWKSPath, issuer.Handler())
	if cfg.Temporal.Codec.Enabled && cfg.Worker.CodecServer.Enabled {
		cdc, err := service.LoadCodec(cfg.Temporal.Codec)
		if err != nil {
			return err
		}
		ops.Handle(CodecPath+"/", codec.NewHandler(cdc, cfg.Worker.CodecServer.Handler()))
		log.Info("codec server enabled", "endpoint", "http://"+ops.Addr()+CodecPath,
			"allowedOrigins", cfg.Worker.CodecServer.AllowedOrigins, "authToken", cfg.Worker.CodecServer.AuthToken != "")
	}

	verifier, err := taskVerifier("worker.verifyKeysFile", cfg.Worker.VerifyKeysFile)
	if err != nil {
		return err
	}
	f, err := engine.NewFactory(
		engine.Deps{Logger: log, NATS: nc, Registerer: opts.Registry, Secrets: sm, Tokens: issuer, WebhookHTTP: opts.WebhookHTTP,
			TaskVerifier: verifier},
		engine.WithConfig(engine.Config{Streams: cfg.NATS.Streams(), Activities: cfg.Worker.Activities(), Workflows: cfg.Worker.Workflows(),
			Images: cfg.Worker.Images()}),
	)
	if err != nil {
		return err
	}
	defer f.Close()

	tc, closeTemporal, err := dialTemporal(cfg.Temporal, cfg.Log.TemporalLevel, log, opts.Registry)
	if err != nil {
		return err
	}
	defer closeTemporal()

	// Temporal may be down when the worker starts (a restart of both, a
	// deploy): wait for it like every other dependency instead of exiting.
	var w worker.Worker
	wopts := WorkerOptions(cfg.Worker)
	retry := backoff.Exponential{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		w = worker.New(tc, cfg.Temporal.TaskQueue, wopts)
		if err := f.RegisterWorker(w); err != nil {
			return err
		}
		err := w.Start()
		if err == nil {
			break
		}
		wait := retry.Next()
		log.Warn("worker not started; retrying", "taskQueue", cfg.Temporal.TaskQueue, "error", err, "backoff", wait)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
	defer w.Stop()

	ready := func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("NATS %s", nc.Status())
		}
		if _, err := tc.CheckHealth(ctx, nil); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		return nil
	}
	ops.AddCheck("dependencies", ready)
	go reportReady(ctx, ready, ops.Addr(), opts.OnReady)
	log.Info("worker started", "taskQueue", cfg.Temporal.TaskQueue, "temporal", cfg.Temporal.HostPort, "ops", ops.Addr(),
		"maxConcurrentActivities", wopts.MaxConcurrentActivityExecutionSize,
		"maxConcurrentWorkflowTasks", wopts.MaxConcurrentWorkflowTaskExecutionSize,
		"maxConcurrentLocalActivities", wopts.MaxConcurrentLocalActivityExecutionSize,
		"workflowTaskPollers", wopts.MaxConcurrentWorkflowTaskPollers)
	<-ctx.Done()
	log.Info("worker stopping")
	return nil
}

// WorkerOptions maps the worker file's pool sizes onto the Temporal
// worker's options; everything else keeps the SDK's default.
func WorkerOptions(w config.Worker) worker.Options {
	w = w.WithDefaults()
	return worker.Options{
		MaxConcurrentActivityExecutionSize:      w.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  w.MaxConcurrentWorkflowTasks,
		MaxConcurrentLocalActivityExecutionSize: w.MaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTaskPollers:        w.WorkflowTaskPollers,
		// The SDK's default of 0 abandons the workflow tasks under way at
		// once: their deliveries, already posted, would run again on
		// another worker after this one deleted their images.
		WorkerStopTimeout: w.StopTimeout.D(),
	}
}

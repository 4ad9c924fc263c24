package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/pgsource"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// Options are the parts of a service run that are not configuration.
type Options struct {
	// Logger defaults to one built from the file's log section, on stderr.
	Logger *slog.Logger
	// Registry receives every metric; defaults to a fresh registry with Go
	// and process collectors.
	Registry *prometheus.Registry
	// Reload delivers trigger reload requests (SIGHUP for the binaries);
	// nil means reloads are not wired.
	Reload <-chan struct{}
	// OnReady, when set, is called once the service is ready, with the ops
	// server's address.
	OnReady func(opsAddr string)
	// WebhookHTTP customises the worker's webhook client (TLS to
	// receivers, dialing, instrumentation); the egress guard still
	// applies, and activities.HTTPOptions says what the caller answers
	// for. Only the worker uses it.
	WebhookHTTP activities.HTTPOptions
}

func (o Options) withDefaults(l config.Log) Options {
	if o.Logger == nil {
		o.Logger = service.NewLogger(l, os.Stderr)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return o
}

// ReloadOnSIGHUP returns a channel that receives on every SIGHUP until ctx
// ends.
func ReloadOnSIGHUP(ctx context.Context) <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// Watcher runs the watcher service until ctx ends: it loads the triggers
// (failing with every problem listed when they are invalid), opens the
// change source, and runs watcher → evaluator → publisher.
func Watcher(ctx context.Context, cfg *config.WatcherFile, opts Options) error {
	opts = opts.withDefaults(cfg.Log)

	v, err := trigger.NewValidator(cfg.Watcher.Tenant, cfg.Validation, nil)
	if err != nil {
		return err
	}
	ts, err := trigger.LoadTriggers(cfg.Watcher.Triggers, v)
	if err != nil {
		return fmt.Errorf("load triggers from %s: %w", cfg.Watcher.Triggers, err)
	}

	b, err := openBase("watcher", cfg.HTTP, cfg.NATS, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	log, ops, nc, js := b.log, b.ops, b.nc, b.js

	src, err := OpenSource(ctx, cfg, log, opts.Registry)
	if err != nil {
		return err
	}
	defer src.Close()

	f, err := engine.NewFactory(
		engine.Deps{Logger: log, Source: src, NATS: nc, Registerer: opts.Registry, Auditor: audit.NewWriter(js, cfg.NATS.AuditStream)},
		engine.WithConfig(engine.Config{
			Tenant:  cfg.Watcher.Tenant,
			Limits:  cfg.Validation,
			Streams: cfg.NATS.Streams(),
			Watcher: watcher.Config{
				Include:            cfg.Watcher.Include,
				Exclude:            cfg.Watcher.Exclude,
				StartFromNow:       cfg.Watcher.StartFromNow,
				ResumeToken:        cfg.Watcher.ResumeToken,
				Reason:             "configured at start-up",
				CheckpointEvery:    cfg.Watcher.CheckpointEvery,
				CheckpointInterval: cfg.Watcher.CheckpointInterval.D(),
			},
			Publisher: cfg.Publisher.ForStream(cfg.NATS.Stream),
		}),
	)
	if err != nil {
		return err
	}
	defer f.Close()
	eng := f.Engine()
	if err := eng.LoadTriggers(ts); err != nil {
		return err
	}
	ops.AddCheck("pipeline", eng.Ready)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- eng.Run(runCtx) }()
	go reportReady(runCtx, eng.Ready, ops.Addr(), opts.OnReady)
	log.Info("watcher started", "tenant", cfg.Watcher.Tenant, "source", cfg.Watcher.Source, "triggers", len(ts), "ops", ops.Addr())

	for {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
			log.Info("watcher stopped")
			return nil
		case <-opts.Reload:
			reloadTriggers(ctx, log, cfg, v, eng, js)
		}
	}
}

// reloadTriggers swaps in the trigger files' current content; a bad
// reload keeps the old set (the engine's load-failed gauge turns on).
func reloadTriggers(ctx context.Context, log *slog.Logger, cfg *config.WatcherFile, v *trigger.Validator, eng engine.TriggerEngine, js jetstream.JetStream) {
	ts, err := trigger.LoadTriggers(cfg.Watcher.Triggers, v)
	if err == nil {
		err = eng.LoadTriggers(ts)
	} else {
		eng.ReportLoadFailure(err)
	}
	rec := audit.Record{Action: audit.ActionTriggersReload, Tenant: cfg.Watcher.Tenant, Actor: "watcher", Reason: "SIGHUP", After: fmt.Sprintf("%d triggers", len(ts))}
	if err != nil {
		log.Error("trigger reload failed; the previous set stays active", "error", err)
		rec.After = "rejected: " + firstLine(err.Error())
	} else {
		log.Info("triggers reloaded", "triggers", len(ts))
	}
	if werr := audit.NewWriter(js, cfg.NATS.AuditStream).Write(ctx, rec); werr != nil {
		log.Warn("audit record not written", "error", werr)
	}
}

// OpenSource opens the change source the watcher file configures.
func OpenSource(ctx context.Context, cfg *config.WatcherFile, log *slog.Logger, reg prometheus.Registerer) (watcher.Source, error) {
	switch cfg.Watcher.Source {
	case config.SourcePostgres:
		src, err := pgsource.New(ctx, pgsource.Config{
			DSN: cfg.Watcher.Postgres.DSN, Tenant: cfg.Watcher.Tenant, TenantColumn: cfg.Watcher.Postgres.TenantColumn,
			Publication: cfg.Watcher.Postgres.Publication, Slot: cfg.Watcher.Postgres.Slot, Tables: cfg.Watcher.Postgres.Tables,
			Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, fmt.Errorf("postgres source: %w", err)
		}
		return src, nil
	default:
		src, err := docstore.OpenSource(ctx, docstore.Config{Path: cfg.Watcher.SQLite.Path, Logger: log}, cfg.Watcher.Tenant)
		if err != nil {
			return nil, fmt.Errorf("sqlite source %s: %w", cfg.Watcher.SQLite.Path, err)
		}
		return src, nil
	}
}

// reportReady calls onReady once ready returns nil.
func reportReady(ctx context.Context, ready func(context.Context) error, addr string, onReady func(string)) {
	if onReady == nil {
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(ctx) == nil {
			onReady(addr)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

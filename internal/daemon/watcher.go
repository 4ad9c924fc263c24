package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
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
	"github.com/triggerflow/triggerflow/tenantlabel"
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

// Watcher runs the watcher service until ctx ends: it loads the triggers,
// opens the change source, and runs watcher → evaluator → publisher. With
// one tenant, invalid triggers stop the start with every problem listed;
// with several, the tenants whose triggers loaded start and the others are
// reported, as on a reload.
func Watcher(ctx context.Context, cfg *config.WatcherFile, opts Options) error {
	opts = opts.withDefaults(cfg.Log)

	v, err := trigger.NewScopeValidator(scope(cfg.Watcher), cfg.Validation, nil)
	if err != nil {
		return err
	}
	res, err := trigger.LoadByTenant(cfg.Watcher.Triggers, v)
	if err == nil && (cfg.Watcher.Tenant != "" || len(res.Triggers) == 0) {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("load triggers from %s: %w", cfg.Watcher.Triggers, err)
	}

	b, err := openBase("watcher", cfg.HTTP, cfg.NATS, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	log, ops, nc, js := b.log, b.ops, b.nc, b.js

	// One guard for the source's and the pipeline's metrics, so both name
	// the same tenants.
	labels := tenantlabel.New(cfg.Watcher.MaxTenantLabels)
	src, err := openSource(ctx, cfg, log, opts.Registry, labels)
	if err != nil {
		return err
	}
	defer src.Close()

	signer, err := taskSigner(cfg.Publisher.SigningKeyFile)
	if err != nil {
		return err
	}
	f, err := engine.NewFactory(
		engine.Deps{Logger: log, Source: src, NATS: nc, Registerer: opts.Registry, Auditor: audit.NewWriter(js, cfg.NATS.AuditStream),
			TaskSigner: signer, TenantLabels: labels},
		engine.WithConfig(engine.Config{
			Tenant:          cfg.Watcher.Tenant,
			Tenants:         cfg.Watcher.Tenants,
			MaxTenantLabels: cfg.Watcher.MaxTenantLabels,
			Limits:          cfg.Validation,
			Streams:         cfg.NATS.Streams(),
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
	if err := eng.LoadSets(res); err != nil {
		if cfg.Watcher.Tenant != "" {
			return err
		}
		auditLoad(ctx, log, cfg, res, err, js, "start-up")
	}
	ops.AddCheck("pipeline", eng.Ready)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- eng.Run(runCtx) }()
	go reportReady(runCtx, eng.Ready, ops.Addr(), opts.OnReady)
	log.Info("watcher started", "tenant", cfg.Watcher.Tenant, "tenants", len(eng.Tenants()), "source", cfg.Watcher.Source,
		"triggers", countTriggers(res), "ops", ops.Addr())

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

// scope is the tenant scope the watcher file configures.
func scope(w config.Watcher) []string {
	if w.Tenant != "" {
		return []string{w.Tenant}
	}
	return w.Tenants
}

func countTriggers(res *trigger.TenantSets) int {
	n := 0
	for _, ts := range res.Triggers {
		n += len(ts)
	}
	return n
}

// reloadTriggers swaps in the trigger files' current content, tenant by
// tenant; a tenant whose files are bad keeps its old set (the engine's
// load-failed gauge turns on for it).
func reloadTriggers(ctx context.Context, log *slog.Logger, cfg *config.WatcherFile, v *trigger.Validator, eng engine.TriggerEngine, js jetstream.JetStream) {
	res, err := trigger.LoadByTenant(cfg.Watcher.Triggers, v)
	if err != nil {
		eng.ReportLoadFailure(err)
	} else {
		err = eng.LoadSets(res)
	}
	if err != nil {
		log.Error("trigger reload failed; tenants with problems keep their previous set", "error", err)
	} else {
		log.Info("triggers reloaded", "tenants", len(eng.Tenants()), "triggers", countTriggers(res))
	}
	auditLoad(ctx, log, cfg, res, err, js, "SIGHUP")
}

// auditLoad records a load: one record per rejected tenant, and one for
// the load as a whole (per tenant for a one-tenant watcher).
func auditLoad(ctx context.Context, log *slog.Logger, cfg *config.WatcherFile, res *trigger.TenantSets, err error, js jetstream.JetStream, reason string) {
	w := audit.NewWriter(js, cfg.NATS.AuditStream)
	write := func(rec audit.Record) {
		rec.Action, rec.Actor, rec.Reason = audit.ActionTriggersReload, "watcher", reason
		if werr := w.Write(ctx, rec); werr != nil {
			log.Warn("audit record not written", "error", werr)
		}
	}
	if cfg.Watcher.Tenant != "" {
		rec := audit.Record{Tenant: cfg.Watcher.Tenant}
		if err != nil {
			rec.After = "rejected: " + firstLine(err.Error())
		} else if res != nil {
			rec.After = fmt.Sprintf("%d triggers", countTriggers(res))
		}
		write(rec)
		return
	}
	if res == nil {
		write(audit.Record{Tenant: trigger.AllTenants, After: "rejected: " + firstLine(err.Error())})
		return
	}
	for _, t := range slices.Sorted(maps.Keys(res.Failed)) {
		write(audit.Record{Tenant: t, After: "rejected: " + firstProblem(res.Failed[t])})
	}
	if res.Unattributed != nil {
		write(audit.Record{Tenant: trigger.AllTenants, After: "rejected: " + firstProblem(res.Unattributed)})
	}
	write(audit.Record{Tenant: trigger.AllTenants, After: fmt.Sprintf("%d tenants, %d triggers loaded, %d tenants rejected", len(res.Triggers), countTriggers(res), len(res.Failed))})
}

func firstProblem(ve *trigger.ValidationError) string {
	if len(ve.Problems) == 0 {
		return ve.Error()
	}
	return ve.Problems[0].String()
}

// OpenSource opens the change source the watcher file configures: one
// tenant's, or with watcher.tenants one stream of every tenant's changes
// (the watcher keeps to its scope).
func OpenSource(ctx context.Context, cfg *config.WatcherFile, log *slog.Logger, reg prometheus.Registerer) (watcher.Source, error) {
	return openSource(ctx, cfg, log, reg, tenantlabel.New(cfg.Watcher.MaxTenantLabels))
}

func openSource(ctx context.Context, cfg *config.WatcherFile, log *slog.Logger, reg prometheus.Registerer, labels *tenantlabel.Guard) (watcher.Source, error) {
	switch cfg.Watcher.Source {
	case config.SourcePostgres:
		src, err := pgsource.New(ctx, pgsource.Config{
			DSN: cfg.Watcher.Postgres.DSN, Tenant: cfg.Watcher.Tenant, TenantColumn: cfg.Watcher.Postgres.TenantColumn,
			TenantFrom:  cfg.Watcher.Postgres.TenantFrom,
			Publication: cfg.Watcher.Postgres.Publication, Slot: cfg.Watcher.Postgres.Slot, Tables: cfg.Watcher.Postgres.Tables,
			Logger: log, Registerer: reg, TenantLabels: labels,
		})
		if err != nil {
			return nil, fmt.Errorf("postgres source: %w", err)
		}
		return src, nil
	default:
		tenant := cfg.Watcher.Tenant
		tenant = cmp.Or(tenant, docstore.AllTenants)
		src, err := docstore.OpenSource(ctx, docstore.Config{Path: cfg.Watcher.SQLite.Path, Logger: log}, tenant)
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

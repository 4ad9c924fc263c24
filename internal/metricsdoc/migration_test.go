package metricsdoc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

const migrationDoc = "../../docs/migration.md"

// BEGIN migration example

// loadEngine builds the engine of one tenant and activates its trigger
// files. Any error means nothing was activated: stop the service (or keep
// it unready) instead of running without triggers.
func loadEngine(log *slog.Logger, src watcher.Source, nc *nats.Conn, reg prometheus.Registerer, tenant, dir string) (engine.TriggerFactory, error) {
	f, err := engine.NewFactory(
		engine.Deps{Logger: log, Source: src, NATS: nc, Registerer: reg},
		engine.WithConfig(engine.Config{Tenant: tenant}),
	)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	v, err := trigger.NewValidator(tenant, trigger.Limits{}, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	ts, err := trigger.LoadTriggers(dir, v) // every problem of every file at once
	if err == nil {
		err = f.Engine().LoadTriggers(ts) // validates again, activates all or nothing
	}
	if err != nil {
		f.Close()
		var ve *trigger.ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				log.Error("invalid trigger", "problem", p.String()) // file:line, trigger, field
			}
		}
		return nil, fmt.Errorf("triggers in %s: %w", dir, err)
	}
	return f, nil
}

// reloadTriggers swaps in the files' current content. A failed reload
// keeps the previous set active and turns triggerflow_triggers_load_failed
// on: report it, do not exit.
func reloadTriggers(log *slog.Logger, eng engine.TriggerEngine, tenant, dir string) error {
	v, err := trigger.NewValidator(tenant, trigger.Limits{}, nil)
	if err != nil {
		return err
	}
	ts, err := trigger.LoadTriggers(dir, v)
	if err == nil {
		err = eng.LoadTriggers(ts)
	} else {
		eng.ReportLoadFailure(err) // files that did not load never reach the engine
	}
	if err != nil {
		log.Error("trigger reload rejected; the previous set stays active", "error", err)
	}
	return err
}

// END migration example

// TestMigrationExampleIsTheDocumentedOne keeps the code in
// docs/migration.md compiled and tested: the doc must quote the example
// above verbatim.
func TestMigrationExampleIsTheDocumentedOne(t *testing.T) {
	testenv.RequireQuoted(t, "migration_test.go", "migration", migrationDoc)
}

// TestMigrationExample runs the documented code: a valid directory loads,
// an invalid one fails with every problem and activates nothing, a bad
// reload keeps the previous set.
func TestMigrationExample(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NATS(t)
	src, err := docstore.OpenSource(ctx, docstore.Config{Path: filepath.Join(t.TempDir(), "documents.db")}, "acme")
	require.NoError(t, err)
	defer func() { require.NoError(t, src.Close()) }()

	good, bad := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(good, "orders.yaml"), []byte(`tenant: acme
triggers:
  - triggerId: order-paid
    collection: orders
    condition: event.document.status == "paid"
    url: https://hooks.example.com/paid
`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(bad, "orders.yaml"), []byte(`tenant: acme
triggers:
  - triggerId: order-paid
    collection: orders/
    url: ftp://hooks.example.com/paid
    retryPolicy: {maxAttempts: 0}
`), 0o600))

	reg := prometheus.NewRegistry()
	f, err := loadEngine(quiet(), src, ns.Conn(t), reg, "acme", good)
	require.NoError(t, err)
	defer f.Close()

	_, err = loadEngine(quiet(), src, ns.Conn(t), prometheus.NewRegistry(), "acme", bad)
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	var ve *trigger.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 3, "one load reports every problem: %v", err)

	require.ErrorIs(t, reloadTriggers(quiet(), f.Engine(), "acme", bad), trigger.ErrInvalidTriggers)
	require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_triggers_load_failed", prometheus.Labels{"tenant": "acme"}))
	require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_triggers_active", prometheus.Labels{"tenant": "acme"}), "the previous set stays active")
	require.NoError(t, reloadTriggers(quiet(), f.Engine(), "acme", good))
	require.Equal(t, 0.0, testenv.Metric(t, reg, "triggerflow_triggers_load_failed", prometheus.Labels{"tenant": "acme"}))
}

package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEngine(t *testing.T) engine.TriggerEngine {
	t.Helper()
	f, err := engine.NewFactory(engine.Deps{Logger: quietLogger()}, engine.WithConfig(engine.Config{Tenant: "acme"}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f.Engine()
}

func activeIDs(t *testing.T, e engine.TriggerEngine) []string {
	t.Helper()
	set := e.(interface{ Active() *engine.Set }).Active()
	if set == nil {
		return nil
	}
	var ids []string
	for _, tr := range set.Triggers {
		ids = append(ids, tr.ID)
	}
	return ids
}

func tr(id, tenant, url string) *trigger.Trigger {
	return &trigger.Trigger{ID: id, Tenant: tenant, Collection: "orders", URL: url}
}

func TestLoadTriggersSwapsAtomically(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("a", "acme", "https://x.example/a")}))
	require.Equal(t, []string{"a"}, activeIDs(t, e))

	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("b", "acme", "https://x.example/b"), tr("c", "acme", "https://x.example/c")}))
	require.Equal(t, []string{"b", "c"}, activeIDs(t, e), "a second call replaces the set")
}

func TestFailedLoadKeepsPreviousSet(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("a", "acme", "https://x.example/a")}))

	err := e.LoadTriggers([]*trigger.Trigger{
		tr("ok", "acme", "https://x.example/ok"),
		tr("wrong-tenant", "other", "https://x.example/w"),
		tr("bad-url", "acme", "ftp://x.example/b"),
	})
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	var ve *trigger.ValidationError
	require.True(t, errors.As(err, &ve))
	require.Len(t, ve.Problems, 2, "every problem is reported")
	require.Equal(t, []string{"a"}, activeIDs(t, e), "nothing of the failed set is active")
}

func TestInvalidFilesActivateNothing(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	ts, err := trigger.LoadTriggers("../trigger/testdata/invalid/tenant-mismatch.yaml", nil)
	require.NoError(t, err, "without a scope the file is valid")
	require.ErrorIs(t, e.LoadTriggers(ts), trigger.ErrInvalidTriggers, "the engine enforces its scope")
	require.Nil(t, activeIDs(t, e))
}

func TestConcurrentLoadsLeaveOneCompleteSet(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	sets := [][]*trigger.Trigger{
		{tr("a1", "acme", "https://x.example"), tr("a2", "acme", "https://x.example")},
		{tr("b1", "acme", "https://x.example"), tr("b2", "acme", "https://x.example")},
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { require.NoError(t, e.LoadTriggers(sets[i%2])) })
	}
	wg.Wait()
	ids := activeIDs(t, e)
	require.True(t, ids[0][0] == ids[1][0], "never a mix of two sets: %v", ids)
}

func TestStartRequiresTriggers(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	require.ErrorIs(t, e.Start(context.Background()), engine.ErrNoTriggers)

	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("a", "acme", "https://x.example")}))
	require.ErrorIs(t, e.Start(context.Background()), engine.ErrNoDeps)

	require.NoError(t, e.Close())
	require.ErrorIs(t, e.Start(context.Background()), engine.ErrClosed)
}

func TestNewFactoryValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := engine.NewFactory(engine.Deps{})
	require.ErrorContains(t, err, "Tenant is required")
	_, err = engine.NewFactory(engine.Deps{}, engine.WithConfig(engine.Config{Tenant: "a.b"}))
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
}

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
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
	set := e.Active("acme")
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

// version returns a complete trigger set: n triggers whose ids, URLs and
// conditions all name the version v, so that a set mixing two versions, or
// triggers with another version's conditions, cannot pass for whole.
func version(v string, n int) []*trigger.Trigger {
	ts := make([]*trigger.Trigger, n)
	for i := range ts {
		id := fmt.Sprintf("%s%d", v, i)
		ts[i] = tr(id, "acme", "https://x.example/"+v)
		ts[i].Condition = fmt.Sprintf(`event.document.version == %q`, id)
	}
	return ts
}

// wholeVersion reports which of versions set is, or why it is none of
// them: every trigger and every compiled condition of one version, in
// order, and nothing else.
func wholeVersion(set *engine.Set, versions map[string][]*trigger.Trigger) (string, error) {
	if set == nil || len(set.Triggers) == 0 {
		return "", errors.New("no active set")
	}
	v := set.Triggers[0].ID[:1]
	want, ok := versions[v]
	if !ok {
		return "", fmt.Errorf("unknown version of trigger %q", set.Triggers[0].ID)
	}
	if len(set.Triggers) != len(want) || len(set.Conditions) != len(want) {
		return "", fmt.Errorf("generation %d: %d triggers and %d conditions, version %s has %d",
			set.Generation, len(set.Triggers), len(set.Conditions), v, len(want))
	}
	for i, w := range want {
		if got := set.Triggers[i]; got.ID != w.ID || got.URL != w.URL {
			return "", fmt.Errorf("generation %d: trigger %d is %s (%s) in version %s", set.Generation, i, got.ID, got.URL, v)
		}
		if got := set.Conditions[i].Source(); got != w.Condition {
			return "", fmt.Errorf("generation %d: condition %d is %q in version %s", set.Generation, i, got, v)
		}
	}
	return v, nil
}

// TestLoadTriggersSwapsAtomically: while loads alternate between two
// complete sets, readers of the active set only ever see one whole set —
// its triggers, its conditions and its generation together — never a
// mix, a part, or a generation going back. Each load waits until every
// reader has seen it, so the readers read across every swap. Run it with
// -race: a set changed in place after it was published is a data race.
func TestLoadTriggersSwapsAtomically(t *testing.T) {
	t.Parallel()
	const (
		loads   = 200
		readers = 4
	)
	e := newEngine(t)
	active := e.Active
	// Different sizes: a set cut short or overlong is visible too.
	versions := map[string][]*trigger.Trigger{"a": version("a", 3), "b": version("b", 5)}
	// The first load is generation 1; from then on odd generations are a,
	// even ones b.
	versionOf := func(gen uint64) string { return map[uint64]string{1: "a", 0: "b"}[gen%2] }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu      sync.Mutex
		problem error
		seen    [readers]atomic.Uint64 // the newest generation each reader saw
		gens    [readers]int           // generations each reader saw
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if problem == nil {
			problem = err
		}
		mu.Unlock()
		cancel()
	}
	require.NoError(t, e.LoadTriggers(versions["a"]))
	for r := range readers {
		wg.Go(func() {
			var last uint64
			for ctx.Err() == nil {
				set := active("acme")
				v, err := wholeVersion(set, versions)
				switch {
				case err != nil:
					fail(fmt.Errorf("reader %d: %w", r, err))
					return
				case set.Generation < last:
					fail(fmt.Errorf("reader %d: generation %d after %d", r, set.Generation, last))
					return
				case v != versionOf(set.Generation):
					fail(fmt.Errorf("reader %d: generation %d holds version %s, loaded was %s", r, set.Generation, v, versionOf(set.Generation)))
					return
				}
				if set.Generation == last {
					runtime.Gosched() // nothing new: let the loader run
					continue
				}
				last = set.Generation
				gens[r]++
				seen[r].Store(last)
				if last == loads {
					return
				}
			}
		})
	}
	// awaitReaders returns once every reader has seen generation gen.
	awaitReaders := func(gen uint64) {
		for r := 0; r < readers && ctx.Err() == nil; {
			if seen[r].Load() >= gen {
				r++
				continue
			}
			runtime.Gosched() // the readers are spinning; let them run
		}
	}
	awaitReaders(1)
	for gen := uint64(2); gen <= loads && ctx.Err() == nil; gen++ {
		if err := e.LoadTriggers(versions[versionOf(gen)]); err != nil {
			fail(fmt.Errorf("load of generation %d: %w", gen, err))
			break
		}
		awaitReaders(gen)
	}
	wg.Wait()
	require.NoError(t, problem)
	for r := range readers {
		require.EqualValues(t, loads, seen[r].Load(), "reader %d saw the last load", r)
		require.Equal(t, loads, gens[r], "reader %d saw every generation", r)
	}
	v, err := wholeVersion(active("acme"), versions)
	require.NoError(t, err)
	require.Equal(t, versionOf(loads), v, "the last load is active")
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
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() { errs <- e.LoadTriggers(sets[i%2]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	set := e.Active("acme")
	require.EqualValues(t, 20, set.Generation, "every load succeeded")
	ids := activeIDs(t, e)
	require.Contains(t, [][]string{{"a1", "a2"}, {"b1", "b2"}}, ids, "exactly one whole set, never a mix")
	require.Len(t, set.Conditions, len(ids))
}

func TestRunRequiresTriggers(t *testing.T) {
	t.Parallel()
	f, err := engine.NewFactory(engine.Deps{Logger: quietLogger()}, engine.WithConfig(engine.Config{Tenant: "acme"}))
	require.NoError(t, err)
	e := f.Engine()
	require.ErrorIs(t, e.Run(context.Background()), engine.ErrNoTriggers)

	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("a", "acme", "https://x.example")}))
	require.ErrorIs(t, e.Run(context.Background()), engine.ErrNoDeps)

	require.NoError(t, f.Close())
	require.ErrorIs(t, e.Run(context.Background()), engine.ErrClosed)
}

func TestNewFactoryValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := engine.NewFactory(engine.Deps{}, engine.WithConfig(engine.Config{Tenant: "a.b"}))
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
}

// A factory without a tenant builds the delivery side only: its engine
// refuses to load or run, and the other stages say which dependency they
// lack.
func TestFactoryWithoutTenant(t *testing.T) {
	t.Parallel()
	f, err := engine.NewFactory(engine.Deps{Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	e := f.Engine()
	require.ErrorIs(t, e.LoadTriggers(nil), engine.ErrNoTenant)
	require.ErrorIs(t, e.Run(context.Background()), engine.ErrNoTenant)
	require.ErrorIs(t, e.Ready(context.Background()), engine.ErrNoTenant)
	require.Nil(t, e.Active("acme"))

	_, err = f.Ingester()
	require.ErrorIs(t, err, engine.ErrNoDeps)
	require.ErrorIs(t, f.RegisterWorker(nil), engine.ErrNoDeps)
}

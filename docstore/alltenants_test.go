package docstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/watcher"
	"github.com/triggerflow/triggerflow/watcher/watchertest"
)

// TestConformanceAllTenants runs the suite against an all-tenant source
// over one tenant's data: with no other tenant's rows it must behave as a
// tenant's source does. (The SQL writer's noise tenant would be reported
// by this source, as it should be, so only the API writer runs here.)
func TestConformanceAllTenants(t *testing.T) {
	t.Parallel()
	h := harness(func(t *testing.T, path string) watchertest.Writer {
		st := openStore(t, docstore.Config{Path: path})
		return &apiWriter{st: st, raw: rawDB(t, path)}
	})
	newEnv := h.New
	h.New = func(t *testing.T) watchertest.Env {
		env := newEnv(t)
		path := env.Writer.(*apiWriter).st.Path()
		env.Open = func(t *testing.T) watcher.Source {
			src, err := docstore.OpenSource(t.Context(), docstore.Config{Path: path}, docstore.AllTenants)
			require.NoError(t, err)
			return src
		}
		return env
	}
	watchertest.RunSourceConformance(t, h)
}

// putInterleaved puts n documents for each tenant, round robin, and
// returns the tenant of each change in seq order.
func putInterleaved(t *testing.T, st *docstore.Store, n int, tenants ...string) []string {
	t.Helper()
	var order []string
	for i := range n {
		for _, tn := range tenants {
			require.NoError(t, st.Put(t.Context(), tn, "orders", fmt.Sprint(i), json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))))
			order = append(order, tn)
		}
	}
	return order
}

func TestAllTenantsWatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{BatchSize: 4}) // several batches
	all := source(t, st, docstore.AllTenants)
	require.Equal(t, docstore.AllTenants, all.Tenant())

	head, err := all.Head(ctx)
	require.NoError(t, err)
	require.Empty(t, head, "an empty log has no head")

	order := putInterleaved(t, st, 5, "acme", "globex", "initech")
	// A writer going around Put can store a tenant no watcher may serve.
	exec(t, rawDB(t, st.Path()), `INSERT INTO documents (tenant, collection, id, data) VALUES ('bad tenant', 'orders', 'x', '{}')`)
	order = append(order, "bad tenant")

	got := collect(t, all, "", len(order))
	for i, c := range got {
		require.Equal(t, docstore.FormatPosition(int64(i+1)), c.Position, "#%d", i)
		require.Equal(t, order[i], c.Tenant, "#%d", i)
		if i < len(order)-1 {
			require.Empty(t, c.Problem, "#%d", i)
		}
	}
	require.Contains(t, got[len(got)-1].Problem, "invalid tenant")

	head, err = all.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, got[len(got)-1].Position, head, "Head is the newest change of any tenant")

	// Resuming in the middle yields every tenant's later changes.
	rest := collect(t, all, got[6].Position, len(got)-7)
	require.Equal(t, got[7:], rest)

	err = all.Watch(ctx, docstore.FormatPosition(int64(len(got)+1)), func(watcher.Change) error { return nil })
	require.ErrorIs(t, err, docstore.ErrInvalidPosition, "a position past the head is from another database")
}

func TestAllTenantsOpenSource(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	st := openStore(t, docstore.Config{Path: path})
	putInterleaved(t, st, 1, "acme", "globex")
	src, err := docstore.OpenSource(t.Context(), docstore.Config{Path: path}, docstore.AllTenants)
	require.NoError(t, err)
	got := collect(t, src, "", 2)
	require.Equal(t, "acme", got[0].Tenant)
	require.Equal(t, "globex", got[1].Tenant)
	require.NoError(t, src.Close())
	require.ErrorIs(t, docstore.CheckTenant(docstore.AllTenants), docstore.ErrInvalidTenant, "AllTenants must never name a tenant")
}

// TestConfirmTenantsPrunesNamedTenants confirms two of three tenants under
// a retention: each named tenant loses its confirmed changes past
// retention, as Confirm would, and the third keeps everything.
func TestConfirmTenantsPrunesNamedTenants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{Retention: time.Hour})
	db := rawDB(t, st.Path())
	order := putInterleaved(t, st, 6, "a", "b", "c")
	all := source(t, st, docstore.AllTenants)
	got := collect(t, all, "", len(order))
	through := got[11].Position // each tenant's first four changes

	// Age every change but a's third (seq 7) and later past retention.
	exec(t, db, `UPDATE changes SET committed_at = committed_at - 7200000 WHERE tenant <> 'a' OR seq < 7`)
	require.NoError(t, all.ConfirmTenants(ctx, through, []string{"b", "a", "b"}))
	require.Equal(t, 4, countChanges(t, db, "a"), "a keeps its young changes and what lies after them")
	require.Equal(t, 2, countChanges(t, db, "b"), "b loses its confirmed, old changes")
	require.Equal(t, 6, countChanges(t, db, "c"), "an unnamed tenant keeps everything")

	// A tenant's source knows what was pruned of it.
	err := source(t, st, "b").Watch(ctx, got[2].Position, func(watcher.Change) error { return nil })
	require.ErrorIs(t, err, docstore.ErrPruned)
	// The all-tenant reader starts behind b's pruned changes: its watcher
	// skips b's changes up to b's checkpoint, which is at least there.
	// a's 1 and 4 and b's 2, 5, 8 and 11 are gone.
	// (Aging moved their commit times, so compare what identifies them.)
	key := func(c watcher.Change) string { return c.Tenant + "@" + c.Position }
	var want, have []string
	for _, c := range got[3:] {
		if seq, _ := docstore.ParsePosition(c.Position); !slices.Contains([]int64{4, 5, 8, 11}, seq) {
			want = append(want, key(c))
		}
	}
	for _, c := range collect(t, all, got[2].Position, len(want)) {
		have = append(have, key(c))
	}
	require.Equal(t, want, have)

	// Confirming again once a's changes are old prunes them too.
	exec(t, db, `UPDATE changes SET committed_at = committed_at - 7200000 WHERE tenant = 'a'`)
	require.NoError(t, all.ConfirmTenants(ctx, through, []string{"a"}))
	require.Equal(t, 2, countChanges(t, db, "a"))
	require.Equal(t, 6, countChanges(t, db, "c"))
}

func TestConfirmTenantsChecks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	putInterleaved(t, st, 3, "acme", "globex")
	all := source(t, st, docstore.AllTenants)

	err := all.ConfirmTenants(ctx, docstore.FormatPosition(100), []string{"acme"})
	require.ErrorIs(t, err, docstore.ErrInvalidPosition, "confirming past the head would prune unseen changes")
	require.ErrorIs(t, all.ConfirmTenants(ctx, "12ab", []string{"acme"}), docstore.ErrInvalidPosition)
	require.ErrorIs(t, all.ConfirmTenants(ctx, "1", []string{"acme", "bad tenant"}), docstore.ErrInvalidTenant)
	require.ErrorIs(t, all.ConfirmTenants(ctx, "1", []string{docstore.AllTenants}), docstore.ErrInvalidTenant)
	require.NoError(t, all.ConfirmTenants(ctx, "", []string{"acme"}), `confirming "" does nothing`)
	require.NoError(t, all.ConfirmTenants(ctx, "6", nil), "confirming no tenant does nothing")
	require.Equal(t, 3, countChanges(t, db, "acme"))

	// Confirm cannot tell whose changes it may release, so it releases none.
	require.NoError(t, all.Confirm(ctx, "6"))
	require.Equal(t, 3, countChanges(t, db, "acme"))
	require.Equal(t, 3, countChanges(t, db, "globex"))
	require.ErrorIs(t, all.Confirm(ctx, "x"), docstore.ErrInvalidPosition)
}

// TestTenantSourceConfirmTenants: a tenant's source confirms its own
// tenant exactly as Confirm does, and refuses to confirm others.
func TestTenantSourceConfirmTenants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	putInterleaved(t, st, 4, "acme", "globex")
	acme := source(t, st, "acme")

	err := acme.ConfirmTenants(ctx, "4", []string{"acme", "globex"})
	require.ErrorIs(t, err, docstore.ErrInvalidTenant)
	require.ErrorContains(t, err, "globex")
	require.Equal(t, 4, countChanges(t, db, "acme"), "a refused confirmation confirms nothing")
	require.Equal(t, 4, countChanges(t, db, "globex"))

	require.NoError(t, acme.ConfirmTenants(ctx, "4", []string{"acme"}))
	require.Equal(t, 2, countChanges(t, db, "acme"))
	require.Equal(t, 4, countChanges(t, db, "globex"))
	err = acme.Watch(ctx, "2", func(watcher.Change) error { return nil })
	require.ErrorIs(t, err, docstore.ErrPruned)
}

// TestConfirmTenantsLargeBacklog prunes more rows than one transaction
// may delete, spread over tenants, one of which alone exceeds the batch.
func TestConfirmTenantsLargeBacklog(t *testing.T) {
	t.Parallel()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	fill(t, db, "a", 700, 10)
	fill(t, db, "b", 2300, 10)
	fill(t, db, "c", 10, 10)
	fill(t, db, "d", 600, 10)
	all := source(t, st, docstore.AllTenants)
	require.NoError(t, all.ConfirmTenants(t.Context(), docstore.FormatPosition(3009), []string{"a", "b", "d"}))
	require.Zero(t, countChanges(t, db, "a"))
	require.Zero(t, countChanges(t, db, "b"))
	require.Equal(t, 10, countChanges(t, db, "c"))
	require.Equal(t, 600, countChanges(t, db, "d"), "d's changes all lie after the confirmed position")

	// Each tenant's source sees the pruning.
	err := source(t, st, "b").Watch(t.Context(), docstore.FormatPosition(2000), func(watcher.Change) error { return nil })
	require.ErrorIs(t, err, docstore.ErrPruned)
}

// TestWatcherOverAllTenants runs a watcher serving two of three tenants
// from one all-tenant source: it sees only its tenants' changes, saves
// their checkpoints, and its confirmation leaves the third tenant's
// history alone.
func TestWatcherOverAllTenants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	order := putInterleaved(t, st, 5, "c", "a", "b") // b's change is last
	all := source(t, st, docstore.AllTenants)
	cp := all.Checkpoints()
	start := docstore.FormatPosition(0)
	require.NoError(t, cp.SaveAll(ctx, map[string]string{
		watcher.CheckpointPrefix + "a": start,
		watcher.CheckpointPrefix + "b": start,
	}))

	w, err := watcher.New(all, watcher.Config{Tenants: []string{"a", "b"}})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []watcher.Change
	err = w.Run(runCtx, func(_ context.Context, c watcher.Change, done func()) error {
		got = append(got, c)
		done()
		if len(got) == 10 {
			cancel()
		}
		return nil
	})
	require.NoError(t, err)
	for _, c := range got {
		require.Contains(t, []string{"a", "b"}, c.Tenant)
	}
	last := docstore.FormatPosition(int64(len(order)))
	saved, err := cp.List(ctx, watcher.CheckpointPrefix)
	require.NoError(t, err)
	require.Equal(t, map[string]string{watcher.CheckpointPrefix + "a": last, watcher.CheckpointPrefix + "b": last}, saved)

	require.Zero(t, countChanges(t, db, "a"), "the final checkpoint was confirmed for a")
	require.Zero(t, countChanges(t, db, "b"), "the final checkpoint was confirmed for b")
	require.Equal(t, 5, countChanges(t, db, "c"), "c is served by no one here and keeps its history")
}

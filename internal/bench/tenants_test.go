package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/evaluator"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// TestTenantWorkloadMatchesTheTriggers runs a small tenants workload
// through the evaluator with the trigger files the row writes: every
// change makes exactly the tasks the workload expects, so the row's
// count of stored tasks is a check of the pipeline.
func TestTenantWorkloadMatchesTheTriggers(t *testing.T) {
	t.Parallel()
	const tenants = 3
	dir := t.TempDir()
	require.NoError(t, writeTenantTriggers(dir, tenants))
	compiler, err := condition.NewCompiler(0)
	require.NoError(t, err)
	v, err := trigger.NewScopeValidator([]string{trigger.AllTenants}, trigger.Limits{}, compiler)
	require.NoError(t, err)
	sets, err := trigger.LoadByTenant(dir, v)
	require.NoError(t, err)
	require.NoError(t, sets.Err())
	require.Len(t, sets.Triggers, tenants)

	ev, err := evaluator.New(evaluator.Config{})
	require.NoError(t, err)
	index := map[string]*evaluator.Index{}
	for tenant, ts := range sets.Triggers {
		require.Len(t, ts, tenantTriggers)
		progs, err := v.Validate(ts)
		require.NoError(t, err)
		if index[tenant], err = ev.Compile(ts, progs); err != nil {
			t.Fatal(err)
		}
	}

	changes, total := TenantWorkload(tenants, 600)
	again, _ := TenantWorkload(tenants, 600)
	require.Equal(t, changes, again, "the workload is the same every run")
	sum, updates := 0, 0
	for i, c := range changes {
		wc := watcher.Change{Tenant: c.Tenant, Collection: c.Collection, DocKey: c.ID, Type: trigger.EventCreate, After: marshal(t, c.After)}
		if c.Before != nil {
			wc.Type, wc.Before = trigger.EventUpdate, marshal(t, c.Before)
			updates++
		}
		m, err := index[c.Tenant].Match(context.Background(), &wc)
		require.NoError(t, err)
		require.Len(t, m, c.Tasks, "change %d: %+v", i, c)
		sum += c.Tasks
	}
	require.Equal(t, total, sum)
	require.InDelta(t, 1.0, float64(total)/float64(len(changes)), 0.3, "about one task per change")
	require.Greater(t, updates, 100, "updates are part of the mix")
}

func marshal(t *testing.T, m map[string]any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestTenantsTable(t *testing.T) {
	t.Parallel()
	r := &Report{Tenants: []TenantsResult{{Name: "tenants (PostgreSQL)", Tenants: 1000, Triggers: 5000, Changes: 10, Tasks: 11, ChangesPerSec: 12345, Slots: 1, CPUPerChangeUs: map[string]float64{"watcher": 50}}}}
	var buf bytes.Buffer
	require.NoError(t, r.WriteTable(&buf))
	require.Contains(t, buf.String(), "1000 × 5")
	require.Contains(t, buf.String(), "12345")
	require.Contains(t, buf.String(), "cpu µs/change tenants (PostgreSQL): watcher 50")
	require.NotContains(t, buf.String(), "deliv/s", "no rows table without rows")
}

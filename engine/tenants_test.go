package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
)

func newScopedEngine(t *testing.T, reg prometheus.Registerer, tenants ...string) engine.TriggerEngine {
	t.Helper()
	f, err := engine.NewFactory(engine.Deps{Logger: quietLogger(), Registerer: reg}, engine.WithConfig(engine.Config{Tenants: tenants}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f.Engine()
}

func ids(set *engine.Set) []string {
	if set == nil {
		return nil
	}
	var out []string
	for _, tr := range set.Triggers {
		out = append(out, tr.ID)
	}
	return out
}

// A broken trigger of one tenant keeps only that tenant on its previous
// set; the others take their new one.
func TestLoadIsAllOrNothingPerTenant(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newScopedEngine(t, reg, trigger.AllTenants)
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{
		tr("a1", "acme", "https://x.example/a"), tr("g1", "globex", "https://x.example/g"),
	}))
	require.Equal(t, []string{"acme", "globex"}, e.Tenants())

	err := e.LoadTriggers([]*trigger.Trigger{
		tr("a2", "acme", "https://x.example/a"), tr("bad", "acme", "ftp://x.example/a"),
		tr("g2", "globex", "https://x.example/g"),
	})
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	require.Contains(t, err.Error(), `trigger "bad"`)
	require.Equal(t, []string{"a1"}, ids(e.Active("acme")), "acme keeps its previous set")
	require.Equal(t, []string{"g2"}, ids(e.Active("globex")), "globex is untouched by acme's problem")
	require.Equal(t, 1.0, failed(t, reg, "acme"))
	require.Equal(t, 0.0, failed(t, reg, "globex"))

	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{tr("a3", "acme", "https://x.example/a")}))
	require.Equal(t, []string{"a3"}, ids(e.Active("acme")))
	require.Nil(t, e.Active("globex"), "in an all-tenants scope a tenant without triggers leaves")
	require.Equal(t, []string{"acme"}, e.Tenants())
	require.Equal(t, 0.0, failed(t, reg, "acme"))
}

// A listed scope serves its tenants even without triggers, and refuses
// triggers of a tenant outside it without keeping the others out.
func TestListedScope(t *testing.T) {
	t.Parallel()
	e := newScopedEngine(t, nil, "acme", "globex")
	err := e.LoadTriggers([]*trigger.Trigger{tr("a1", "acme", "https://x.example/a"), tr("i1", "initech", "https://x.example/i")})
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	require.Contains(t, err.Error(), `tenant: "initech" is not in the watcher's tenant scope (acme, globex)`)
	require.Equal(t, []string{"acme", "globex"}, e.Tenants(), "initech is not served; globex is, with no triggers")
	require.Equal(t, []string{"a1"}, ids(e.Active("acme")))
	require.Empty(t, ids(e.Active("globex")))
}

// A file too broken to say whose it is keeps the tenants whose triggers
// it held before on their previous set.
func TestUnparseableFileKeepsItsTenants(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("acme.yaml", "tenant: acme\ntriggers:\n  - {triggerId: a1, collection: orders, url: https://x.example/a}\n")
	write("globex.yaml", "tenant: globex\ntriggers:\n  - {triggerId: g1, collection: orders, url: https://x.example/g}\n")
	e := newScopedEngine(t, nil, trigger.AllTenants)
	res, err := trigger.LoadByTenant(dir, nil)
	require.NoError(t, err)
	require.NoError(t, e.LoadSets(res))

	write("acme.yaml", "tenant: acme\ntriggers: [ {unclosed\n")
	write("globex.yaml", "tenant: globex\ntriggers:\n  - {triggerId: g2, collection: orders, url: https://x.example/g}\n")
	res, err = trigger.LoadByTenant(dir, nil)
	require.NoError(t, err)
	require.NotNil(t, res.Unattributed)
	err = e.LoadSets(res)
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	require.Contains(t, err.Error(), "acme.yaml")
	require.Equal(t, []string{"a1"}, ids(e.Active("acme")), "acme is neither replaced nor removed")
	require.Equal(t, []string{"g2"}, ids(e.Active("globex")))
}

func TestScopeConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := engine.NewFactory(engine.Deps{}, engine.WithConfig(engine.Config{Tenant: "acme", Tenants: []string{"globex"}}))
	require.ErrorContains(t, err, "mutually exclusive")
	_, err = engine.NewFactory(engine.Deps{}, engine.WithConfig(engine.Config{Tenants: []string{"a.b"}}))
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
}

func failed(t *testing.T, reg *prometheus.Registry, tenant string) float64 {
	t.Helper()
	return testenv.Metric(t, reg, "triggerflow_triggers_load_failed", prometheus.Labels{"tenant": tenant})
}

// A misspelt tenant field, or a directory that holds no trigger files any
// more, keeps the tenants whose triggers were there on their previous set.
func TestUnownedProblemsKeepThePreviousSets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "demo.yaml")
	require.NoError(t, os.WriteFile(file, []byte("tenant: demo\ntriggers:\n  - {triggerId: d1, collection: orders, url: https://x.example/d}\n"), 0o600))
	e := newScopedEngine(t, nil, "demo", "acme")
	v, err := trigger.NewScopeValidator([]string{"demo", "acme"}, trigger.Limits{}, nil)
	require.NoError(t, err)
	res, err := trigger.LoadByTenant(dir, v)
	require.NoError(t, err)
	require.NoError(t, e.LoadSets(res))
	require.Equal(t, []string{"d1"}, ids(e.Active("demo")))

	require.NoError(t, os.WriteFile(file, []byte("tenat: demo\ntriggers:\n  - {triggerId: d2, collection: orders, url: https://x.example/d}\n"), 0o600))
	res, err = trigger.LoadByTenant(dir, v)
	require.NoError(t, err)
	require.Error(t, e.LoadSets(res))
	require.Equal(t, []string{"d1"}, ids(e.Active("demo")), "a typo in the tenant field keeps demo's set")

	require.NoError(t, os.Remove(file))
	res, err = trigger.LoadByTenant(dir, v)
	require.NoError(t, err)
	require.Error(t, e.LoadSets(res))
	require.Equal(t, []string{"d1"}, ids(e.Active("demo")), "an empty directory keeps every set")
}

// Tenants folded into one metric label share its series: the load-failed
// gauge stays on while any of them failed, and the triggers gauge sums them.
func TestFoldedTenantsShareTheirMetricSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f, err := engine.NewFactory(engine.Deps{Logger: quietLogger(), Registerer: reg},
		engine.WithConfig(engine.Config{Tenants: []string{trigger.AllTenants}, MaxTenantLabels: 1}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	e := f.Engine()
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{
		tr("a1", "acme", "https://x.example/a"), tr("g1", "globex", "https://x.example/g"), tr("i1", "initech", "https://x.example/i"),
	}))
	other := prometheus.Labels{"tenant": "_other"}
	require.Equal(t, 2.0, testenv.Metric(t, reg, "triggerflow_triggers_active", other), "globex and initech, summed")

	require.Error(t, e.LoadTriggers([]*trigger.Trigger{
		tr("a1", "acme", "https://x.example/a"), tr("g2", "globex", "ftp://bad"), tr("i1", "initech", "https://x.example/i"),
	}))
	// Which tenant keeps its name depends on the order the guard met them;
	// globex's failure shows either way, on its own label or on _other,
	// where another tenant's success does not hide it.
	failedSeries := testenv.Metric(t, reg, "triggerflow_triggers_load_failed", other) +
		testenv.Metric(t, reg, "triggerflow_triggers_load_failed", prometheus.Labels{"tenant": "globex"})
	require.Equal(t, 1.0, failedSeries)
}

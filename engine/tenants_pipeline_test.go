package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// startScoped runs an engine over every tenant's changes of the store,
// serving scope, until the returned stop is called.
func (p *pipeline) startScoped(t *testing.T, scope []string, ts []*trigger.Trigger, wcfg watcher.Config) (engine.TriggerEngine, func()) {
	t.Helper()
	src, err := p.store.Source(docstore.AllTenants)
	require.NoError(t, err)
	f, err := engine.NewFactory(
		engine.Deps{Logger: quietLogger(), Source: src, NATS: p.nc},
		engine.WithConfig(engine.Config{Tenants: scope, Watcher: wcfg}),
	)
	require.NoError(t, err)
	require.NoError(t, f.Engine().LoadTriggers(ts))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Engine().Run(ctx) }()
	waitReady(t, f.Engine(), errc)
	return f.Engine(), func() {
		cancel()
		require.NoError(t, <-errc)
		require.NoError(t, f.Close())
	}
}

// allTasks returns every task on the stream, in stream order.
func (p *pipeline) allTasks(t *testing.T) []*trigger.DeliveryTask {
	t.Helper()
	ctx := context.Background()
	s, err := p.js.Stream(ctx, "TRIGGERS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	var out []*trigger.DeliveryTask
	for _, m := range p.tasks(t, int(info.State.Msgs)) {
		out = append(out, decode(t, m))
	}
	return out
}

// waitTask waits until a task for docKey is on the stream.
func (p *pipeline) waitTask(t *testing.T, tenant, docKey string) {
	t.Helper()
	subject := fmt.Sprintf("TRIGGERS.%s.*.*", tenant)
	cons, err := p.js.OrderedConsumer(context.Background(), "TRIGGERS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	deadline := time.Now().Add(20 * time.Second)
	for found := false; !found; {
		require.True(t, time.Now().Before(deadline), "no task for %s/%s", tenant, docKey)
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
		require.NoError(t, err)
		for m := range batch.Messages() { // read to the end: the fetch stops with it
			found = found || decode(t, m).DocKey == docKey
		}
	}
}

func hook(tenant, id string) string { return "https://hooks.example.com/" + tenant + "/" + id }

// TestTenantIsolationProperty serves a random subset of 50 tenants whose
// changes interleave in one stream: every task carries the tenant of its
// change and one of that tenant's own triggers, every change of a served
// tenant yields exactly the tasks its triggers call for, and no change of
// another tenant yields any.
func TestTenantIsolationProperty(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	p := newPipeline(t)
	tenants := make([]string, 50)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("t%02d", i)
	}
	served := map[string]bool{}
	var ts []*trigger.Trigger
	collections := []string{"orders", "users"}
	watches := map[string]map[string]int{} // tenant → collection → triggers on it
	for _, tenant := range tenants {
		if rng.IntN(5) == 0 {
			continue // outside the scope: no trigger file
		}
		served[tenant] = true
		watches[tenant] = map[string]int{}
		for j := range 1 + rng.IntN(3) {
			coll := collections[rng.IntN(len(collections))]
			id := fmt.Sprintf("trg%d", j)
			ts = append(ts, &trigger.Trigger{ID: id, Tenant: tenant, Collection: coll, URL: hook(tenant, id)})
			watches[tenant][coll]++
		}
	}
	_, stop := p.startScoped(t, []string{trigger.AllTenants}, ts, watcher.Config{StartFromNow: true, CheckpointInterval: 10 * time.Millisecond})

	ctx := context.Background()
	want := map[string]int{} // docKey → tasks
	var last string
	for i := range 400 {
		tenant := tenants[rng.IntN(len(tenants))]
		coll := collections[rng.IntN(len(collections))]
		key := fmt.Sprintf("%s-%d", tenant, i)
		require.NoError(t, p.store.Put(ctx, tenant, coll, key, json.RawMessage(`{"n":1}`)))
		if n := watches[tenant][coll]; n > 0 {
			want[key] = n
			last = key
		}
	}
	p.waitTask(t, strings.SplitN(last, "-", 2)[0], last)
	stop()

	got := map[string]int{}
	for _, task := range p.allTasks(t) {
		owner := strings.SplitN(task.DocKey, "-", 2)[0]
		require.Equal(t, owner, task.Tenant, "a task carries the tenant of its change")
		require.True(t, served[task.Tenant], "no task for a tenant outside the scope")
		require.True(t, strings.HasPrefix(task.URL, hook(task.Tenant, "")), "task %s/%s matched another tenant's trigger %s", task.Tenant, task.DocKey, task.URL)
		got[task.DocKey]++
	}
	require.Equal(t, want, got, "every served change exactly as many tasks as its tenant's triggers on its collection")

	stored, err := p.store.Checkpoints().List(ctx, watcher.CheckpointPrefix)
	require.NoError(t, err)
	head, err := p.store.Source(docstore.AllTenants)
	require.NoError(t, err)
	pos, err := head.Head(ctx)
	require.NoError(t, err)
	for tenant := range served {
		require.Equal(t, pos, stored[watcher.CheckpointPrefix+tenant], "%s's checkpoint reached the end of the stream", tenant)
	}
	for _, tenant := range tenants {
		if !served[tenant] {
			require.NotContains(t, stored, watcher.CheckpointPrefix+tenant, "no checkpoint for a tenant never served")
		}
	}
}

// TestReloadBreakingOneTenantKeepsOthersDelivering reloads with one
// tenant's trigger broken: that tenant goes on under its previous set, the
// others switch to their new one, and all keep delivering.
func TestReloadBreakingOneTenantKeepsOthersDelivering(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	v1 := []*trigger.Trigger{
		{ID: "a", Tenant: "acme", Collection: "orders", URL: hook("acme", "a")},
		{ID: "g", Tenant: "globex", Collection: "orders", URL: hook("globex", "g")},
		{ID: "i", Tenant: "initech", Collection: "orders", URL: hook("initech", "i")},
	}
	e, stop := p.startScoped(t, []string{trigger.AllTenants}, v1, watcher.Config{StartFromNow: true})
	defer stop()

	v2 := []*trigger.Trigger{
		{ID: "a", Tenant: "acme", Collection: "orders", URL: hook("acme", "a")},
		{ID: "a2", Tenant: "acme", Collection: "orders", URL: hook("acme", "a2")},
		{ID: "g2", Tenant: "globex", Collection: "orders", URL: "ftp://broken.example"},
		{ID: "i", Tenant: "initech", Collection: "orders", URL: hook("initech", "i")},
	}
	err := e.LoadTriggers(v2)
	require.ErrorIs(t, err, trigger.ErrInvalidTriggers)
	require.Contains(t, err.Error(), `trigger "g2"`)

	ctx := context.Background()
	for _, tenant := range []string{"acme", "globex", "initech"} {
		require.NoError(t, p.store.Put(ctx, tenant, "orders", tenant+"-1", json.RawMessage(`{}`)))
	}
	var urls []string
	for _, m := range p.tasks(t, 4) {
		urls = append(urls, decode(t, m).URL)
	}
	slices.Sort(urls)
	require.Equal(t, []string{hook("acme", "a"), hook("acme", "a2"), hook("globex", "g"), hook("initech", "i")}, urls,
		"acme took its new set, globex kept its old one, initech is untouched")
}

// TestTenantsAddedAndRemovedUnderLoad changes the scope while changes of
// every tenant stream in: a tenant served throughout loses nothing, an
// added tenant gets every change made after it was added (and none from
// before, being new), a removed one none made after it was removed.
func TestTenantsAddedAndRemovedUnderLoad(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	trg := func(tenant string) *trigger.Trigger {
		return &trigger.Trigger{ID: "x", Tenant: tenant, Collection: "orders", URL: hook(tenant, "x")}
	}
	e, stop := p.startScoped(t, []string{trigger.AllTenants}, []*trigger.Trigger{trg("acme"), trg("globex")},
		watcher.Config{StartFromNow: true, CheckpointInterval: 10 * time.Millisecond})

	ctx := context.Background()
	var (
		mu      sync.Mutex
		written = map[string][]int{} // tenant → sequence numbers written
		phase   = map[string]int{}   // "added"/"removed" → first sequence number after
	)
	done := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				writerDone <- nil
				return
			default:
			}
			for _, tenant := range []string{"acme", "globex", "initech"} {
				if err := p.store.Put(ctx, tenant, "orders", fmt.Sprintf("%s-%d", tenant, i), json.RawMessage(`{}`)); err != nil {
					writerDone <- err
					return
				}
				mu.Lock()
				written[tenant] = append(written[tenant], i)
				mu.Unlock()
			}
		}
	}()
	mark := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		phase[name] = len(written["acme"]) + 1 // sequences from here on began after the change
	}
	waitWritten := func(n int) {
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(written["acme"]) >= n }, 20*time.Second, time.Millisecond)
	}

	waitWritten(50)
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{trg("acme"), trg("globex"), trg("initech")}))
	mark("added")
	waitWritten(phase["added"] + 50)
	require.NoError(t, e.LoadTriggers([]*trigger.Trigger{trg("acme"), trg("initech")}))
	mark("removed")
	waitWritten(phase["removed"] + 50)
	close(done)
	require.NoError(t, <-writerDone)
	mu.Lock()
	lastAcme := written["acme"][len(written["acme"])-1]
	mu.Unlock()
	p.waitTask(t, "acme", fmt.Sprintf("acme-%d", lastAcme))
	stop()

	got := map[string]map[int]bool{}
	for _, task := range p.allTasks(t) {
		var i int
		_, err := fmt.Sscanf(strings.TrimPrefix(task.DocKey, task.Tenant+"-"), "%d", &i)
		require.NoError(t, err)
		require.Equal(t, hook(task.Tenant, "x"), task.URL)
		if got[task.Tenant] == nil {
			got[task.Tenant] = map[int]bool{}
		}
		require.False(t, got[task.Tenant][i], "no duplicate for %s", task.DocKey)
		got[task.Tenant][i] = true
	}
	for _, i := range written["acme"] {
		require.True(t, got["acme"][i], "acme, served throughout, lost change %d", i)
	}
	for _, i := range written["initech"] {
		if i >= phase["added"] {
			require.True(t, got["initech"][i], "initech lost change %d made after it was added", i)
		}
	}
	for i := range got["globex"] {
		require.Less(t, i, phase["removed"], "globex got change %d made after it was removed", i)
	}
	require.NotEmpty(t, got["globex"])
}

package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/watcher"
)

// Tests of a watcher serving several tenants from one change stream.

// tkey is a tenant's checkpoint key without include filters.
func tkey(tenant string) string { return watcher.CheckpointKeys(tenant, nil)[0] }

// failsafe bounds every wait so that a broken watcher fails the test
// instead of hanging it; no wait relies on it to synchronise.
const failsafe = 10 * time.Second

// waitUntil waits until cond holds, re-checking it each time sig fires.
func waitUntil(t *testing.T, sig *signal, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(failsafe)
	for {
		changed := sig.changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s never happened", what)
		}
	}
}

// waitCheckpoints waits until every key is stored at want.
func waitCheckpoints(t *testing.T, src *memSource, want map[string]string) {
	t.Helper()
	waitUntil(t, &src.store.changed, fmt.Sprintf("checkpoints %v", want), func() bool {
		have := src.store.snapshot()
		for k, p := range want {
			if have[k] != p {
				return false
			}
		}
		return true
	})
}

// atAll maps each tenant's checkpoint key to p.
func atAll(p string, tenants ...string) map[string]string {
	m := make(map[string]string, len(tenants))
	for _, t := range tenants {
		m[tkey(t)] = p
	}
	return m
}

// recorder is a handler that records every change it is handed.
type recorder struct {
	mu  sync.Mutex
	got []watcher.Change
	sig signal
	// hold, when set, decides which changes are finished later: their
	// done goes to held instead of being called.
	hold func(watcher.Change) bool
	held chan func()
}

func (r *recorder) handle(_ context.Context, c watcher.Change, done func()) error {
	r.mu.Lock()
	r.got = append(r.got, c)
	r.mu.Unlock()
	if r.hold != nil && r.hold(c) {
		r.held <- done
	} else {
		done()
	}
	r.sig.fire()
	return nil
}

func (r *recorder) changes() []watcher.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// positions returns the positions handed over, in order.
func (r *recorder) positions() []string {
	var out []string
	for _, c := range r.changes() {
		out = append(out, c.Position)
	}
	return out
}

// waitFor waits until every one of positions was handed over.
func (r *recorder) waitFor(t *testing.T, positions ...string) {
	t.Helper()
	waitUntil(t, &r.sig, fmt.Sprintf("delivery of %v", positions), func() bool {
		have := r.positions()
		for _, p := range positions {
			if !slices.Contains(have, p) {
				return false
			}
		}
		return true
	})
}

// runStarted starts a watcher and returns once its first session started;
// stop cancels it and returns Run's error, and runs at cleanup too.
func runStarted(t *testing.T, src watcher.Source, cfg watcher.Config, h watcher.Handler) (*watcher.DocumentWatcher, func() error) {
	t.Helper()
	started := make(chan string, 1)
	cfg.OnStarted = func(from string) { started <- from }
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 10 * time.Millisecond
	}
	w, err := watcher.New(src, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, h) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() }) // a failed test leaks no watcher
	select {
	case <-started:
	case err := <-errc:
		errc <- err
		t.Fatalf("watcher ended before starting: %v", err)
	case <-time.After(failsafe):
		t.Fatal("watcher never started")
	}
	return w, stop
}

// tlog adds changes as "tenant:doc" pairs and returns their positions.
func tlog(src *memSource, changes ...string) []string {
	var out []string
	for _, c := range changes {
		tenant, doc, _ := strings.Cut(c, ":")
		out = append(out, src.add(tenant, "orders", doc))
	}
	return out
}

// docsOf returns the doc keys handed over for tenant, in order.
func docsOf(changes []watcher.Change, tenant string) []string {
	var out []string
	for _, c := range changes {
		if c.Tenant == tenant {
			out = append(out, c.DocKey)
		}
	}
	return out
}

// requireNoDuplicates fails when a position was handed over twice.
func requireNoDuplicates(t *testing.T, changes []watcher.Change) {
	t.Helper()
	seen := make(map[string]bool)
	for _, c := range changes {
		require.False(t, seen[c.Position], "%s:%s at %s handed over twice", c.Tenant, c.DocKey, c.Position)
		seen[c.Position] = true
	}
}

// Three tenants share a stream with a fourth that is out of scope: each
// served tenant gets its own changes in order, the foreign tenant's never
// reach the handler, and every served key ends at the last position,
// saved together in one batch.
func TestMultiTenantCheckpointsEachTenant(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	tenants := []string{"a", "b", "c"}
	for _, tn := range tenants {
		src.store.m[tkey(tn)] = pos(0)
	}
	p := tlog(src, "a:a1", "x:x1", "b:b1", "c:c1", "a:a2", "x:x2", "c:c2", "b:b2")
	rec := &recorder{}
	_, stop := runStarted(t, src, watcher.Config{Tenants: tenants}, rec.handle)
	p = append(p, tlog(src, "a:a3", "c:c3", "b:b3", "x:x3")...)
	last := p[len(p)-1]
	// The last change is foreign: the keys reach it only once it was read
	// and skipped.
	waitCheckpoints(t, src, atAll(last, tenants...))
	require.NoError(t, stop())

	got := rec.changes()
	require.Len(t, got, 9)
	require.Equal(t, []string{"a1", "a2", "a3"}, docsOf(got, "a"))
	require.Equal(t, []string{"b1", "b2", "b3"}, docsOf(got, "b"))
	require.Equal(t, []string{"c1", "c2", "c3"}, docsOf(got, "c"))
	require.Empty(t, docsOf(got, "x"), "a tenant out of scope never reaches the handler")
	require.True(t, slices.IsSorted(rec.positions()), "in commit order")

	stored := src.store.snapshot()
	require.Equal(t, atAll(last, tenants...), stored, "each served key at the last position, none for the foreign tenant")
	src.store.mu.Lock()
	defer src.store.mu.Unlock()
	require.Zero(t, src.store.singles, "the watcher saves through SaveAll only")
	require.Contains(t, src.store.batches, atAll(last, tenants...), "the tenants' keys are saved in one batch")
}

// seedFromEnv returns TRIGGERFLOW_WATCHER_SEED when set, else a fresh seed.
func seedFromEnv(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("TRIGGERFLOW_WATCHER_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// Property: with 50 tenants' changes interleaved at random, a random
// scope, random stored checkpoints (some tenants without one) and changes
// finished in random order, every change handed over belongs to a tenant
// in scope and lies after that tenant's checkpoint, every such change is
// handed over exactly once, and after shutdown every served key stands at
// the last position. Rerun a failure with TRIGGERFLOW_WATCHER_SEED.
func TestMultiTenantProperty(t *testing.T) {
	t.Parallel()
	base := seedFromEnv(t)
	t.Logf("base seed %d", base)
	for i := range 4 {
		seed := base + uint64(i)
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			t.Parallel()
			t.Logf("seed %d (TRIGGERFLOW_WATCHER_SEED=%d)", seed, seed)
			testMultiTenantProperty(t, seed)
		})
	}
}

func testMultiTenantProperty(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 0x7269676765726677))
	const nTenants = 50
	all := make([]string, nTenants)
	for i := range all {
		all[i] = fmt.Sprintf("t%02d", i)
	}
	scope := slices.Clone(all)
	rnd.Shuffle(len(scope), func(i, j int) { scope[i], scope[j] = scope[j], scope[i] })
	scope = scope[:1+rnd.IntN(nTenants)]
	slices.Sort(scope)
	inScope := func(tn string) bool { return slices.Contains(scope, tn) }

	// The log: half of it is committed before the start, half while the
	// watcher runs. Positions are numbered from 1 in commit order.
	before := 200 + rnd.IntN(400)
	after := 200 + rnd.IntN(400)
	type change struct{ tenant, collection, pos string }
	var log []change
	for i := range before + after {
		tn := all[rnd.IntN(nTenants)]
		log = append(log, change{tn, fmt.Sprintf("c%d", rnd.IntN(3)), pos(i + 1)})
	}
	// The last change belongs to a served tenant, so that its delivery
	// shows the whole log was read.
	log = append(log, change{scope[0], "c0", pos(len(log) + 1)})

	src := newQuietMemSource()
	// At least one served tenant has a checkpoint, or the start would need
	// start-from-now; the others start from the head.
	ckpt := make(map[string]string)
	for i, tn := range scope {
		if i > 0 && rnd.IntN(4) == 0 {
			ckpt[tn] = pos(before) // the head at the start
			continue
		}
		ckpt[tn] = pos(rnd.IntN(before + 1))
		src.store.m[tkey(tn)] = ckpt[tn]
	}
	// A stored checkpoint of a tenant out of scope stays untouched.
	var foreign string
	for _, tn := range all {
		if !inScope(tn) {
			foreign = tn
			src.store.m[tkey(tn)] = pos(1)
			break
		}
	}
	want := 0
	for _, c := range log {
		if inScope(c.tenant) && c.pos > ckpt[c.tenant] {
			want++
		}
	}

	// The handler finishes changes in random order: it passes each done
	// to a finisher that calls them in shuffled batches.
	dones := make(chan func(), len(log))
	finisherDone := make(chan struct{})
	finisherRand := rand.New(rand.NewPCG(seed, 1))
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit) }) // a failed test leaks no finisher
	go func() {
		defer close(finisherDone)
		var batch []func()
		for n := 0; n < want; {
			select {
			case d := <-dones:
				batch = append(batch, d)
			case <-quit:
				return
			}
			n++
			if len(batch) < 1+finisherRand.IntN(20) && n < want {
				continue
			}
			finisherRand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			for _, d := range batch {
				d()
			}
			batch = batch[:0]
		}
	}()
	rec := &recorder{hold: func(watcher.Change) bool { return true }, held: dones}

	for _, c := range log[:before] {
		require.Equal(t, c.pos, src.add(c.tenant, c.collection, c.pos))
	}
	_, stop := runStarted(t, src, watcher.Config{Tenants: scope}, rec.handle)
	for _, c := range log[before:] {
		require.Equal(t, c.pos, src.add(c.tenant, c.collection, c.pos))
	}
	last := log[len(log)-1].pos
	waitUntil(t, &rec.sig, fmt.Sprintf("%d changes handed over", want), func() bool { return len(rec.changes()) >= want })
	select {
	case <-finisherDone:
	case <-time.After(failsafe):
		t.Fatal("changes handed over were never all finished")
	}
	require.NoError(t, stop())

	got := rec.changes()
	seen := make(map[string]int)
	for _, c := range got {
		require.True(t, inScope(c.Tenant), "change of %s out of scope handed over", c.Tenant)
		require.Greater(t, c.Position, ckpt[c.Tenant], "change of %s at or before its checkpoint handed over", c.Tenant)
		seen[c.Position]++
	}
	for _, c := range log {
		if inScope(c.tenant) && c.pos > ckpt[c.tenant] {
			require.Equal(t, 1, seen[c.pos], "change of %s at %s handed over %d times", c.tenant, c.pos, seen[c.pos])
		}
	}
	require.Len(t, got, want)
	stored := src.store.snapshot()
	for _, tn := range scope {
		require.Equal(t, last, stored[tkey(tn)], "checkpoint of %s", tn)
	}
	if foreign != "" {
		require.Equal(t, pos(1), stored[tkey(foreign)], "a foreign tenant's checkpoint is not touched")
	}
	for _, tn := range all {
		if !inScope(tn) && tn != foreign {
			require.NotContains(t, stored, tkey(tn), "no checkpoint written for %s out of scope", tn)
		}
	}
}

// Tenants with different stored checkpoints: the stream starts at the
// oldest, and for each tenant nothing at or before its own checkpoint is
// handed over, everything after it is, once. A second run resumes where
// the first stopped, for every tenant.
func TestMultiTenantRestartResumesPerTenant(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	p := tlog(src, "a:a1", "b:b1", "c:c1", "a:a2", "b:b2", "c:c2", "a:a3", "b:b3", "c:c3")
	src.store.m[tkey("a")] = p[3] // after a2
	src.store.m[tkey("b")] = p[1] // after b1
	src.store.m[tkey("c")] = pos(0)
	tenants := []string{"a", "b", "c"}

	rec := &recorder{}
	w, stop := runStarted(t, src, watcher.Config{Tenants: tenants}, rec.handle)
	require.Equal(t, tenants, w.Tenants())
	rec.waitFor(t, p[8])
	waitCheckpoints(t, src, atAll(p[8], tenants...))
	require.NoError(t, stop())
	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"a3"}, docsOf(got, "a"))
	require.Equal(t, []string{"b2", "b3"}, docsOf(got, "b"))
	require.Equal(t, []string{"c1", "c2", "c3"}, docsOf(got, "c"))

	// Restart with the keys at different places again: b stopped early.
	src.store.set(tkey("b"), p[4])
	q := tlog(src, "c:c4", "b:b4", "a:a4")
	rec2 := &recorder{}
	_, stop = runStarted(t, src, watcher.Config{Tenants: tenants}, rec2.handle)
	rec2.waitFor(t, q[2])
	require.NoError(t, stop())
	got = rec2.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"a4"}, docsOf(got, "a"))
	require.Equal(t, []string{"b3", "b4"}, docsOf(got, "b"))
	require.Equal(t, []string{"c4"}, docsOf(got, "c"))
	require.Equal(t, atAll(q[2], tenants...), src.store.snapshot())
}

func TestMultiTenantFirstStartWithoutCheckpointFails(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		tenants []string
		want    []string
	}{
		"few":  {[]string{"b", "a", "c"}, []string{`"a", "b", "c"`}},
		"many": {[]string{"t1", "t2", "t3", "t4", "t5", "t6", "t7"}, []string{`"t1", "t2", "t3", "t4", "t5", and 2 more`}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newQuietMemSource()
			tlog(src, "a:a1", "b:b1")
			aud := &testenv.Records[audit.Record]{}
			w, err := watcher.New(src, watcher.Config{Tenants: tc.tenants, Auditor: aud})
			require.NoError(t, err)
			err = w.Run(t.Context(), (&recorder{}).handle)
			require.ErrorIs(t, err, watcher.ErrNoCheckpoint)
			for _, s := range tc.want {
				require.ErrorContains(t, err, s, "names the tenants")
			}
			require.ErrorContains(t, err, "startFromNow")
			require.Empty(t, src.store.snapshot(), "nothing saved")
			require.Empty(t, aud.All(), "nothing audited")
		})
	}
}

// With some tenants holding checkpoints, the others start from the head
// without StartFromNow: one audit record each, their keys saved at the
// head, and only their later changes handed over.
func TestMultiTenantFreshTenantsStartFromHead(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	src.store.m[tkey("a")] = pos(0)
	p := tlog(src, "a:a1", "b:b1", "c:c1", "a:a2", "b:b2")
	head := p[len(p)-1]
	aud := &testenv.Records[audit.Record]{}
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	_, stop := runStarted(t, src, watcher.Config{Tenants: []string{"a", "b", "c"}, Auditor: aud, Actor: "ops", Registerer: reg}, rec.handle)
	require.Equal(t, head, src.store.get(tkey("b")), "saved before the first change is read")
	require.Equal(t, head, src.store.get(tkey("c")))
	q := tlog(src, "b:b3", "c:c3", "a:a3")
	rec.waitFor(t, q...)
	require.NoError(t, stop())

	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"a1", "a2", "a3"}, docsOf(got, "a"))
	require.Equal(t, []string{"b3"}, docsOf(got, "b"), "changes before the start are not delivered")
	require.Equal(t, []string{"c3"}, docsOf(got, "c"))

	recs := aud.All()
	require.Len(t, recs, 2, "one record per tenant started from now")
	slices.SortFunc(recs, func(x, y audit.Record) int { return strings.Compare(x.Tenant, y.Tenant) })
	for i, tn := range []string{"b", "c"} {
		require.Equal(t, audit.ActionStartFromNow, recs[i].Action)
		require.Equal(t, tn, recs[i].Tenant)
		require.Equal(t, tkey(tn), recs[i].Key)
		require.Equal(t, head, recs[i].After)
		require.Equal(t, "ops", recs[i].Actor)
		require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_checkpoint_start_from_now_total", prometheus.Labels{"tenant": tn}))
	}
}

// With no checkpoint at all, StartFromNow starts every tenant at the head
// with a record each; a resume token replaces every tenant's checkpoint,
// with a record each.
func TestMultiTenantStartFromNowAndResumeTokenAuditEachTenant(t *testing.T) {
	t.Parallel()
	tenants := []string{"a", "b", "c"}
	t.Run("start-from-now", func(t *testing.T) {
		t.Parallel()
		src := newQuietMemSource()
		p := tlog(src, "a:a1", "b:b1", "c:c1")
		aud := &testenv.Records[audit.Record]{}
		rec := &recorder{}
		_, stop := runStarted(t, src, watcher.Config{Tenants: tenants, StartFromNow: true, Auditor: aud}, rec.handle)
		require.Equal(t, atAll(p[2], tenants...), src.store.snapshot())
		q := tlog(src, "c:c2", "a:a2")
		rec.waitFor(t, q...)
		require.NoError(t, stop())
		require.Equal(t, q, rec.positions())
		requireRecords(t, aud, audit.ActionStartFromNow, p[2], tenants...)
	})
	t.Run("resume token", func(t *testing.T) {
		t.Parallel()
		src := newQuietMemSource()
		p := tlog(src, "a:a1", "b:b1", "c:c1", "a:a2", "b:b2")
		src.store.m[tkey("a")] = p[4]
		aud := &testenv.Records[audit.Record]{}
		rec := &recorder{}
		// The token without its padding is canonicalised.
		_, stop := runStarted(t, src, watcher.Config{Tenants: tenants, ResumeToken: "1", Auditor: aud}, rec.handle)
		rec.waitFor(t, p[1:]...)
		require.NoError(t, stop())
		require.Equal(t, p[1:], rec.positions(), "every tenant replays after the token")
		requireRecords(t, aud, audit.ActionResumeToken, p[0], tenants...)
		for _, r := range aud.All() {
			if r.Tenant == "a" {
				require.Equal(t, p[4], r.Before)
			}
		}
	})
}

// requireRecords checks that aud holds one record of action per tenant,
// each with after.
func requireRecords(t *testing.T, aud *testenv.Records[audit.Record], action audit.Action, after string, tenants ...string) {
	t.Helper()
	recs := aud.All()
	var names []string
	for _, r := range recs {
		require.Equal(t, action, r.Action)
		require.Equal(t, after, r.After)
		require.Equal(t, tkey(r.Tenant), r.Key)
		names = append(names, r.Tenant)
	}
	slices.Sort(names)
	require.Equal(t, tenants, names)
}

// runTenantsAB runs a watcher serving tenants a and b, both checkpointed
// at the start of a quiet source, with an auditor and a recorder.
func runTenantsAB(t *testing.T) (*memSource, *testenv.Records[audit.Record], *recorder, *watcher.DocumentWatcher, func() error) {
	t.Helper()
	src := newQuietMemSource()
	src.store.m[tkey("a")] = pos(0)
	src.store.m[tkey("b")] = pos(0)
	aud := &testenv.Records[audit.Record]{}
	rec := &recorder{}
	w, stop := runStarted(t, src, watcher.Config{Tenants: []string{"a", "b"}, Auditor: aud}, rec.handle)
	return src, aud, rec, w, stop
}

// A tenant added while the watcher runs, without a checkpoint, starts
// after the newest change read: audited, saved at once, and only its
// changes after the add are handed over.
func TestSetTenantsAddsFreshTenantFromNow(t *testing.T) {
	t.Parallel()
	src, aud, rec, w, stop := runTenantsAB(t)
	p := tlog(src, "a:a1", "c:c1", "b:b1")
	// b1 handed over: c1 before it was read too.
	rec.waitFor(t, p[2])

	require.NoError(t, w.SetTenants(t.Context(), []string{"c", "b", "a", "c"}))
	require.Equal(t, []string{"a", "b", "c"}, w.Tenants())
	require.Equal(t, p[2], src.store.get(tkey("c")), "saved at once, after the newest change read")
	requireRecords(t, aud, audit.ActionStartFromNow, p[2], "c")

	q := tlog(src, "c:c2", "a:a2")
	rec.waitFor(t, q...)
	waitCheckpoints(t, src, atAll(q[1], "a", "b", "c"))
	require.NoError(t, stop())
	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"c2"}, docsOf(got, "c"), "only the changes after the add")
	require.Equal(t, []string{"a1", "a2"}, docsOf(got, "a"))
	require.Equal(t, []string{"b1"}, docsOf(got, "b"))
}

// A removed tenant stops matching at once, keeps its checkpoint, and the
// checkpoint no longer advances. Re-added, it resumes from that
// checkpoint: the changes it missed while out of scope are handed over
// then, and nobody else gets a duplicate.
func TestSetTenantsRemovesAndReaddsTenant(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	tenants := []string{"a", "b", "c"}
	for _, tn := range tenants {
		src.store.m[tkey(tn)] = pos(0)
	}
	rec := &recorder{}
	w, stop := runStarted(t, src, watcher.Config{Tenants: tenants}, rec.handle)
	p := tlog(src, "a:a1", "b:b1", "c:c1")
	rec.waitFor(t, p...)
	waitCheckpoints(t, src, atAll(p[2], tenants...))

	require.NoError(t, w.SetTenants(t.Context(), []string{"a", "c"}))
	q := tlog(src, "b:b2", "a:a2", "b:b3", "c:c2")
	rec.waitFor(t, q[1], q[3])
	waitCheckpoints(t, src, atAll(q[3], "a", "c"))
	require.Equal(t, p[2], src.store.get(tkey("b")), "the removed tenant's checkpoint is kept and not advanced")
	require.Equal(t, []string{"b1"}, docsOf(rec.changes(), "b"), "the removed tenant's later changes are not handed over")

	// Back in scope: b's checkpoint lies behind what was read, so the
	// stream restarts from it.
	require.NoError(t, w.SetTenants(t.Context(), tenants))
	rec.waitFor(t, q[0], q[2])
	r := tlog(src, "a:a3", "b:b4", "c:c3")
	rec.waitFor(t, r...)
	waitCheckpoints(t, src, atAll(r[2], tenants...))
	require.NoError(t, stop())

	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"a1", "a2", "a3"}, docsOf(got, "a"))
	require.Equal(t, []string{"b1", "b2", "b3", "b4"}, docsOf(got, "b"))
	require.Equal(t, []string{"c1", "c2", "c3"}, docsOf(got, "c"))
}

// A tenant added with a stored checkpoint behind what was read (an
// operator's `checkpoint set`) restarts the stream from it: its earlier
// changes after the checkpoint are handed over, those at or before it are
// not, and the other tenants get no duplicates. Its checkpoint does not
// move past changes it was not handed.
func TestSetTenantsAddsTenantBehindRestartsStream(t *testing.T) {
	t.Parallel()
	src, aud, rec, w, stop := runTenantsAB(t)
	p := tlog(src, "d:d1", "a:a1", "d:d2", "b:b1", "d:d3", "a:a2")
	rec.waitFor(t, p[5])
	waitCheckpoints(t, src, atAll(p[5], "a", "b"))
	src.store.set(tkey("d"), p[0]) // after d1

	require.NoError(t, w.SetTenants(t.Context(), []string{"a", "b", "d"}))
	rec.waitFor(t, p[2], p[4])
	q := tlog(src, "a:a3", "d:d4", "b:b2")
	rec.waitFor(t, q...)
	waitCheckpoints(t, src, atAll(q[2], "a", "b", "d"))
	require.NoError(t, stop())

	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"d2", "d3", "d4"}, docsOf(got, "d"))
	require.Equal(t, []string{"a1", "a2", "a3"}, docsOf(got, "a"))
	require.Equal(t, []string{"b1", "b2"}, docsOf(got, "b"))
	require.Empty(t, aud.All(), "a tenant with a checkpoint is not started from now")
}

// While the stream restarts for a tenant added behind, that tenant's
// checkpoint is not moved with the other tenants' progress, and holds the
// source's confirmation back: here a's unfinished change finishes during
// the restart's drain, and the save that moves a confirms no further than
// d's checkpoint.
func TestSetTenantsAddedTenantBehindHoldsConfirm(t *testing.T) {
	t.Parallel()
	src := &tenantConfirmSource{memSource: newQuietMemSource()}
	src.store.m[tkey("a")] = pos(0)
	rec := &recorder{
		hold: func(c watcher.Change) bool { return c.DocKey == "a2" },
		held: make(chan func(), 1),
	}
	cfg := watcher.Config{Tenants: []string{"a"}, DrainTimeout: failsafe}
	w, stop := runStarted(t, src, cfg, rec.handle)
	p := tlog(src.memSource, "d:d1", "d:d2", "a:a1", "a:a2", "d:d3")
	rec.waitFor(t, p[3])
	src.store.set(tkey("d"), p[0]) // after d1

	require.NoError(t, w.SetTenants(t.Context(), []string{"a", "d"}))
	(<-rec.held)()
	rec.waitFor(t, p[1], p[4])
	waitCheckpoints(t, src.memSource, atAll(p[4], "a", "d"))
	require.NoError(t, stop())

	var withD []string
	for _, c := range src.confirmCalls() {
		if slices.Contains(c.tenants, "d") {
			withD = append(withD, c.pos)
		}
	}
	require.NotEmpty(t, withD)
	require.Equal(t, p[0], withD[0], "a's progress is confirmed no further than d's checkpoint")
	src.mu.Lock()
	require.Empty(t, src.past, "confirmed past a served tenant's saved checkpoint")
	src.mu.Unlock()
	got := rec.changes()
	requireNoDuplicates(t, got)
	require.Equal(t, []string{"d2", "d3"}, docsOf(got, "d"))
	require.Equal(t, []string{"a1", "a2"}, docsOf(got, "a"))
}

// A source keeping history per tenant is confirmed through
// ConfirmTenants, naming the served tenants, never Confirm, and never past
// the slowest served key: here a, whose change is unfinished, while b's
// checkpoint is ahead. A tenant out of scope with an older checkpoint
// does not hold the confirmation back.
func TestConfirmTenantsNamesServedTenants(t *testing.T) {
	t.Parallel()
	src := &tenantConfirmSource{memSource: newQuietMemSource()}
	p := tlog(src.memSource, "a:a1", "x:x1", "a:a2", "b:b1", "a:a3", "b:b2")
	src.store.m[tkey("a")] = pos(0)
	src.store.m[tkey("b")] = p[3] // after b1
	src.store.m[tkey("x")] = pos(0)
	rec := &recorder{
		hold: func(c watcher.Change) bool { return c.DocKey == "a2" },
		held: make(chan func(), 1),
	}
	_, stop := runStarted(t, src, watcher.Config{Tenants: []string{"b", "a"}}, rec.handle)
	rec.waitFor(t, p[5])
	// a1 and x1 are finished, a2 is not: a stands at x1, the slowest key.
	waitUntil(t, &src.confirmed, "a confirmation at x1", func() bool {
		return slices.ContainsFunc(src.confirmCalls(), func(c confirmCall) bool { return c.pos == p[1] })
	})
	require.Equal(t, p[1], src.store.get(tkey("a")))
	require.Equal(t, p[3], src.store.get(tkey("b")), "b stays ahead")
	for _, c := range src.confirmCalls() {
		require.LessOrEqual(t, c.pos, p[1], "confirmed past the slowest served key")
	}

	(<-rec.held)()
	waitUntil(t, &src.confirmed, "a confirmation at the last position", func() bool {
		return slices.ContainsFunc(src.confirmCalls(), func(c confirmCall) bool { return c.pos == p[5] })
	})
	require.NoError(t, stop())

	calls := src.confirmCalls()
	require.NotEmpty(t, calls)
	for _, c := range calls {
		require.Equal(t, []string{"a", "b"}, c.tenants, "names the served tenants, sorted")
	}
	require.True(t, slices.IsSortedFunc(calls, func(x, y confirmCall) int { return strings.Compare(x.pos, y.pos) }), "never moves back")
	src.mu.Lock()
	require.Empty(t, src.past, "confirmed past a served tenant's saved checkpoint")
	src.mu.Unlock()
	src.memSource.mu.Lock()
	require.Empty(t, src.memSource.confirms, "Confirm is not called when ConfirmTenants is there")
	src.memSource.mu.Unlock()
	require.Equal(t, pos(0), src.store.get(tkey("x")))
}

// A plain source gets Confirm at the minimum over the served keys.
func TestMultiTenantConfirmWithoutTenantConfirmer(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	p := tlog(src, "a:a1", "b:b1", "a:a2")
	src.store.m[tkey("a")] = pos(0)
	src.store.m[tkey("b")] = p[1]
	rec := &recorder{}
	_, stop := runStarted(t, src, watcher.Config{Tenants: []string{"a", "b"}}, rec.handle)
	rec.waitFor(t, p[0], p[2])
	waitCheckpoints(t, src, atAll(p[2], "a", "b"))
	require.NoError(t, stop())
	src.mu.Lock()
	defer src.mu.Unlock()
	require.Empty(t, src.confirmedPast, "confirmed past a saved checkpoint")
	require.NotEmpty(t, src.confirms)
	require.Equal(t, p[2], src.confirms[len(src.confirms)-1])
	require.True(t, slices.IsSorted(src.confirms), "never moves back")
}

func TestSetTenantsRefusals(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	single, err := watcher.New(src, watcher.Config{Tenant: "acme"})
	require.NoError(t, err)
	require.ErrorIs(t, single.SetTenants(t.Context(), []string{"acme", "other"}), watcher.ErrInvalidConfig)
	require.NoError(t, single.SetTenants(t.Context(), []string{"acme"}))
	require.Equal(t, []string{"acme"}, single.Tenants())

	multi, err := watcher.New(src, watcher.Config{Tenants: []string{"b", "a", "b"}})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, multi.Tenants(), "sorted, without duplicates")
	require.ErrorIs(t, multi.SetTenants(t.Context(), []string{"a", ""}), watcher.ErrInvalidConfig)
	require.Equal(t, []string{"a", "b"}, multi.Tenants(), "a refused scope changes nothing")

	for _, cfg := range []watcher.Config{
		{Tenant: "a", Tenants: []string{"b"}},
		{Tenants: []string{"a", ""}},
	} {
		_, err := watcher.New(src, cfg)
		require.ErrorIs(t, err, watcher.ErrInvalidConfig)
	}
}

// Before Run, SetTenants only changes the scope the first session starts
// with.
func TestSetTenantsBeforeRun(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	src.store.m[tkey("b")] = pos(0)
	p := tlog(src, "a:a1", "b:b1")
	w, err := watcher.New(src, watcher.Config{Tenants: []string{"a"}, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, w.SetTenants(t.Context(), []string{"b"}))
	require.Equal(t, map[string]string{tkey("b"): pos(0)}, src.store.snapshot(), "nothing saved before Run")
	rec := &recorder{}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, rec.handle) }()
	rec.waitFor(t, p[1])
	cancel()
	require.NoError(t, <-errc)
	require.Equal(t, []string{"b1"}, docsOf(rec.changes(), "b"))
	require.Empty(t, docsOf(rec.changes(), "a"))
}

// Per-tenant metrics go through the tenant label guard: past its limit,
// served tenants are counted under tenantlabel.Other.
func TestMultiTenantMetricsUseTenantLabels(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	tenants := []string{"a", "b", "c"}
	for _, tn := range tenants {
		src.store.m[tkey(tn)] = pos(0)
	}
	p := tlog(src, "a:a1", "b:b1", "c:c1", "c:c2")
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	_, stop := runStarted(t, src, watcher.Config{Tenants: tenants, Registerer: reg, TenantLabels: tenantlabel.New(2)}, rec.handle)
	rec.waitFor(t, p...)
	require.NoError(t, stop())
	const read = "triggerflow_watcher_events_read_total"
	require.Equal(t, 1.0, testenv.Metric(t, reg, read, prometheus.Labels{"tenant": "a"}))
	require.Equal(t, 1.0, testenv.Metric(t, reg, read, prometheus.Labels{"tenant": "b"}))
	require.Equal(t, 2.0, testenv.Metric(t, reg, read, prometheus.Labels{"tenant": tenantlabel.Other}))
}

// A SetTenants that fails (here: its audit record cannot be written) leaves
// the scope as it was and says so, so the caller can try again; a tenant
// whose checkpoint cannot be read is refused rather than started from now.
func TestSetTenantsFailureKeepsTheServedScope(t *testing.T) {
	t.Parallel()
	src := newQuietMemSource()
	src.store.m[tkey("a")] = pos(0)
	src.store.m[tkey("d")] = "not a position"
	aud := &testenv.Records[audit.Record]{}
	rec := &recorder{}
	w, stop := runStarted(t, src, watcher.Config{Tenants: []string{"a"}, Auditor: aud}, rec.handle)
	p := tlog(src, "a:a1")
	rec.waitFor(t, p[0])

	aud.Fail(errors.New("audit stream down"))
	require.ErrorIs(t, w.SetTenants(t.Context(), []string{"a", "c"}), watcher.ErrNotAudited)
	require.Equal(t, []string{"a"}, w.Tenants(), "c is not served, and Tenants says so")

	require.ErrorIs(t, w.SetTenants(t.Context(), []string{"a", "d"}), watcher.ErrNoCheckpoint)
	require.Equal(t, []string{"a"}, w.Tenants())
	require.NoError(t, stop())
}

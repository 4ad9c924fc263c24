package watcher_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/watcher"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = watcher.CheckpointPrefix + "acme"

// run starts the watcher in the background; the returned stop cancels it
// and returns Run's error.
func run(t *testing.T, w *watcher.DocumentWatcher, h watcher.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, h) }()
	return func() error {
		cancel()
		return <-errc
	}
}

// collect is a handler that finishes every change at once and forwards it.
func collect(ch chan<- watcher.Change) watcher.Handler {
	return func(_ context.Context, c watcher.Change, done func()) error {
		ch <- c
		done()
		return nil
	}
}

func recv(t *testing.T, ch <-chan watcher.Change) watcher.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change arrived")
		return watcher.Change{}
	}
}

// waitSaved waits until key is saved at p.
func waitSaved(t *testing.T, src *memSource, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-src.store.saved:
			if s == want {
				return
			}
		case <-deadline:
			t.Fatalf("checkpoint %s never saved; have %q", want, src.store.get(key))
		}
	}
}

func newWatcher(t *testing.T, src watcher.Source, cfg watcher.Config) *watcher.DocumentWatcher {
	t.Helper()
	if cfg.Tenant == "" {
		cfg.Tenant = "acme"
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 10 * time.Millisecond
	}
	w, err := watcher.New(src, cfg)
	require.NoError(t, err)
	return w
}

func TestMissingCheckpointFailsFast(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	err := newWatcher(t, src, watcher.Config{}).Run(context.Background(), collect(nil))
	require.ErrorIs(t, err, watcher.ErrNoCheckpoint)
	require.ErrorContains(t, err, "startFromNow")
	require.ErrorContains(t, err, "resumeToken")
}

// A checkpoint the store cannot read now (a database error, not a bad
// value) stops the start instead of passing for a missing one: with
// start-from-now that would move the checkpoint to the head and skip every
// change since.
func TestCheckpointLoadErrorStopsStart(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.add("acme", "orders", "a")
	src.add("acme", "orders", "b")
	src.store.m[key] = pos(1)
	src.store.bad = map[string]bool{key: true}
	err := newWatcher(t, src, watcher.Config{StartFromNow: true}).Run(context.Background(), collect(nil))
	require.Error(t, err)
	require.NotErrorIs(t, err, watcher.ErrNoCheckpoint)
	require.ErrorContains(t, err, "load checkpoint")
	require.Equal(t, pos(1), src.store.get(key), "the checkpoint stays where it was")
}

// A start-from-now or resume token whose audit record cannot be written is
// refused, and the checkpoint stays where it was (issue 17: audited or
// refused).
func TestUnauditedStartIsRefused(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]watcher.Config{
		"start-from-now": {StartFromNow: true},
		"resume token":   {ResumeToken: pos(1)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			src.add("acme", "orders", "a")
			src.add("acme", "orders", "b")
			cfg.Auditor = &testenv.Records[audit.Record]{Err: errors.New("audit stream unavailable")}
			err := newWatcher(t, src, cfg).Run(context.Background(), collect(nil))
			require.ErrorIs(t, err, watcher.ErrNotAudited)
			require.ErrorContains(t, err, "audit stream unavailable")
			require.Empty(t, src.store.get(key), "no checkpoint was written")
		})
	}
}

func TestStartFromNowIsAuditedAndCounted(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.add("acme", "orders", "old")
	head := src.add("acme", "orders", "old2")
	aud := &testenv.Records[audit.Record]{}
	reg := prometheus.NewRegistry()
	w := newWatcher(t, src, watcher.Config{StartFromNow: true, Actor: "ops", Reason: "new tenant", Auditor: aud, Registerer: reg})

	ch := make(chan watcher.Change, 10)
	stop := run(t, w, collect(ch))
	waitSaved(t, src, key+"="+head)
	src.add("acme", "orders", "new")
	require.Equal(t, "new", recv(t, ch).DocKey, "changes before now are not delivered")
	require.NoError(t, stop())

	recs := aud.All()
	require.Len(t, recs, 1)
	require.Equal(t, audit.ActionStartFromNow, recs[0].Action)
	require.Equal(t, "acme", recs[0].Tenant)
	require.Equal(t, "ops", recs[0].Actor)
	require.Equal(t, "new tenant", recs[0].Reason)
	require.Equal(t, head, recs[0].After)
	require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_checkpoint_start_from_now_total", prometheus.Labels{"tenant": "acme"}))
}

func TestResumeTokenReplays(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	p1 := src.add("acme", "orders", "a")
	src.add("acme", "orders", "b")
	last := src.add("acme", "orders", "c")
	src.store.m[key] = last
	aud := &testenv.Records[audit.Record]{}
	w := newWatcher(t, src, watcher.Config{ResumeToken: p1, Auditor: aud})

	ch := make(chan watcher.Change, 10)
	stop := run(t, w, collect(ch))
	require.Equal(t, "b", recv(t, ch).DocKey)
	require.Equal(t, "c", recv(t, ch).DocKey)
	require.NoError(t, stop())
	require.Equal(t, audit.ActionResumeToken, aud.All()[0].Action)
	require.Equal(t, last, aud.All()[0].Before)
	require.Equal(t, p1, aud.All()[0].After)
}

// Issue 14: a resume token without its zero padding, with an include
// filter, compared as a string with the source's positions skipped every
// change and moved the include's checkpoint past them.
func TestResumeTokenIsCanonicalised(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"1", "01", pos(1)} {
		t.Run(token, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			src.add("acme", "orders", "o1")
			src.add("acme", "users", "u1")
			src.add("acme", "orders", "o2")
			src.add("acme", "orders", "o3")
			last := src.add("acme", "users", "u2")
			aud := &testenv.Records[audit.Record]{}
			cfg := watcher.Config{Include: []string{"orders"}, ResumeToken: token, Auditor: aud}
			ch := make(chan watcher.Change, 10)
			stop := run(t, newWatcher(t, src, cfg), collect(ch))
			require.Equal(t, "o2", recv(t, ch).DocKey)
			require.Equal(t, "o3", recv(t, ch).DocKey)
			waitSaved(t, src, key+"/orders="+last)
			require.NoError(t, stop())
			require.Empty(t, ch)
			require.Equal(t, pos(1), aud.All()[0].After, "the audit trail holds the canonical token")
		})
	}
}

func TestInvalidResumeTokenIsRefused(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	for _, token := range []string{"garbage", "-1", "1x", " 1", "１"} {
		_, err := watcher.New(src, watcher.Config{Tenant: "acme", ResumeToken: token})
		require.ErrorIs(t, err, watcher.ErrInvalidConfig, token)
		require.ErrorIs(t, err, watcher.ErrInvalidPosition, token)
		require.ErrorContains(t, err, "watcher.resumeToken", "names the setting")
		require.ErrorContains(t, err, "want decimal digits", "names the format")
	}
	require.Equal(t, pos(0), src.store.get(key))
	require.Empty(t, src.store.saved)
}

// Stored checkpoints go through the source's parser too: one without the
// padding is read as the position it spells, and, with per-include
// checkpoints, the watcher starts from the earliest of them.
func TestStoredCheckpointIsCanonicalised(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.add("acme", "orders", "o1")
	src.add("acme", "users", "u1")
	src.add("acme", "orders", "o2")
	src.add("acme", "users", "u2")
	last := src.add("acme", "orders", "o3")
	src.store.m[key+"/orders"] = "1"
	src.store.m[key+"/users"] = pos(2)
	ch := make(chan watcher.Change, 10)
	stop := run(t, newWatcher(t, src, watcher.Config{Include: []string{"orders", "users"}}), collect(ch))
	for _, want := range []string{"o2", "u2", "o3"} {
		require.Equal(t, want, recv(t, ch).DocKey)
	}
	waitSaved(t, src, key+"/users="+last)
	require.NoError(t, stop())
	require.Empty(t, ch)
	require.Equal(t, last, src.store.get(key+"/orders"))
}

// A stored value that is no position of the source counts as missing,
// unlike one the store cannot read (TestCheckpointLoadErrorStopsStart).
func TestInvalidStoredCheckpointIsMissing(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.add("acme", "orders", "a")
	src.store.m[key] = "garbage"
	// Bounded: a watcher that took the value for a position would watch
	// until cancelled.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := newWatcher(t, src, watcher.Config{}).Run(ctx, collect(nil))
	require.ErrorIs(t, err, watcher.ErrNoCheckpoint)
	require.Equal(t, "garbage", src.store.get(key), "left for the operator to inspect")
}

// The checkpoint advances only over the contiguous prefix of finished
// changes, and the source is never confirmed past the saved checkpoint.
func TestCheckpointFollowsContiguousPrefix(t *testing.T) {
	t.Parallel()
	src, positions := checkpointedSource("a", "b", "c", "d")
	held := make(chan func(), 1)
	seen := make(chan watcher.Change, 10)
	h := func(_ context.Context, c watcher.Change, done func()) error {
		if c.DocKey == "b" {
			held <- done // finish later, out of order
		} else {
			done()
		}
		seen <- c
		return nil
	}
	w := newWatcher(t, src, watcher.Config{})
	stop := run(t, w, h)
	for range 4 {
		recv(t, seen)
	}
	waitSaved(t, src, key+"="+positions[0])
	require.Equal(t, positions[0], src.store.get(key), "c and d finished, but b did not")

	(<-held)()
	waitSaved(t, src, key+"="+positions[3])
	require.NoError(t, stop())
	requireConfirms(t, src, positions[0], positions[3])
}

// The head of the window finishes last while later changes are still
// unfinished: at every step the saved checkpoint is the end of the
// contiguous finished prefix, neither the newest change finished nor the
// newest emitted, and no confirmation passes it.
func TestCheckpointWhenHeadFinishesLast(t *testing.T) {
	t.Parallel()
	src, positions := checkpointedSource("a", "b", "c", "d")
	dones := make(chan func(), 4)
	h := func(_ context.Context, _ watcher.Change, done func()) error {
		dones <- done
		return nil
	}
	stop := run(t, newWatcher(t, src, watcher.Config{}), h)
	var done []func()
	for range 4 {
		select {
		case d := <-dones:
			done = append(done, d)
		case <-time.After(10 * time.Second):
			t.Fatal("changes were not handed out")
		}
	}
	// b and c finish: the prefix does not move, so nothing is saved (the
	// next save below would tell).
	done[1]()
	done[2]()
	// a finishes last of the three: the prefix is a..c, d is unfinished.
	done[0]()
	require.Equal(t, key+"="+positions[2], nextSave(t, src), "the prefix a..c, not d")
	done[3]()
	require.Equal(t, key+"="+positions[3], nextSave(t, src))
	require.NoError(t, stop())
	select {
	case s := <-src.store.saved:
		t.Fatalf("saved %s after the prefix was already saved", s)
	default:
	}
	requireConfirms(t, src, positions[2], positions[3])
}

// checkpointedSource returns a source whose checkpoint is saved at pos(0)
// and that holds a change for each of docKeys, and those changes' positions.
func checkpointedSource(docKeys ...string) (*memSource, []string) {
	src := newMemSource()
	src.store.m[key] = pos(0)
	var positions []string
	for _, k := range docKeys {
		positions = append(positions, src.add("acme", "orders", k))
	}
	return src, positions
}

// requireConfirms checks that src was confirmed at exactly want, and never
// past the saved checkpoint.
func requireConfirms(t *testing.T, src *memSource, want ...string) {
	t.Helper()
	src.mu.Lock()
	defer src.mu.Unlock()
	require.Empty(t, src.confirmedPast, "the source was confirmed past the saved checkpoint")
	require.Equal(t, want, src.confirms)
}

// nextSave returns the next checkpoint save as key=pos.
func nextSave(t *testing.T, src *memSource) string {
	t.Helper()
	select {
	case s := <-src.store.saved:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no checkpoint saved; have %q", src.store.get(key))
		return ""
	}
}

func TestRestartResumesAfterCheckpoint(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	src.add("acme", "orders", "a")
	p2 := src.add("acme", "orders", "b")

	ch := make(chan watcher.Change, 10)
	stop := run(t, newWatcher(t, src, watcher.Config{}), collect(ch))
	recv(t, ch)
	recv(t, ch)
	require.NoError(t, stop(), "a clean stop saves the checkpoint")
	require.Equal(t, p2, src.store.get(key))

	src.add("acme", "orders", "c")
	ch2 := make(chan watcher.Change, 10)
	stop = run(t, newWatcher(t, src, watcher.Config{}), collect(ch2))
	require.Equal(t, "c", recv(t, ch2).DocKey)
	require.NoError(t, stop())
	require.Empty(t, ch2)
}

func TestUnfinishedChangesReplayAfterStop(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	src.add("acme", "orders", "a")
	seen := make(chan watcher.Change, 10)
	never := func(_ context.Context, c watcher.Change, _ func()) error { seen <- c; return nil }
	stop := run(t, newWatcher(t, src, watcher.Config{DrainTimeout: time.Millisecond}), never)
	recv(t, seen)
	require.NoError(t, stop())
	require.Equal(t, pos(0), src.store.get(key), "an unfinished change is not checkpointed")

	ch := make(chan watcher.Change, 10)
	stop = run(t, newWatcher(t, src, watcher.Config{}), collect(ch))
	require.Equal(t, "a", recv(t, ch).DocKey, "at-least-once: it is delivered again")
	require.NoError(t, stop())
}

func TestSourceErrorReconnectsWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	src.failAfter = 2
	for _, k := range []string{"a", "b", "c", "d"} {
		src.add("acme", "orders", k)
	}
	reg := prometheus.NewRegistry()
	ch := make(chan watcher.Change, 10)
	stop := run(t, newWatcher(t, src, watcher.Config{RetryInitial: time.Millisecond, Registerer: reg}), collect(ch))
	for _, want := range []string{"a", "b", "c", "d"} {
		require.Equal(t, want, recv(t, ch).DocKey)
	}
	require.NoError(t, stop())
	require.Empty(t, ch)
	require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_watcher_source_errors_total", prometheus.Labels{"tenant": "acme"}))
}

func TestFiltersAndPerCollectionCheckpoints(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0) // tenant-wide checkpoint from before filtering
	src.add("acme", "orders", "o1")
	src.add("acme", "chats/1/members", "m1")
	src.add("acme", "chats/1/archive", "x1")
	src.add("acme", "users", "u1")
	last := src.add("other", "orders", "foreign")

	aud := &testenv.Records[audit.Record]{}
	cfg := watcher.Config{Include: []string{"orders", "chats"}, Exclude: []string{"chats/1/archive"}, Auditor: aud}
	ch := make(chan watcher.Change, 10)
	stop := run(t, newWatcher(t, src, cfg), collect(ch))
	require.Equal(t, "o1", recv(t, ch).DocKey)
	require.Equal(t, "m1", recv(t, ch).DocKey)
	waitSaved(t, src, key+"/chats="+last)
	require.NoError(t, stop())
	require.Empty(t, ch, "excluded, unincluded and foreign changes are skipped")
	require.Equal(t, last, src.store.get(key+"/orders"))
	require.Equal(t, audit.ActionCheckpointReseed, aud.All()[0].Action, "turning filters on carries the tenant checkpoint over")

	// Adding an include entry re-seeds it from the slowest existing checkpoint.
	src.add("acme", "users", "u2")
	ch2 := make(chan watcher.Change, 10)
	cfg.Include = append(cfg.Include, "users")
	stop = run(t, newWatcher(t, src, cfg), collect(ch2))
	require.Equal(t, "u2", recv(t, ch2).DocKey)
	require.NoError(t, stop())
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []watcher.Config{
		{},
		{Tenant: "acme", StartFromNow: true, ResumeToken: "x"},
		{Tenant: "acme", Include: []string{""}},
	} {
		_, err := watcher.New(newMemSource(), cfg)
		require.ErrorIs(t, err, watcher.ErrInvalidConfig)
	}
}

func TestHandlerErrorStopsWatcher(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	src.add("acme", "orders", "a")
	boom := func(context.Context, watcher.Change, func()) error { return context.DeadlineExceeded }
	err := newWatcher(t, src, watcher.Config{}).Run(context.Background(), boom)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestBackpressureBoundsInFlight(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	src.store.m[key] = pos(0)
	for i := range 10 {
		src.add("acme", "orders", string(rune('a'+i)))
	}
	var dones []func()
	seen := make(chan watcher.Change, 20)
	h := func(_ context.Context, c watcher.Change, done func()) error {
		dones = append(dones, done)
		seen <- c
		return nil
	}
	stop := run(t, newWatcher(t, src, watcher.Config{MaxInFlight: 3, DrainTimeout: time.Millisecond}), h)
	for range 3 {
		recv(t, seen)
	}
	select {
	case c := <-seen:
		t.Fatalf("a fourth change %q was handed out while three were unfinished", c.DocKey)
	default:
	}
	dones[0]()
	require.Equal(t, "d", recv(t, seen).DocKey, "finishing one frees one slot")
	require.NoError(t, stop())
}

func TestWatchersOfTwoTenantsShareARegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := watcher.New(newMemSource(), watcher.Config{Tenant: "a", Registerer: reg})
	require.NoError(t, err)
	_, err = watcher.New(newMemSource(), watcher.Config{Tenant: "b", Registerer: reg})
	require.NoError(t, err)
}

// Package watchertest holds the conformance suite that every
// watcher.Source implementation runs from its own tests.
package watchertest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// Collections are the collections the suite writes to. A harness whose
// collections must exist ahead of writes (PostgreSQL tables) creates them
// in Harness.New.
var Collections = []string{"orders", "customers"}

// Harness adapts one watcher.Source implementation to
// RunSourceConformance.
//
// Documents. Every document the suite writes is a flat JSON object with
// exactly two fields, "n" (an integer below 2^31) and "note" (a short
// string, possibly non-ASCII), so a relational harness can store it as
// columns (n bigint, note text) beside its key column. The suite checks
// that a change's Before and After hold those two fields with the written
// values; other fields (the key column, a tenant column) are ignored.
//
// Keys. docKey is a non-empty string of at most 40 bytes that may contain
// '/', spaces and non-ASCII letters; a relational harness uses it as a text
// primary key.
//
// Transactions. Every Writer call commits its own transaction, and the
// suite waits for each call to return before making the next, so commit
// order is call order.
type Harness struct {
	// New prepares an empty database for one subtest, isolated from every
	// other subtest's, and returns how to reach it. Release resources with
	// t.Cleanup. Required.
	New func(t *testing.T) Env
	// Tenant is the value every change's Tenant must have. Required.
	Tenant string
	// NoBeforeImages declares that updates and deletes may arrive with a
	// nil Before (PostgreSQL without REPLICA IDENTITY FULL). When set, the
	// suite checks Before only when it is present.
	NoBeforeImages bool
	// Timeout bounds each wait for changes the suite expects; it turns a
	// hang into a failure and asserts nothing about speed. Defaults to 30s.
	Timeout time.Duration
	// Respell returns other spellings of pos, a position the source
	// produced (a change's or Head's), that the source accepts as the
	// same position: without the zero padding, say. The suite checks that
	// ParsePosition maps each back to pos and that a watcher resumed from
	// one behaves exactly as from pos. Nil, or no spellings, tests the
	// canonical form only.
	Respell func(pos string) []string
	// InvalidPositions are tokens the source must refuse, close to its
	// format but wrong, in addition to the suite's own.
	InvalidPositions []string
}

// Env is one isolated database prepared by Harness.New.
type Env struct {
	// Open returns a new source on the database. The suite opens a first
	// source before its first write and expects Watch(ctx, "", …) on it,
	// or on a source opened later, to deliver every change committed
	// after that first Open returned (so a replication slot, say, is
	// created by the first Open). To test restarts the suite closes a
	// source and opens another on the same Env; it closes every source it
	// opens. Required.
	Open func(t *testing.T) watcher.Source
	// Writer writes documents into the database by a path that does not
	// go through the source. Required.
	Writer Writer
}

// Writer commits single document writes, each in its own transaction. It
// need not be safe for concurrent use, but may be called from a goroutine
// other than the test's.
type Writer interface {
	// Create inserts a new document.
	Create(ctx context.Context, collection, docKey string, doc json.RawMessage) error
	// Update replaces an existing document's content.
	Update(ctx context.Context, collection, docKey string, doc json.RawMessage) error
	// Delete removes an existing document.
	Delete(ctx context.Context, collection, docKey string) error
}

// BadWriter is implemented by a Writer that can commit a row that the
// source will read but cannot decode (say, data that is not JSON). The
// suite then checks that the source reports it with Change.Problem and
// keeps streaming; without it that subtest is skipped.
type BadWriter interface {
	WriteBad(ctx context.Context, collection, docKey string) error
}

// RunSourceConformance runs the Source contract's subtests against h.
func RunSourceConformance(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.New, "Harness.New is required")
	require.NotEmpty(t, h.Tenant, "Harness.Tenant is required")
	h.Timeout = cmp.Or(h.Timeout, 30*time.Second)
	tests := []struct {
		name string
		run  func(t *testing.T, s *suite)
	}{
		{"Ordering", testOrdering},
		{"LiveTail", testLiveTail},
		{"ChangeTypes", testChangeTypes},
		{"ResumeFromPosition", testResume},
		{"Head", testHead},
		{"RestartFromCheckpoint", testRestart},
		{"ConfirmKeepsUnconfirmed", testConfirm},
		{"Cancellation", testCancellation},
		{"EmitError", testEmitError},
		{"Checkpoints", testCheckpoints},
		{"BadRow", testBadRow},
		{"ParsePosition", testParsePosition},
		{"ResumeTokenWithInclude", testResumeTokenWithInclude},
		{"RespelledCheckpoints", testRespelledCheckpoints},
		{"InvalidPositions", testInvalidPositions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := h.New(t)
			require.NotNil(t, env.Open, "Env.Open is required")
			require.NotNil(t, env.Writer, "Env.Writer is required")
			tc.run(t, &suite{h: h, env: env})
		})
	}
}

// suite is one subtest's state.
type suite struct {
	h        Harness
	env      Env
	sentinel int
}

// op is a write the suite made, and so a change it expects.
type op struct {
	collection string
	key        string
	typ        trigger.EventType
	n          int // the document's n after the write, or before a delete
}

func (o op) String() string { return fmt.Sprintf("%s %s/%s n=%d", o.typ, o.collection, o.key, o.n) }

func doc(collection, key string, n int) json.RawMessage {
	b, err := json.Marshal(map[string]any{"n": n, "note": note(collection, key, n)})
	if err != nil {
		panic(err)
	}
	return b
}

func note(collection, key string, n int) string {
	return fmt.Sprintf("ü %s/%s #%d", collection, key, n)
}

// open opens a source, closing it when the test ends.
func (s *suite) open(t *testing.T) watcher.Source {
	t.Helper()
	src := s.env.Open(t)
	require.NotNil(t, src, "Env.Open returned nil")
	t.Cleanup(func() { _ = src.Close() })
	return src
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// apply performs o through the Writer.
func (s *suite) apply(t *testing.T, o op) {
	t.Helper()
	require.NoError(t, s.applyErr(s.ctx(t), o), "writing %s", o)
}

func (s *suite) applyErr(ctx context.Context, o op) error {
	w := s.env.Writer
	switch o.typ {
	case trigger.EventCreate:
		return w.Create(ctx, o.collection, o.key, doc(o.collection, o.key, o.n))
	case trigger.EventUpdate:
		return w.Update(ctx, o.collection, o.key, doc(o.collection, o.key, o.n))
	case trigger.EventDelete:
		return w.Delete(ctx, o.collection, o.key)
	}
	return fmt.Errorf("unknown op %s", o.typ)
}

// writeSentinel creates a fresh document; watching until it arrives proves
// that everything committed before it has been delivered.
func (s *suite) writeSentinel(t *testing.T) op {
	t.Helper()
	o := s.nextSentinel()
	s.apply(t, o)
	return o
}

// applyAll applies ops in order.
func (s *suite) applyAll(t *testing.T, ops []op) {
	t.Helper()
	for _, o := range ops {
		s.apply(t, o)
	}
}

// watchToSentinel writes a sentinel and requires that watching src from
// after delivers exactly want and then the sentinel. It returns the
// sentinel and the changes delivered.
func (s *suite) watchToSentinel(t *testing.T, src watcher.Source, after string, want []op) (op, []watcher.Change) {
	t.Helper()
	stop := s.writeSentinel(t)
	got := s.watchUntil(t, src, after, stop)
	s.requireChanges(t, slices.Concat(want, []op{stop}), got)
	return stop, got
}

// nextSentinel returns the next sentinel without writing it.
func (s *suite) nextSentinel() op {
	s.sentinel++
	return op{collection: Collections[0], key: fmt.Sprintf("sentinel-%d", s.sentinel), typ: trigger.EventCreate, n: 1000 + s.sentinel}
}

// watchUntil watches src from after until a change for stop's document
// arrives, returning every change delivered, stop's included.
func (s *suite) watchUntil(t *testing.T, src watcher.Source, after string, stop op) []watcher.Change {
	t.Helper()
	return s.watchN(t, src, after, func(c watcher.Change) bool { return matches(c, stop) })
}

// matches reports whether c is the change that o made. Keys recur in the
// suite's scripts, so n tells their writes apart.
func matches(c watcher.Change, o op) bool {
	if c.Collection != o.collection || c.DocKey != o.key || c.Type != o.typ {
		return false
	}
	img := c.After
	if o.typ == trigger.EventDelete {
		if c.Before == nil {
			return true
		}
		img = c.Before
	}
	var d struct{ N int }
	return json.Unmarshal(img, &d) == nil && d.N == o.n
}

// watchN watches until done returns true for a delivered change. It
// requires Watch to then return context.Canceled.
func (s *suite) watchN(t *testing.T, src watcher.Source, after string, done func(watcher.Change) bool) []watcher.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), s.h.Timeout)
	defer cancel()
	var got []watcher.Change
	finished := false
	err := src.Watch(ctx, after, func(c watcher.Change) error {
		got = append(got, c)
		if done(c) {
			finished = true
			cancel()
		}
		return nil
	})
	if !finished {
		t.Fatalf("Watch(after=%q) returned %v before the expected change arrived (timeout %s); got %d changes:\n%s",
			after, err, s.h.Timeout, len(got), describe(got))
	}
	require.ErrorIs(t, err, context.Canceled, "Watch must return ctx.Err() once its context is cancelled")
	return got
}

func describe(cs []watcher.Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s %s %s/%s problem=%q\n", c.Position, c.Type, c.Collection, c.DocKey, c.Problem)
	}
	return b.String()
}

// requireChanges checks got against the expected writes, in order, and the
// invariants every change must satisfy.
func (s *suite) requireChanges(t *testing.T, want []op, got []watcher.Change) {
	t.Helper()
	require.Len(t, got, len(want), "changes delivered:\n%s", describe(got))
	prev := ""
	for i, c := range got {
		w := want[i]
		msg := fmt.Sprintf("change #%d: want %s, got %s %s/%s", i, w, c.Type, c.Collection, c.DocKey)
		require.Equal(t, w.typ, c.Type, msg)
		require.Equal(t, w.collection, c.Collection, msg)
		require.Equal(t, w.key, c.DocKey, msg)
		require.Equal(t, s.h.Tenant, c.Tenant, msg)
		require.Empty(t, c.Problem, msg)
		require.NotEmpty(t, c.Position, msg)
		require.Greater(t, c.Position, prev, "%s: positions must increase byte-wise in commit order", msg)
		prev = c.Position
		require.False(t, c.CommitTime.IsZero(), "%s: CommitTime is zero", msg)
		switch w.typ {
		case trigger.EventCreate:
			require.Nil(t, c.Before, "%s: a create has no Before", msg)
			requireDoc(t, c.After, w, msg+": After")
		case trigger.EventUpdate:
			s.requireBefore(t, c.Before, op{collection: w.collection, key: w.key, n: w.n - 1}, msg)
			requireDoc(t, c.After, w, msg+": After")
		case trigger.EventDelete:
			s.requireBefore(t, c.Before, w, msg)
			require.Nil(t, c.After, "%s: a delete has no After", msg)
		}
	}
}

// requireBefore checks a before image. The suite's updates always raise n
// by exactly one, so the previous n is known.
func (s *suite) requireBefore(t *testing.T, before json.RawMessage, w op, msg string) {
	t.Helper()
	if before == nil && s.h.NoBeforeImages {
		return
	}
	requireDoc(t, before, w, msg+": Before")
}

func requireDoc(t *testing.T, raw json.RawMessage, w op, msg string) {
	t.Helper()
	require.NotNil(t, raw, "%s is nil", msg)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m), "%s is not a JSON object: %s", msg, raw)
	require.EqualValues(t, w.n, m["n"], "%s: field n of %s", msg, raw)
	require.Equal(t, note(w.collection, w.key, w.n), m["note"], "%s: field note of %s", msg, raw)
}

// script returns count interleaved writes over four keys in two
// collections: creates, updates raising n by one, deletes, and re-creates.
func script(count int) []op {
	keys := []string{"k1", "k2", "k/3 ü", "k4"}
	n := map[string]int{}
	live := map[string]bool{}
	ops := make([]op, 0, count)
	for i := range count {
		coll := Collections[(i/len(keys))%len(Collections)]
		key := keys[i%len(keys)]
		id := coll + "\x00" + key
		switch {
		case !live[id]:
			n[id]++
			live[id] = true
			ops = append(ops, op{coll, key, trigger.EventCreate, n[id]})
		case i%7 == 3:
			live[id] = false
			ops = append(ops, op{coll, key, trigger.EventDelete, n[id]})
		default:
			n[id]++
			ops = append(ops, op{coll, key, trigger.EventUpdate, n[id]})
		}
	}
	return ops
}

func testOrdering(t *testing.T, s *suite) {
	src := s.open(t)
	ops := script(40)
	s.applyAll(t, ops)
	s.watchToSentinel(t, src, "", ops)
}

// testLiveTail writes while Watch is caught up and waiting, which is the
// watcher's steady state.
func testLiveTail(t *testing.T, s *suite) {
	src := s.open(t)
	ops := script(12)
	s.apply(t, ops[0])

	ctx := s.ctx(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	writeErr := make(chan error, 1)
	started := false
	var got []watcher.Change
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := src.Watch(watchCtx, "", func(c watcher.Change) error {
		got = append(got, c)
		if !started {
			// Watch is running and has delivered the backlog: write the
			// rest from elsewhere while it tails.
			started = true
			wg.Go(func() {
				for _, o := range ops[1:] {
					if err := s.applyErr(ctx, o); err != nil {
						writeErr <- fmt.Errorf("writing %s: %w", o, err)
						cancel()
						return
					}
				}
			})
		}
		if len(got) == len(ops) {
			cancel()
		}
		return nil
	})
	wg.Wait()
	select {
	case err := <-writeErr:
		require.NoError(t, err)
	default:
	}
	require.ErrorIs(t, err, context.Canceled, "got %d of %d changes:\n%s", len(got), len(ops), describe(got))
	require.NoError(t, ctx.Err(), "timed out with %d of %d changes", len(got), len(ops))
	s.requireChanges(t, ops, got)
}

func testChangeTypes(t *testing.T, s *suite) {
	src := s.open(t)
	coll, key := Collections[1], "odd/key ü 1"
	ops := []op{
		{coll, key, trigger.EventCreate, 1},
		{coll, key, trigger.EventUpdate, 2},
		{coll, key, trigger.EventUpdate, 3},
		{coll, key, trigger.EventDelete, 3},
		{coll, key, trigger.EventCreate, 4},
	}
	s.applyAll(t, ops)
	_, got := s.watchToSentinel(t, src, "", ops)
	for _, c := range got {
		require.WithinDuration(t, time.Now(), c.CommitTime, time.Hour, "CommitTime is not a plausible commit time")
	}
}

func testResume(t *testing.T, s *suite) {
	src := s.open(t)
	ops := script(8)
	s.applyAll(t, ops)
	stop, all := s.watchToSentinel(t, src, "", ops)
	want := slices.Concat(ops, []op{stop})
	for _, k := range []int{0, 3, len(ops) - 1, len(ops)} {
		t.Run(fmt.Sprintf("after#%d", k), func(t *testing.T) {
			if k == len(ops) {
				// From the sentinel itself: a new sentinel is all there is.
				s.watchToSentinel(t, src, all[k].Position, nil)
				return
			}
			got := s.watchUntil(t, src, all[k].Position, stop)
			s.requireChanges(t, want[k+1:], got)
		})
	}
}

func testHead(t *testing.T, s *suite) {
	src := s.open(t)
	ctx := s.ctx(t)
	before, err := src.Head(ctx)
	require.NoError(t, err)
	ops := script(3)
	s.applyAll(t, ops)
	got := s.watchUntil(t, src, "", ops[len(ops)-1])
	s.requireChanges(t, ops, got)

	head, err := src.Head(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, head, got[len(got)-1].Position, "Head must be at or after the newest change")
	require.Greater(t, head, before, "Head must move past changes committed since")

	// Start-from-now: watching from Head skips everything before it.
	s.watchToSentinel(t, src, head, nil)
}

func testRestart(t *testing.T, s *suite) {
	const key = "sys/checkpoints/conformance/restart"
	src := s.open(t)
	ctx := s.ctx(t)
	ops := script(10)
	s.applyAll(t, ops[:5])
	first := s.watchUntil(t, src, "", ops[4])
	s.requireChanges(t, ops[:5], first)
	require.NoError(t, src.Checkpoints().Save(ctx, key, first[2].Position))
	require.NoError(t, src.Confirm(ctx, first[2].Position))
	require.NoError(t, src.Close())

	// Written while no source is open.
	s.applyAll(t, ops[5:])
	src2 := s.open(t)
	pos, found, err := src2.Checkpoints().Load(ctx, key)
	require.NoError(t, err)
	require.True(t, found, "checkpoint saved before the restart is gone")
	require.Equal(t, first[2].Position, pos)
	s.watchToSentinel(t, src2, pos, ops[3:])
}

func testConfirm(t *testing.T, s *suite) {
	src := s.open(t)
	ctx := s.ctx(t)
	ops := script(6)
	s.applyAll(t, ops)
	all := s.watchUntil(t, src, "", ops[5])
	s.requireChanges(t, ops, all)
	require.NoError(t, src.Confirm(ctx, all[2].Position))

	stop, _ := s.watchToSentinel(t, src, all[2].Position, ops[3:])

	// And after a restart, from the same confirmed position.
	require.NoError(t, src.Close())
	src2 := s.open(t)
	got := s.watchUntil(t, src2, all[2].Position, stop)
	s.requireChanges(t, slices.Concat(ops[3:], []op{stop}), got)

	// Confirming everything delivered still leaves later changes.
	require.NoError(t, src2.Confirm(ctx, got[len(got)-1].Position))
	s.watchToSentinel(t, src2, got[len(got)-1].Position, nil)
}

func testCancellation(t *testing.T, s *suite) {
	src := s.open(t)
	s.apply(t, script(1)[0])

	t.Run("BeforeWatch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := src.Watch(ctx, "", func(watcher.Change) error { return nil })
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("FromEmit", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		err := src.Watch(ctx, "", func(watcher.Change) error { cancel(); return nil })
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("WhileIdle", func(t *testing.T) {
		// The one change is delivered, then Watch waits for more; cancel
		// from another goroutine while it does.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		delivered := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			select {
			case <-delivered:
			case <-time.After(s.h.Timeout):
			}
			cancel()
		})
		err := src.Watch(ctx, "", func(watcher.Change) error {
			once.Do(func() { close(delivered) })
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		select {
		case <-delivered:
		default:
			t.Fatalf("Watch delivered nothing within %s", s.h.Timeout)
		}
	})
	t.Run("Deadline", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now())
		defer cancel()
		err := src.Watch(ctx, "", func(watcher.Change) error { return nil })
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

var errStop = errors.New("watchertest: stop")

func testEmitError(t *testing.T, s *suite) {
	src := s.open(t)
	ops := script(3)
	s.applyAll(t, ops)
	calls := 0
	err := src.Watch(s.ctx(t), "", func(watcher.Change) error {
		calls++
		return errStop
	})
	require.Equal(t, errStop, err, "Watch must return emit's error as is")
	require.Equal(t, 1, calls, "Watch must stop calling emit after it fails")

	// The failed emit consumed nothing: a new watch redelivers it.
	got := s.watchUntil(t, src, "", ops[len(ops)-1])
	s.requireChanges(t, ops, got)
}

func testCheckpoints(t *testing.T, s *suite) {
	src := s.open(t)
	ctx := s.ctx(t)
	cp := src.Checkpoints()
	require.NotNil(t, cp)
	const (
		a = "sys/checkpoints/conformance/a"
		b = "sys/checkpoints/conformance/b"
	)
	pos, found, err := cp.Load(ctx, a)
	require.NoError(t, err)
	require.False(t, found, "missing key")
	require.Empty(t, pos)

	require.NoError(t, cp.Save(ctx, a, "00000000000000000001"))
	require.NoError(t, cp.Save(ctx, b, "00000000000000000002"))
	require.NoError(t, cp.Save(ctx, a, "00000000000000000003"), "Save must replace")
	pos, found, err = cp.Load(ctx, a)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "00000000000000000003", pos)

	require.NoError(t, cp.Delete(ctx, a))
	_, found, err = cp.Load(ctx, a)
	require.NoError(t, err)
	require.False(t, found, "deleted key")
	require.NoError(t, cp.Delete(ctx, a), "deleting a missing key is not an error")

	pos, found, err = cp.Load(ctx, b)
	require.NoError(t, err)
	require.True(t, found, "other keys survive a Delete")
	require.Equal(t, "00000000000000000002", pos)

	// Checkpoints are durable: a new source sees them.
	require.NoError(t, src.Close())
	src2 := s.open(t)
	pos, found, err = src2.Checkpoints().Load(ctx, b)
	require.NoError(t, err)
	require.True(t, found, "checkpoint lost across reopen")
	require.Equal(t, "00000000000000000002", pos)
}

func testBadRow(t *testing.T, s *suite) {
	bw, ok := s.env.Writer.(BadWriter)
	if !ok {
		t.Skip("the harness's Writer cannot write bad rows (no BadWriter)")
	}
	src := s.open(t)
	coll := Collections[0]
	good1 := op{coll, "good-1", trigger.EventCreate, 1}
	good2 := op{coll, "good-2", trigger.EventCreate, 1}
	s.apply(t, good1)
	require.NoError(t, bw.WriteBad(s.ctx(t), coll, "bad-1"))
	s.apply(t, good2)
	got := s.watchUntil(t, src, "", good2)
	require.Len(t, got, 3, "changes delivered:\n%s", describe(got))
	bad := got[1]
	require.NotEmpty(t, bad.Problem, "an undecodable row must be reported with Problem set")
	require.Equal(t, coll, bad.Collection)
	require.Equal(t, "bad-1", bad.DocKey)
	require.Equal(t, s.h.Tenant, bad.Tenant)
	require.Greater(t, bad.Position, got[0].Position)
	s.requireChanges(t, []op{good1, good2}, []watcher.Change{got[0], got[2]})
	require.Greater(t, got[2].Position, bad.Position)
}

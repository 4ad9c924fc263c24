package watchertest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// These subtests run a watcher.DocumentWatcher over the source: positions
// that enter from outside (a resume token, a stored checkpoint) must mean
// to the watcher what they mean to the source, whatever their spelling.

// genericInvalidPositions are refused by every source: none is a number,
// an LSN or a fixed-width token in any spelling.
var genericInvalidPositions = []string{
	"garbage", "-1", "+1", " 1", "1 ", "1x", "0x1F", "1e3", "1.0", "１",
}

// respellings returns pos and its other spellings, canonical first.
func (s *suite) respellings(pos string) []string {
	out := []string{pos}
	if s.h.Respell != nil {
		out = append(out, s.h.Respell(pos)...)
	}
	return out
}

// invalidPositions returns the suite's malformed tokens and the harness's.
func (s *suite) invalidPositions() []string {
	return slices.Concat(genericInvalidPositions, s.h.InvalidPositions)
}

func (s *suite) head(t *testing.T, src watcher.Source) string {
	t.Helper()
	h, err := src.Head(s.ctx(t))
	require.NoError(t, err)
	require.NotEmpty(t, h, "Head after a change")
	return h
}

func (s *suite) watcherConfig(include ...string) watcher.Config {
	return watcher.Config{
		Tenant:  s.h.Tenant,
		Include: include,
		Logger:  slog.New(slog.DiscardHandler),
	}
}

// runWatcher runs a DocumentWatcher until it has handled until's change,
// then stops it (which saves the checkpoint) and returns what it handled.
func (s *suite) runWatcher(t *testing.T, src watcher.Source, cfg watcher.Config, until op) []watcher.Change {
	t.Helper()
	w, err := watcher.New(src, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), s.h.Timeout)
	defer cancel()
	var mu sync.Mutex
	var got []watcher.Change
	finished := false
	err = w.Run(ctx, func(_ context.Context, c watcher.Change, done func()) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, c)
		done()
		if matches(c, until) {
			finished = true
			cancel()
		}
		return nil
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	if !finished {
		t.Fatalf("the watcher (include %v, resume token %q) did not hand out %s within %s; it handed out %d changes:\n%s"+
			"and its checkpoints are now %s",
			cfg.Include, cfg.ResumeToken, until, s.h.Timeout, len(got), describe(got), s.checkpoints(t, src, cfg))
	}
	return got
}

// checkpoints describes the watcher's checkpoint keys for cfg.
func (s *suite) checkpoints(t *testing.T, src watcher.Source, cfg watcher.Config) string {
	t.Helper()
	var parts []string
	for _, k := range watcher.CheckpointKeys(cfg.Tenant, cfg.Include) {
		pos, found, err := src.Checkpoints().Load(s.ctx(t), k)
		switch {
		case err != nil:
			parts = append(parts, fmt.Sprintf("%s: %v", k, err))
		case !found:
			parts = append(parts, k+": none")
		default:
			parts = append(parts, fmt.Sprintf("%s=%q", k, pos))
		}
	}
	return strings.Join(parts, ", ")
}

func (s *suite) requireCheckpoints(t *testing.T, src watcher.Source, include []string, want string) {
	t.Helper()
	for _, k := range watcher.CheckpointKeys(s.h.Tenant, include) {
		pos, found, err := src.Checkpoints().Load(s.ctx(t), k)
		require.NoError(t, err)
		require.True(t, found, "checkpoint %s", k)
		require.Equal(t, want, pos, "checkpoint %s must be the end of what the watcher handed out, no further", k)
	}
}

func inCollections(ops []op, include []string) []op {
	var out []op
	for _, o := range ops {
		if slices.Contains(include, o.collection) {
			out = append(out, o)
		}
	}
	return out
}

// testParsePosition: the source's own positions are canonical, other
// spellings map to them, and malformed ones are refused, by ParsePosition
// and by Watch.
func testParsePosition(t *testing.T, s *suite) {
	src := s.open(t)
	ctx := s.ctx(t)
	got, err := src.ParsePosition("")
	require.NoError(t, err)
	require.Empty(t, got, `"" stays ""`)

	ops := script(4)
	for _, o := range ops {
		s.apply(t, o)
	}
	changes := s.watchUntil(t, src, "", ops[len(ops)-1])
	positions := []string{s.head(t, src)}
	for _, c := range changes {
		positions = append(positions, c.Position)
	}
	for _, pos := range positions {
		for _, spelling := range s.respellings(pos) {
			got, err := src.ParsePosition(spelling)
			require.NoError(t, err, "ParsePosition(%q)", spelling)
			require.Equal(t, pos, got, "ParsePosition(%q) must return the source's own spelling", spelling)
		}
	}

	for _, bad := range s.invalidPositions() {
		_, err := src.ParsePosition(bad)
		require.ErrorIs(t, err, watcher.ErrInvalidPosition, "ParsePosition(%q)", bad)
		emitted := 0
		err = src.Watch(ctx, bad, func(watcher.Change) error { emitted++; return nil })
		require.ErrorIs(t, err, watcher.ErrInvalidPosition, "Watch(%q)", bad)
		require.Zero(t, emitted, "Watch(%q)", bad)
	}
}

// fresh returns a suite on a new database: the watcher confirms what it
// checkpoints, and a source may then prune it, so a case that replays
// from an early position needs a database of its own.
func (s *suite) fresh(t *testing.T) *suite {
	t.Helper()
	return &suite{h: s.h, env: s.h.New(t)}
}

// testResumeTokenWithInclude is issue 14's reproduction: five changes, a
// resume token after the first spelled without its zero padding, and an
// include filter delivered nothing and moved the include's checkpoint past
// every change.
func testResumeTokenWithInclude(t *testing.T, s *suite) {
	orders, customers := Collections[0], Collections[1]
	first := op{orders, "a", trigger.EventCreate, 1}
	rest := []op{
		{customers, "b", trigger.EventCreate, 1},
		{orders, "a", trigger.EventUpdate, 2},
		{orders, "c", trigger.EventCreate, 1},
		{customers, "b", trigger.EventUpdate, 2},
	}
	// setup writes the changes and returns the position right after the
	// first, and its spellings.
	setup := func(t *testing.T, s *suite) (watcher.Source, []string) {
		src := s.open(t)
		s.apply(t, first)
		tokens := s.respellings(s.head(t, src))
		for _, o := range rest {
			s.apply(t, o)
		}
		return src, tokens
	}
	// How many spellings there are, learnt on the subtest's own database;
	// each case then gets a fresh one.
	_, tokens := setup(t, s)
	for _, include := range [][]string{{orders}, {orders, customers}} {
		for i := range tokens {
			t.Run(fmt.Sprintf("include=%s/token#%d", strings.Join(include, ","), i), func(t *testing.T) {
				s := s.fresh(t)
				src, tokens := setup(t, s)
				t.Logf("resume token %q", tokens[i])
				stop := s.writeSentinel(t)
				cfg := s.watcherConfig(include...)
				cfg.ResumeToken = tokens[i]
				got := s.runWatcher(t, src, cfg, stop)
				// Exactly the included changes after the first, and the
				// checkpoint no further than what was handed out.
				s.requireChanges(t, slices.Concat(inCollections(rest, include), []op{stop}), got)
				s.requireCheckpoints(t, src, include, got[len(got)-1].Position)
			})
		}
	}
}

// testRespelledCheckpoints stores per-include checkpoints that differ,
// one of them in another spelling, as an operator's `checkpoint set` or an
// older build may have: each include entry resumes from its own.
func testRespelledCheckpoints(t *testing.T, s *suite) {
	orders, customers := Collections[0], Collections[1]
	include := []string{orders, customers}
	keys := watcher.CheckpointKeys(s.h.Tenant, include)
	ops := []op{
		{orders, "a", trigger.EventCreate, 1},
		// orders' checkpoint
		{customers, "b", trigger.EventCreate, 1},
		{orders, "a", trigger.EventUpdate, 2},
		// customers' checkpoint
		{customers, "b", trigger.EventUpdate, 2},
		{orders, "c", trigger.EventCreate, 1},
	}
	setup := func(t *testing.T, s *suite) (src watcher.Source, ordersFrom []string, customersFrom string) {
		src = s.open(t)
		s.apply(t, ops[0])
		ordersFrom = s.respellings(s.head(t, src))
		s.apply(t, ops[1])
		s.apply(t, ops[2])
		customersFrom = s.head(t, src)
		s.apply(t, ops[3])
		s.apply(t, ops[4])
		return src, ordersFrom, customersFrom
	}
	_, spellings, _ := setup(t, s) // how many, as above
	for i := range spellings {
		t.Run(fmt.Sprintf("orders#%d", i), func(t *testing.T) {
			s := s.fresh(t)
			src, ordersFrom, customersFrom := setup(t, s)
			t.Logf("orders checkpoint %q, customers checkpoint %q", ordersFrom[i], customersFrom)
			ctx := s.ctx(t)
			require.NoError(t, src.Checkpoints().Save(ctx, keys[0], ordersFrom[i]))
			require.NoError(t, src.Checkpoints().Save(ctx, keys[1], customersFrom))
			stop := s.writeSentinel(t)
			got := s.runWatcher(t, src, s.watcherConfig(include...), stop)
			// orders from its checkpoint: its update and create; customers
			// from its own, later one: only the update after it.
			s.requireChanges(t, []op{ops[2], ops[3], ops[4], stop}, got)
			s.requireCheckpoints(t, src, include, got[len(got)-1].Position)

			// Restarted, it goes on from there.
			next := s.writeSentinel(t)
			got = s.runWatcher(t, src, s.watcherConfig(include...), next)
			s.requireChanges(t, []op{next}, got)
			s.requireCheckpoints(t, src, include, got[0].Position)
		})
	}
}

// testInvalidPositions: a malformed resume token stops the watcher before
// it touches a checkpoint, and a malformed stored checkpoint counts as
// missing.
func testInvalidPositions(t *testing.T, s *suite) {
	src := s.open(t)
	ctx := s.ctx(t)
	s.apply(t, op{Collections[0], "a", trigger.EventCreate, 1})
	valid := s.head(t, src)
	key := watcher.CheckpointKeys(s.h.Tenant, nil)[0]

	t.Run("ResumeToken", func(t *testing.T) {
		require.NoError(t, src.Checkpoints().Save(ctx, key, valid))
		for _, bad := range s.invalidPositions() {
			cfg := s.watcherConfig()
			cfg.ResumeToken = bad
			_, err := watcher.New(src, cfg)
			require.ErrorIs(t, err, watcher.ErrInvalidConfig, "resume token %q", bad)
			require.ErrorIs(t, err, watcher.ErrInvalidPosition, "resume token %q", bad)
			require.ErrorContains(t, err, "watcher.resumeToken", "the error must name the setting")
		}
		pos, _, err := src.Checkpoints().Load(ctx, key)
		require.NoError(t, err)
		require.Equal(t, valid, pos, "a refused resume token must leave the checkpoint alone")
	})

	t.Run("StoredCheckpoint", func(t *testing.T) {
		for _, bad := range s.invalidPositions() {
			require.NoError(t, src.Checkpoints().Save(ctx, key, bad))
			w, err := watcher.New(src, s.watcherConfig())
			require.NoError(t, err)
			runCtx, cancel := context.WithTimeout(ctx, s.h.Timeout)
			err = w.Run(runCtx, func(context.Context, watcher.Change, func()) error { return nil })
			cancel()
			require.ErrorIs(t, err, watcher.ErrNoCheckpoint, "a stored checkpoint %q must count as missing", bad)
			pos, _, err := src.Checkpoints().Load(ctx, key)
			require.NoError(t, err)
			require.Equal(t, bad, pos, "a watcher that did not start must leave the checkpoint alone")
		}

		// With start-from-now, as for a missing one: from the head on.
		require.NoError(t, src.Checkpoints().Save(ctx, key, "garbage"))
		s.writeSentinel(t) // before now: not delivered
		after := s.nextSentinel()
		cfg := s.watcherConfig()
		cfg.StartFromNow = true
		cfg.OnStarted = func(string) { s.apply(t, after) }
		got := s.runWatcher(t, src, cfg, after)
		s.requireChanges(t, []op{after}, got)
	})
}

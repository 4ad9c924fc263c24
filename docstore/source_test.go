package docstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// TestAnyWriter changes documents with plain SQL, including what the Go API
// never does: moving a document to another key, bad data, bad names.
func TestAnyWriter(t *testing.T) {
	t.Parallel()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'o-1', '{"total": 1}')`)
	exec(t, db, `UPDATE documents SET data = '{"total": 2}' WHERE id = 'o-1'`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'o-1', '{"total": 3}')
	             ON CONFLICT (tenant, collection, id) DO UPDATE SET data = excluded.data`)
	exec(t, db, `UPDATE documents SET id = 'o-2' WHERE id = 'o-1'`)
	exec(t, db, `DELETE FROM documents WHERE id = 'o-2'`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'bad', 'not json')`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'arr', '[1]')`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'bad collection', 'x', '{}')`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', '', '{}')`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'blob', CAST('{"b": 1}' AS BLOB))`)
	exec(t, db, `INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'last', '{}')`)
	_, err := db.Exec(`INSERT INTO documents (tenant, collection, id, data) VALUES ('acme', 'orders', 'null', NULL)`)
	require.Error(t, err, "NULL data is refused by the schema, at write time")

	got := collect(t, source(t, st, "acme"), "", 12)
	type row struct {
		typ           trigger.EventType
		key           string
		before, after string
		problem       bool
	}
	want := []row{
		{trigger.EventCreate, "o-1", "", `{"total": 1}`, false},
		{trigger.EventUpdate, "o-1", `{"total": 1}`, `{"total": 2}`, false},
		{trigger.EventUpdate, "o-1", `{"total": 2}`, `{"total": 3}`, false},
		{trigger.EventDelete, "o-1", `{"total": 3}`, "", false},
		{trigger.EventCreate, "o-2", "", `{"total": 3}`, false},
		{trigger.EventDelete, "o-2", `{"total": 3}`, "", false},
		{trigger.EventCreate, "bad", "", `not json`, true},
		{trigger.EventCreate, "arr", "", `[1]`, true},
		{trigger.EventCreate, "x", "", `{}`, true},
		{trigger.EventCreate, "", "", `{}`, true},
		{trigger.EventCreate, "blob", "", `{"b": 1}`, false},
		{trigger.EventCreate, "last", "", `{}`, false},
	}
	for i, w := range want {
		c := got[i]
		require.Equal(t, w.typ, c.Type, "#%d", i)
		require.Equal(t, w.key, c.DocKey, "#%d", i)
		require.Equal(t, w.before, string(c.Before), "#%d", i)
		require.Equal(t, w.after, string(c.After), "#%d", i)
		require.Equal(t, w.problem, c.Problem != "", "#%d: problem %q", i, c.Problem)
		require.Equal(t, docstore.FormatPosition(int64(i+1)), c.Position)
	}
	require.Contains(t, got[6].Problem, "not valid JSON")
	require.Contains(t, got[7].Problem, "not an object")
	require.Contains(t, got[8].Problem, "collection")
	require.Contains(t, got[9].Problem, "document id")
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	for i := range 4 {
		require.NoError(t, st.Put(ctx, "acme", "orders", fmt.Sprint(i), json.RawMessage(`{}`)))
		require.NoError(t, st.Put(ctx, "globex", "orders", fmt.Sprint(i), json.RawMessage(`{}`)))
	}
	acme, globex, empty := source(t, st, "acme"), source(t, st, "globex"), source(t, st, "initech")
	for _, c := range collect(t, acme, "", 4) {
		require.Equal(t, "acme", c.Tenant)
	}
	gs := collect(t, globex, "", 4)
	for _, c := range gs {
		require.Equal(t, "globex", c.Tenant)
	}
	head, err := globex.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, gs[3].Position, head)
	require.Equal(t, docstore.FormatPosition(8), head)
	head, err = empty.Head(ctx)
	require.NoError(t, err)
	require.Empty(t, head, "a tenant without changes has no head")
}

func TestPruneBehindConfirmation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	for i := range 10 {
		require.NoError(t, st.Put(ctx, "acme", "orders", fmt.Sprint(i), json.RawMessage(`{}`)))
		require.NoError(t, st.Put(ctx, "globex", "orders", fmt.Sprint(i), json.RawMessage(`{}`)))
	}
	acme := source(t, st, "acme")
	all := collect(t, acme, "", 10)

	require.NoError(t, acme.Confirm(ctx, all[4].Position))
	require.Equal(t, 5, countChanges(t, db, "acme"), "acme's confirmed changes are pruned")
	require.Equal(t, 10, countChanges(t, db, "globex"), "an unconfirmed tenant keeps everything")
	require.Equal(t, all[5:], collect(t, acme, all[4].Position, 5), "unconfirmed changes survive")

	err := acme.Watch(ctx, all[2].Position, func(watcher.Change) error { return nil })
	require.ErrorIs(t, err, docstore.ErrPruned, "resuming behind pruned changes would skip them")
	err = acme.Watch(ctx, "", func(watcher.Change) error { return context.Canceled })
	require.ErrorIs(t, err, context.Canceled, `"" starts at the oldest change still held`)

	head, err := acme.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, all[9].Position, head)
	require.NoError(t, acme.Confirm(ctx, all[9].Position))
	require.Zero(t, countChanges(t, db, "acme"))
	head, err = acme.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, all[9].Position, head, "Head survives pruning")

	// Globex's rows interleave with acme's; pruning acme left them alone.
	globex := source(t, st, "globex")
	require.Len(t, collect(t, globex, "", 10), 10)

	// Confirming past the log's head is refused, not obeyed.
	err = acme.Confirm(ctx, docstore.FormatPosition(1000))
	require.ErrorIs(t, err, docstore.ErrInvalidPosition)
	require.NoError(t, acme.Confirm(ctx, ""))
	require.ErrorIs(t, acme.Confirm(ctx, "12ab"), docstore.ErrInvalidPosition)
}

func TestPruneRespectsRetention(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{Retention: time.Hour})
	db := rawDB(t, st.Path())
	for i := range 10 {
		require.NoError(t, st.Put(ctx, "acme", "orders", fmt.Sprint(i), json.RawMessage(`{}`)))
	}
	src := source(t, st, "acme")
	all := collect(t, src, "", 10)
	require.NoError(t, src.Confirm(ctx, all[9].Position))
	require.Equal(t, 10, countChanges(t, db, "acme"), "younger than retention")

	// Age the first four changes past retention.
	exec(t, db, `UPDATE changes SET committed_at = committed_at - 7200000 WHERE seq <= 4`)
	require.NoError(t, src.Confirm(ctx, all[6].Position))
	require.Equal(t, 6, countChanges(t, db, "acme"), "only old and confirmed changes go")

	// Old but unconfirmed changes stay too.
	exec(t, db, `UPDATE changes SET committed_at = committed_at - 7200000`)
	require.NoError(t, src.Confirm(ctx, all[6].Position))
	require.Equal(t, 3, countChanges(t, db, "acme"))
	rest := collect(t, src, all[6].Position, 3)
	for i, c := range rest {
		require.Equal(t, all[7+i].Position, c.Position)
	}
}

func TestPruneLargeBacklog(t *testing.T) {
	t.Parallel()
	st := openStore(t, docstore.Config{})
	db := rawDB(t, st.Path())
	fill(t, db, "acme", 2500, 10)
	fill(t, db, "globex", 10, 10)
	src := source(t, st, "acme")
	require.NoError(t, src.Confirm(t.Context(), docstore.FormatPosition(2499)))
	require.Equal(t, 1, countChanges(t, db, "acme"))
	require.Equal(t, 10, countChanges(t, db, "globex"))
}

func TestSourceParsePosition(t *testing.T) {
	t.Parallel()
	src := source(t, openStore(t, docstore.Config{}), "acme")
	for in, want := range map[string]string{
		"":                     "",
		"0":                    "00000000000000000000",
		"1":                    "00000000000000000001",
		"0042":                 "00000000000000000042",
		"00000000000000000042": "00000000000000000042",
		"9223372036854775807":  "09223372036854775807",
	} {
		got, err := src.ParsePosition(in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
	for _, in := range []string{"abc", "-1", "+1", "1.5", " 1", "1 ", "0x1F", "１", "9223372036854775808", "000000000000000000001"} {
		_, err := src.ParsePosition(in)
		require.ErrorIs(t, err, watcher.ErrInvalidPosition, "%q", in)
		require.ErrorIs(t, err, docstore.ErrInvalidPosition, "%q", in)
		require.ErrorContains(t, err, "decimal digits", "the error names the format")
	}
}

func TestWatchRejectsBadPositions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	require.NoError(t, st.Put(ctx, "acme", "orders", "1", json.RawMessage(`{}`)))
	src := source(t, st, "acme")
	noop := func(watcher.Change) error { return nil }
	for _, pos := range []string{"abc", "-1", "000000000000000000001", "1.5", " 1"} {
		require.ErrorIs(t, src.Watch(ctx, pos, noop), docstore.ErrInvalidPosition, "%q", pos)
	}
	err := src.Watch(ctx, docstore.FormatPosition(2), noop)
	require.ErrorIs(t, err, docstore.ErrInvalidPosition, "a position past the head is from another database")
	require.Contains(t, err.Error(), "another database")
	// Unpadded tokens are still positions.
	require.NoError(t, st.Put(ctx, "acme", "orders", "2", json.RawMessage(`{}`)))
	got := collect(t, src, "1", 1)
	require.Equal(t, docstore.FormatPosition(2), got[0].Position)
}

func TestCloseStopsWatch(t *testing.T) {
	t.Parallel()
	for _, closeStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", closeStore), func(t *testing.T) {
			st, err := docstore.Open(t.Context(), docstore.Config{Path: tempPath(t)})
			require.NoError(t, err)
			defer st.Close()
			require.NoError(t, st.Put(t.Context(), "acme", "orders", "1", json.RawMessage(`{}`)))
			src, err := st.Source("acme")
			require.NoError(t, err)
			errc := make(chan error, 1)
			delivered := make(chan struct{})
			go func() {
				errc <- src.Watch(t.Context(), "", func(watcher.Change) error { close(delivered); return nil })
			}()
			<-delivered
			if closeStore {
				require.NoError(t, st.Close())
			} else {
				require.NoError(t, src.Close())
			}
			require.ErrorIs(t, <-errc, docstore.ErrClosed)
			require.ErrorIs(t, src.Watch(t.Context(), "", nil), docstore.ErrClosed)
			_, err = src.Head(t.Context())
			require.ErrorIs(t, err, docstore.ErrClosed)
		})
	}
}

// TestConcurrentWriters puts from several goroutines while a watch runs:
// every change arrives once, in seq order, and matches the log.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 6, 150
	ctx := t.Context()
	st := openStore(t, docstore.Config{})
	other := openStore(t, docstore.Config{Path: st.Path()}) // a second process, as far as SQLite knows
	src := source(t, st, "acme")

	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			target := st
			if w%2 == 1 {
				target = other
			}
			for i := range perWriter {
				doc := json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				if err := target.Put(ctx, "acme", "orders", fmt.Sprintf("w%d-%d", w, i%10), doc); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	got := collect(t, src, "", writers*perWriter)
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}

	seen := map[string]bool{}
	last := map[int]int{}
	for i, c := range got {
		if i > 0 {
			require.Greater(t, c.Position, got[i-1].Position)
		}
		require.False(t, seen[c.Position], "duplicate %s", c.Position)
		seen[c.Position] = true
		var d struct{ W, I int }
		require.NoError(t, json.Unmarshal(c.After, &d))
		if n, ok := last[d.W]; ok {
			require.Equal(t, n+1, d.I, "writer %d's changes out of order", d.W)
		}
		last[d.W] = d.I
	}
	rows, err := rawDB(t, st.Path()).Query(`SELECT seq FROM changes WHERE tenant = 'acme' ORDER BY seq`)
	require.NoError(t, err)
	defer rows.Close()
	var logged []string
	for rows.Next() {
		var seq int64
		require.NoError(t, rows.Scan(&seq))
		logged = append(logged, docstore.FormatPosition(seq))
	}
	require.NoError(t, rows.Err())
	positions := make([]string, len(got))
	for i, c := range got {
		positions[i] = c.Position
	}
	require.Equal(t, logged, positions)
}

// TestWatchMemoryIsFlat reads 100,000 changes and checks that the heap in
// use after the last one is close to what it was after the first batch: a
// Watch that kept what it emitted would hold over 30 MB more by then.
func TestWatchMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 changes")
	}
	// Under the race detector every access is instrumented and 100,000
	// changes take over a minute; 20,000 still reads ten times past the
	// early sample, which is what flatness is measured against.
	total := 100_000
	if raceEnabled {
		total = 20_000
	}
	st := openStore(t, docstore.Config{})
	fill(t, rawDB(t, st.Path()), "acme", total, 256)
	src := source(t, st, "acme")

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	var early, late uint64
	n := 0
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := src.Watch(ctx, "", func(c watcher.Change) error {
		n++
		switch n {
		case 2_000:
			early = heap()
		case total:
			late = heap()
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, total, n)
	t.Logf("heap in use after 2,000 changes: %d KiB; after %d: %d KiB", early>>10, total, late>>10)
	require.Less(t, int64(late)-int64(early), int64(8<<20), "Watch's memory grows with the changes it has read")
}

func TestPositions(t *testing.T) {
	t.Parallel()
	require.Equal(t, "00000000000000000000", docstore.FormatPosition(0))
	require.Equal(t, "00000000000000000042", docstore.FormatPosition(42))
	require.Equal(t, "09223372036854775807", docstore.FormatPosition(1<<63-1))
	require.Less(t, docstore.FormatPosition(9), docstore.FormatPosition(10))
	seq, err := docstore.ParsePosition("")
	require.NoError(t, err)
	require.Zero(t, seq)
	seq, err = docstore.ParsePosition("42")
	require.NoError(t, err)
	require.EqualValues(t, 42, seq)
	_, err = docstore.ParsePosition("99999999999999999999")
	require.ErrorIs(t, err, docstore.ErrInvalidPosition)
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"", "0", "00000000000000000042", "-1", "9223372036854775808", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, err := docstore.ParsePosition(s)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, seq, int64(0))
		back, err := docstore.ParsePosition(docstore.FormatPosition(seq))
		require.NoError(t, err)
		require.Equal(t, seq, back)
	})
}

package pgsource

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/watcher"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait for the server; it turns a hang into a failure
// and asserts nothing about speed.
const waitFor = 30 * time.Second

var dbSeq atomic.Int64

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// db is one test's database on the shared cluster.
type db struct {
	pg   *testenv.PostgresServer
	name string
	dsn  string
	pool *pgxpool.Pool
}

// newDB creates a database for t and, when t ends, drops it together with
// its replication slots (a slot pins its database).
func newDB(t testing.TB, pg *testenv.PostgresServer) *db {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	name = name[:min(len(name), maxIdentifier)]
	dsn := pg.CreateDatabase(t, name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.DSN())
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close(ctx)
		// A walsender outlives its client briefly; stop it so the slot
		// can be dropped.
		for {
			var left int
			err := conn.QueryRow(ctx, `
SELECT count(*) FROM (
  SELECT CASE WHEN active THEN pg_terminate_backend(active_pid) ELSE pg_drop_replication_slot(slot_name) IS NULL END
  FROM pg_replication_slots WHERE database = $1) s`, name).Scan(&left)
			if err == nil && left == 0 || ctx.Err() != nil {
				break
			}
			if err != nil && !isCode(err, "55006") {
				t.Errorf("cleanup: dropping slots: %v", err)
				break
			}
			time.Sleep(20 * time.Millisecond) // polling an external process
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return &db{pg: pg, name: name, dsn: dsn, pool: pg.PoolFor(t, dsn)}
}

func (d *db) exec(t testing.TB, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		_, err := d.pool.Exec(context.Background(), sql)
		require.NoError(t, err, sql)
	}
}

// slot returns the slot's confirmed_flush_lsn.
func (d *db) confirmedFlush(t testing.TB, slot string) pglogrepl.LSN {
	t.Helper()
	var text string
	require.NoError(t, d.pool.QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&text))
	lsn, err := pglogrepl.ParseLSN(text)
	require.NoError(t, err)
	return lsn
}

// awaitFlush polls the slot until its confirmed_flush_lsn is want.
func (d *db) awaitFlush(t testing.TB, slot string, want pglogrepl.LSN) {
	t.Helper()
	d.awaitFlushed(t, slot, want.String(), func(got pglogrepl.LSN) bool { return got == want })
}

// awaitFlushPast polls the slot until its confirmed_flush_lsn passes lsn.
func (d *db) awaitFlushPast(t testing.TB, slot string, lsn pglogrepl.LSN) {
	t.Helper()
	d.awaitFlushed(t, slot, "past "+lsn.String(), func(got pglogrepl.LSN) bool { return got > lsn })
}

func (d *db) awaitFlushed(t testing.TB, slot, want string, ok func(pglogrepl.LSN) bool) {
	t.Helper()
	testenv.Eventually(t, waitFor, fmt.Sprintf("slot %s: confirmed_flush_lsn %s", slot, want), func() error {
		if got := d.confirmedFlush(t, slot); !ok(got) {
			return fmt.Errorf("confirmed_flush_lsn is %s", got)
		}
		return nil
	})
}

// testLogger logs through t until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open creates a Source on d, closed when t ends.
func (d *db) open(t testing.TB, mod func(*Config)) *Source {
	t.Helper()
	cfg := Config{
		DSN:    d.dsn,
		Tenant: "acme",
		// Slots are cluster-wide; databases are per test.
		Slot:             d.name,
		Logger:           testLogger(t),
		ReconnectInitial: 10 * time.Millisecond,
		ReconnectMax:     100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	src, err := New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// stream runs Watch in the background, collecting changes.
type stream struct {
	t       testing.TB
	changes chan watcher.Change
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	err     error
}

func watch(t testing.TB, src *Source, after string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{t: t, changes: make(chan watcher.Change, 100_000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- src.Watch(ctx, after, func(c watcher.Change) error {
			s.changes <- c
			return nil
		})
	}()
	t.Cleanup(func() { _ = s.stop() })
	return s
}

// take returns the next n changes.
func (s *stream) take(n int) []watcher.Change {
	s.t.Helper()
	out := make([]watcher.Change, 0, n)
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for len(out) < n {
		select {
		case c := <-s.changes:
			out = append(out, c)
		case err := <-s.done:
			s.done <- err
			s.t.Fatalf("Watch returned %v after %d of %d changes", err, len(out), n)
		case <-timeout.C:
			s.t.Fatalf("got %d of %d changes within %s:\n%s", len(out), n, waitFor, describe(out))
		}
	}
	return out
}

// until returns the changes up to and including the first one for which
// last is true.
func (s *stream) until(last func(watcher.Change) bool) []watcher.Change {
	s.t.Helper()
	var out []watcher.Change
	for {
		c := s.take(1)[0]
		out = append(out, c)
		if last(c) {
			return out
		}
	}
}

// watchN watches from after for n changes, then stops.
func watchN(t testing.TB, src *Source, after string, n int) []watcher.Change {
	t.Helper()
	s := watch(t, src, after)
	got := s.take(n)
	require.ErrorIs(t, s.stop(), context.Canceled)
	return got
}

// watchUntil watches from after until last is true for a change, then
// stops.
func watchUntil(t testing.TB, src *Source, after string, last func(watcher.Change) bool) []watcher.Change {
	t.Helper()
	s := watch(t, src, after)
	got := s.until(last)
	require.ErrorIs(t, s.stop(), context.Canceled)
	return got
}

// stop cancels Watch and returns its error (context.Canceled when clean).
func (s *stream) stop() error {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.err = <-s.done:
		case <-time.After(waitFor):
			s.err = fmt.Errorf("watch did not return within %s", waitFor)
		}
	})
	return s.err
}

func describe(cs []watcher.Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s %s %s/%s before=%s after=%s problem=%q\n", c.Position, c.Type, c.Collection, c.DocKey, c.Before, c.After, c.Problem)
	}
	return b.String()
}

// requireIncreasing checks the positions' byte-wise order.
func requireIncreasing(t testing.TB, cs []watcher.Change) {
	t.Helper()
	for i := 1; i < len(cs); i++ {
		require.Greater(t, cs[i].Position, cs[i-1].Position, "position #%d", i)
	}
}

func commitOf(t testing.TB, pos string) pglogrepl.LSN {
	t.Helper()
	p, err := parsePosition(pos)
	require.NoError(t, err)
	return p.commit
}

// summary is what tests compare changes by: CommitTime values carry a
// location pointer that differs between streams.
func summary(cs []watcher.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %s %s/%s %s -> %s %q %d", c.Position, c.Type, c.Collection, c.DocKey, c.Before, c.After, c.Problem, c.CommitTime.UnixMicro())
	}
	return out
}

// names runs a query returning one text column.
func (d *db) names(t testing.TB, sql string, args ...any) []string {
	t.Helper()
	rows, err := d.pool.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

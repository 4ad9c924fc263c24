package docstore_test

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/watcher"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func tempPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "documents.db")
}

func openStore(t testing.TB, cfg docstore.Config) *docstore.Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = tempPath(t)
	}
	st, err := docstore.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

func source(t testing.TB, st *docstore.Store, tenant string) *docstore.Source {
	t.Helper()
	src, err := st.Source(tenant)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// rawDB opens the store's file the way another program would: its own
// driver connection, no docstore code.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	u := url.URL{Scheme: "file", Path: path, RawQuery: "_busy_timeout=5000&_pragma=cache_size(-65536)"}
	db, err := sql.Open("sqlite", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func exec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	_, err := db.Exec(query, args...)
	require.NoError(t, err, query)
}

// collect watches src from after until n changes arrived.
func collect(t testing.TB, src watcher.Source, after string, n int) []watcher.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []watcher.Change
	if n == 0 {
		return nil
	}
	err := src.Watch(ctx, after, func(c watcher.Change) error {
		got = append(got, c)
		if len(got) == n {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	return got
}

// fill commits n documents of size bytes' padding for tenant in one
// statement, generating the rows inside SQLite; the change-log trigger
// runs for each, as for any insert.
func fill(t testing.TB, db *sql.DB, tenant string, n, size int) {
	t.Helper()
	_, err := db.Exec(`
WITH RECURSIVE i(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM i WHERE v + 1 < ?)
INSERT INTO documents (tenant, collection, id, data)
SELECT ?, 'bulk', 'doc-' || v, json_object('i', v, 'pad', ?) FROM i`, n, tenant, strings.Repeat("x", size))
	require.NoError(t, err)
}

func countChanges(t testing.TB, db *sql.DB, tenant string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM changes WHERE tenant = ?`, tenant).Scan(&n))
	return n
}

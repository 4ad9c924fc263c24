package docstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/watcher"
	"github.com/triggerflow/triggerflow/watcher/watchertest"
)

const tenant = "acme"

func harness(writer func(t *testing.T, path string) watchertest.Writer) watchertest.Harness {
	return watchertest.Harness{
		Tenant: tenant,
		// Operators type positions without the padding: 42 for
		// 00000000000000000042.
		Respell: func(pos string) []string {
			if short := strings.TrimLeft(pos, "0"); short != pos && short != "" {
				return []string{short}
			}
			return nil
		},
		InvalidPositions: []string{
			"99999999999999999999",  // 20 digits, past int64
			"000000000000000000001", // 21 digits
			"00000000000000000001-00000000000000000001-00000001",
		},
		New: func(t *testing.T) watchertest.Env {
			path := tempPath(t)
			// Creates the schema before the writer's first statement.
			openStore(t, docstore.Config{Path: path})
			return watchertest.Env{
				Open: func(t *testing.T) watcher.Source {
					src, err := docstore.OpenSource(t.Context(), docstore.Config{Path: path}, tenant)
					require.NoError(t, err)
					return src
				},
				Writer: writer(t, path),
			}
		},
	}
}

// TestConformance writes through the Go API.
func TestConformance(t *testing.T) {
	t.Parallel()
	watchertest.RunSourceConformance(t, harness(func(t *testing.T, path string) watchertest.Writer {
		st := openStore(t, docstore.Config{Path: path})
		return &apiWriter{st: st, raw: rawDB(t, path)}
	}))
}

// TestConformanceSQLWriter writes with plain SQL from another connection,
// as the sqlite3 shell or an application would, and writes another
// tenant's documents in between that the source must not report.
func TestConformanceSQLWriter(t *testing.T) {
	t.Parallel()
	watchertest.RunSourceConformance(t, harness(func(t *testing.T, path string) watchertest.Writer {
		return &sqlWriter{db: rawDB(t, path)}
	}))
}

type apiWriter struct {
	st  *docstore.Store
	raw *sql.DB
}

func (w *apiWriter) Create(ctx context.Context, collection, key string, doc json.RawMessage) error {
	return w.st.Put(ctx, tenant, collection, key, doc)
}

func (w *apiWriter) Update(ctx context.Context, collection, key string, doc json.RawMessage) error {
	return w.st.Put(ctx, tenant, collection, key, doc)
}

func (w *apiWriter) Delete(ctx context.Context, collection, key string) error {
	return w.st.Delete(ctx, tenant, collection, key)
}

// WriteBad goes around Put, which refuses bad documents.
func (w *apiWriter) WriteBad(ctx context.Context, collection, key string) error {
	_, err := w.raw.ExecContext(ctx, `INSERT INTO documents (tenant, collection, id, data) VALUES (?, ?, ?, 'not json {')`, tenant, collection, key)
	return err
}

type sqlWriter struct{ db *sql.DB }

func (w *sqlWriter) noise(ctx context.Context, key string) error {
	_, err := w.db.ExecContext(ctx, `INSERT INTO documents (tenant, collection, id, data) VALUES ('other', 'orders', ?, '{"n": -1}')
ON CONFLICT DO UPDATE SET data = '{"n": -2}'`, key)
	return err
}

func (w *sqlWriter) Create(ctx context.Context, collection, key string, doc json.RawMessage) error {
	if _, err := w.db.ExecContext(ctx, `INSERT INTO documents (tenant, collection, id, data) VALUES (?, ?, ?, ?)`, tenant, collection, key, string(doc)); err != nil {
		return err
	}
	return w.noise(ctx, key)
}

func (w *sqlWriter) Update(ctx context.Context, collection, key string, doc json.RawMessage) error {
	res, err := w.db.ExecContext(ctx, `UPDATE documents SET data = ? WHERE tenant = ? AND collection = ? AND id = ?`, string(doc), tenant, collection, key)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return docstore.ErrNotFound
	}
	return w.noise(ctx, key)
}

func (w *sqlWriter) Delete(ctx context.Context, collection, key string) error {
	res, err := w.db.ExecContext(ctx, `DELETE FROM documents WHERE tenant = ? AND collection = ? AND id = ?`, tenant, collection, key)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return docstore.ErrNotFound
	}
	return w.noise(ctx, key)
}

func (w *sqlWriter) WriteBad(ctx context.Context, collection, key string) error {
	_, err := w.db.ExecContext(ctx, `INSERT INTO documents (tenant, collection, id, data) VALUES (?, ?, ?, '[1, 2]')`, tenant, collection, key)
	return err
}

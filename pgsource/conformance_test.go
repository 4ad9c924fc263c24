package pgsource

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/watcher"
	"github.com/triggerflow/triggerflow/watcher/watchertest"
)

func testConformance(t *testing.T, pg *testenv.PostgresServer) {
	t.Run("IdentityFull", func(t *testing.T) {
		t.Parallel()
		runConformance(t, pg, true)
	})
	t.Run("IdentityDefault", func(t *testing.T) {
		t.Parallel()
		runConformance(t, pg, false)
	})
}

func runConformance(t *testing.T, pg *testenv.PostgresServer, identityFull bool) {
	watchertest.RunSourceConformance(t, watchertest.Harness{
		Tenant:         "acme",
		NoBeforeImages: !identityFull,
		// A commit position (Head's) may be given as the LSN alone, as
		// PostgreSQL prints it or zero-padded.
		Respell: func(pos string) []string {
			p, err := parsePosition(pos)
			if err != nil || p.lsn != 0 || p.seq != 0 {
				return nil
			}
			return []string{fmt.Sprintf("%X/%X", uint64(p.commit)>>32, uint32(p.commit)), pos[:lsnDigits]}
		},
		InvalidPositions: []string{
			"00000000016b3790-00000000016B3748-00000002",
			"00000000016B3790_00000000016B3748_00000002",
			"00000000016B3790-00000000016B3748",
			"0/16b3790",
			"1/2/3",
			"00000000000000000001", // a docstore position
		},
		New: func(t *testing.T) watchertest.Env {
			d := newDB(t, pg)
			for _, c := range watchertest.Collections {
				table := pgx.Identifier{c}.Sanitize()
				// at is null in every document; WriteBad sets it to a
				// timestamp JSON cannot carry.
				d.exec(t, `CREATE TABLE `+table+` (id text PRIMARY KEY, n bigint NOT NULL, note text NOT NULL, at timestamptz)`)
				if identityFull {
					d.exec(t, `ALTER TABLE `+table+` REPLICA IDENTITY FULL`)
				}
			}
			return watchertest.Env{
				Open:   func(t *testing.T) watcher.Source { return d.open(t, nil) },
				Writer: &writer{pool: d.pool},
			}
		},
	})
}

// writer writes conformance documents as rows (id, n, note).
type writer struct{ pool *pgxpool.Pool }

type document struct {
	N    int64  `json:"n"`
	Note string `json:"note"`
}

func (w *writer) Create(ctx context.Context, collection, docKey string, doc json.RawMessage) error {
	var d document
	if err := json.Unmarshal(doc, &d); err != nil {
		return err
	}
	return w.exec(ctx, `INSERT INTO `+pgx.Identifier{collection}.Sanitize()+` (id, n, note) VALUES ($1, $2, $3)`, docKey, d.N, d.Note)
}

func (w *writer) Update(ctx context.Context, collection, docKey string, doc json.RawMessage) error {
	var d document
	if err := json.Unmarshal(doc, &d); err != nil {
		return err
	}
	return w.exec(ctx, `UPDATE `+pgx.Identifier{collection}.Sanitize()+` SET n = $2, note = $3 WHERE id = $1`, docKey, d.N, d.Note)
}

func (w *writer) Delete(ctx context.Context, collection, docKey string) error {
	return w.exec(ctx, `DELETE FROM `+pgx.Identifier{collection}.Sanitize()+` WHERE id = $1`, docKey)
}

// WriteBad commits a row with a timestamp beyond RFC 3339's years.
func (w *writer) WriteBad(ctx context.Context, collection, docKey string) error {
	return w.exec(ctx, `INSERT INTO `+pgx.Identifier{collection}.Sanitize()+` (id, n, note, at) VALUES ($1, 0, '', '10000-01-01 00:00:00+00')`, docKey)
}

func (w *writer) exec(ctx context.Context, sql string, args ...any) error {
	tag, err := w.pool.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%s: %d rows affected, want 1", sql, tag.RowsAffected())
	}
	return nil
}

var _ watchertest.BadWriter = (*writer)(nil)

func TestWriterIsComplete(t *testing.T) {
	t.Parallel()
	require.Implements(t, (*watchertest.BadWriter)(nil), &writer{})
}

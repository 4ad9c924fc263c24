package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/triggerflow/triggerflow/watcher"
)

// Checkpoints is a watcher.CheckpointStore in the triggerflow_checkpoints
// table of the watched database. The table is left out of the change
// stream even under a FOR ALL TABLES publication.
type Checkpoints struct {
	pool  *pgxpool.Pool
	table string // quoted, schema-qualified
}

var _ watcher.CheckpointStore = (*Checkpoints)(nil)

func checkKey(key string) error {
	if key == "" || !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("%w: %q must be non-empty UTF-8 without NUL", ErrInvalidCheckpointKey, shorten(key))
	}
	return nil
}

// Load returns the position saved under key and whether there is one.
func (c *Checkpoints) Load(ctx context.Context, key string) (string, bool, error) {
	if err := checkKey(key); err != nil {
		return "", false, err
	}
	var pos string
	err := c.pool.QueryRow(ctx, `SELECT position FROM `+c.table+` WHERE key = $1`, key).Scan(&pos)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("pgsource: load checkpoint %q: %w", key, err)
	}
	return pos, true, nil
}

// List returns every position saved under a key starting with prefix.
func (c *Checkpoints) List(ctx context.Context, prefix string) (map[string]string, error) {
	rows, err := c.pool.Query(ctx, `SELECT key, position FROM `+c.table+` WHERE starts_with(key, $1)`, prefix)
	if err != nil {
		return nil, fmt.Errorf("pgsource: list checkpoints %q: %w", prefix, err)
	}
	out := make(map[string]string)
	var k, v string
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		out[k] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgsource: list checkpoints %q: %w", prefix, err)
	}
	return out, nil
}

// SaveAll stores every key's position in one statement.
func (c *Checkpoints) SaveAll(ctx context.Context, positions map[string]string) error {
	keys := make([]string, 0, len(positions))
	vals := make([]string, 0, len(positions))
	for k, v := range positions {
		if err := checkKey(k); err != nil {
			return err
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := c.pool.Exec(ctx, `
INSERT INTO `+c.table+` (key, position, updated_at)
SELECT k, p, now() FROM unnest($1::text[], $2::text[]) AS t(k, p)
ON CONFLICT (key) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`, keys, vals)
	if err != nil {
		return fmt.Errorf("pgsource: save %d checkpoints: %w", len(keys), err)
	}
	return nil
}

// Save stores pos under key, replacing any earlier value.
func (c *Checkpoints) Save(ctx context.Context, key, pos string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := c.pool.Exec(ctx, `
INSERT INTO `+c.table+` (key, position, updated_at) VALUES ($1, $2, now())
ON CONFLICT (key) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`, key, pos)
	if err != nil {
		return fmt.Errorf("pgsource: save checkpoint %q: %w", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (c *Checkpoints) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if _, err := c.pool.Exec(ctx, `DELETE FROM `+c.table+` WHERE key = $1`, key); err != nil {
		return fmt.Errorf("pgsource: delete checkpoint %q: %w", key, err)
	}
	return nil
}

package docstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/triggerflow/triggerflow/watcher"
)

// ErrInvalidCheckpointKey is returned for an empty or non-UTF-8 key.
var ErrInvalidCheckpointKey = errors.New("invalid checkpoint key")

// Checkpoints is the store's watcher.CheckpointStore, kept in its sys
// table so a checkpoint commits in the same file as the documents.
type Checkpoints struct {
	store *Store
}

var _ watcher.CheckpointStore = (*Checkpoints)(nil)

// Checkpoints returns the store's checkpoint store.
func (s *Store) Checkpoints() *Checkpoints { return &Checkpoints{store: s} }

func checkCheckpointKey(key string) error {
	if key == "" || !utf8.ValidString(key) {
		return fmt.Errorf("%w: %q must be non-empty UTF-8", ErrInvalidCheckpointKey, shorten(key))
	}
	return nil
}

// Load returns the position saved under key and whether there is one.
func (c *Checkpoints) Load(ctx context.Context, key string) (string, bool, error) {
	if err := checkCheckpointKey(key); err != nil {
		return "", false, err
	}
	if c.store.isClosed() {
		return "", false, ErrClosed
	}
	var pos string
	err := c.store.db.QueryRowContext(ctx, `SELECT value FROM sys WHERE key = ?`, key).Scan(&pos)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("docstore: load checkpoint %q: %w", key, err)
	}
	return pos, true, nil
}

// List returns every position saved under a key starting with prefix.
func (c *Checkpoints) List(ctx context.Context, prefix string) (map[string]string, error) {
	if c.store.isClosed() {
		return nil, ErrClosed
	}
	// substr, not LIKE: a prefix may hold '%' or '_'.
	rows, err := c.store.db.QueryContext(ctx, `SELECT key, value FROM sys WHERE substr(key, 1, length(?)) = ?`, prefix, prefix)
	if err != nil {
		return nil, fmt.Errorf("docstore: list checkpoints %q: %w", prefix, err)
	}
	defer func() { _ = rows.Close() }()
	out := make(map[string]string)
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("docstore: list checkpoints %q: %w", prefix, err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("docstore: list checkpoints %q: %w", prefix, err)
	}
	return out, nil
}

// SaveAll stores every key's position in one transaction.
func (c *Checkpoints) SaveAll(ctx context.Context, positions map[string]string) error {
	for k := range positions {
		if err := checkCheckpointKey(k); err != nil {
			return err
		}
	}
	if c.store.isClosed() {
		return ErrClosed
	}
	c.store.writeMu.Lock()
	defer c.store.writeMu.Unlock()
	tx, err := c.store.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("docstore: save checkpoints: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, upsertCheckpoint)
	if err != nil {
		return fmt.Errorf("docstore: save checkpoints: %w", err)
	}
	defer func() { _ = stmt.Close() }()
	now := formatTime(time.Now())
	for k, pos := range positions {
		if _, err := stmt.ExecContext(ctx, k, pos, now); err != nil {
			return fmt.Errorf("docstore: save checkpoint %q: %w", k, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("docstore: save checkpoints: %w", err)
	}
	return nil
}

const upsertCheckpoint = `
INSERT INTO sys (key, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`

// Save stores pos under key, replacing any earlier value.
func (c *Checkpoints) Save(ctx context.Context, key, pos string) error {
	return c.exec(ctx, "save", key, upsertCheckpoint, key, pos, formatTime(time.Now()))
}

// Delete removes key; a missing key is not an error.
func (c *Checkpoints) Delete(ctx context.Context, key string) error {
	return c.exec(ctx, "delete", key, `DELETE FROM sys WHERE key = ?`, key)
}

// exec runs a write of key's checkpoint under the store's write lock; op
// names the write in its error.
func (c *Checkpoints) exec(ctx context.Context, op, key, query string, args ...any) error {
	if err := checkCheckpointKey(key); err != nil {
		return err
	}
	if c.store.isClosed() {
		return ErrClosed
	}
	c.store.writeMu.Lock()
	defer c.store.writeMu.Unlock()
	if _, err := c.store.db.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("docstore: %s checkpoint %q: %w", op, key, err)
	}
	return nil
}

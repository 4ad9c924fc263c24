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

// Save stores pos under key, replacing any earlier value.
func (c *Checkpoints) Save(ctx context.Context, key, pos string) error {
	return c.exec(ctx, "save", key, `
INSERT INTO sys (key, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		key, pos, formatTime(time.Now()))
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

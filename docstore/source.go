package docstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// positionWidth is the digits of a position: enough for any int64 seq.
const positionWidth = 20

// pruneBatch bounds one pruning transaction, so that a large backlog does
// not hold the write lock (and grow the WAL) in one go.
const pruneBatch = 1000

// FormatPosition returns the position token of change seq.
func FormatPosition(seq int64) string {
	var b [positionWidth]byte
	for i := positionWidth - 1; i >= 0; i-- {
		b[i] = byte('0' + seq%10)
		seq /= 10
	}
	return string(b[:])
}

// positionFormat is what ParsePosition's errors say a position looks like.
const positionFormat = "want a change sequence number in decimal digits, at most 20 of them (such as 42 or 00000000000000000042)"

// ParsePosition returns the seq of a position token; "" is 0, before every
// change. Tokens without the zero padding are accepted; compare positions
// as seqs, or as FormatPosition of them, never as typed.
func ParsePosition(pos string) (int64, error) {
	if pos == "" {
		return 0, nil
	}
	if len(pos) > positionWidth {
		return 0, fmt.Errorf("%w: %q is longer than a docstore position: %s", ErrInvalidPosition, shorten(pos), positionFormat)
	}
	for _, c := range []byte(pos) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not a docstore position: %s", ErrInvalidPosition, shorten(pos), positionFormat)
		}
	}
	seq, err := strconv.ParseInt(pos, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is past the largest docstore position: %s", ErrInvalidPosition, pos, positionFormat)
	}
	return seq, nil
}

// Source is one tenant's change stream; it implements watcher.Source.
type Source struct {
	store  *Store
	tenant string
	owned  bool // Close closes the store too

	closeOnce sync.Once
	closed    chan struct{}
}

var _ watcher.Source = (*Source)(nil)

// Source returns the change stream of tenant. Closing it leaves the store
// open.
func (s *Store) Source(tenant string) (*Source, error) {
	if err := CheckTenant(tenant); err != nil {
		return nil, err
	}
	return &Source{store: s, tenant: tenant, closed: make(chan struct{})}, nil
}

// OpenSource opens the store at cfg.Path and returns tenant's change stream;
// closing the source closes the store. This is what a watcher process that
// only reads the store wants.
func OpenSource(ctx context.Context, cfg Config, tenant string) (*Source, error) {
	if err := CheckTenant(tenant); err != nil {
		return nil, err
	}
	st, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	src, _ := st.Source(tenant)
	src.owned = true
	return src, nil
}

// Tenant returns the tenant whose changes the source reports.
func (src *Source) Tenant() string { return src.tenant }

// Store returns the store the source reads.
func (src *Source) Store() *Store { return src.store }

// Close stops the source's watches (they return ErrClosed) and, for a
// source from OpenSource, closes the store.
func (src *Source) Close() error {
	var err error
	src.closeOnce.Do(func() {
		close(src.closed)
		if src.owned {
			err = src.store.Close()
		}
	})
	return err
}

func (src *Source) checkOpen() error {
	select {
	case <-src.closed:
		return ErrClosed
	case <-src.store.closed:
		return ErrClosed
	default:
		return nil
	}
}

// ParsePosition returns the canonical, zero-padded form of pos ("" stays
// ""), or an error wrapping watcher.ErrInvalidPosition that says what a
// docstore position looks like. It implements watcher.Source.
func (src *Source) ParsePosition(pos string) (string, error) {
	seq, err := ParsePosition(pos)
	if err != nil || pos == "" {
		return "", err
	}
	return FormatPosition(seq), nil
}

// Checkpoints returns the checkpoint store in the same database.
func (src *Source) Checkpoints() watcher.CheckpointStore { return src.store.Checkpoints() }

// changeRow is one row of the changes table as read.
type changeRow struct {
	seq         int64
	collection  string
	docID       string
	op          string
	before      []byte
	after       []byte
	committedAt int64
}

const selectChanges = `
SELECT seq, collection, doc_id, op, before, after, committed_at
FROM changes WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?`

// Watch emits the tenant's changes after position after in commit order.
// Once caught up it polls every Config.PollInterval, and reads at once
// after a write through the same Store. It reads at most
// Config.BatchSize rows at a time, releasing its read snapshot before
// calling emit, so a slow emit neither grows memory nor holds back SQLite's
// WAL checkpoints.
//
// Watch fails with ErrInvalidPosition for a token that is not a docstore
// position or lies beyond the newest change (a token from another
// database), and with ErrPruned when changes after it were already pruned.
func (src *Source) Watch(ctx context.Context, after string, emit func(watcher.Change) error) error {
	seq, err := ParsePosition(after)
	if err != nil {
		return err
	}
	if err := src.checkOpen(); err != nil {
		return err
	}
	if err := src.checkStart(ctx, seq); err != nil {
		return err
	}
	db := src.store.db
	stmt, err := db.PrepareContext(ctx, selectChanges)
	if err != nil {
		return src.queryErr(ctx, fmt.Errorf("docstore: prepare watch: %w", err))
	}
	defer func() { _ = stmt.Close() }()

	limit := src.store.cfg.BatchSize
	batch := make([]changeRow, 0, limit)
	ticker := time.NewTicker(src.store.cfg.PollInterval)
	defer ticker.Stop()
	for {
		wake := src.store.wakeup()
		batch, err = src.readBatch(ctx, stmt, seq, limit, batch[:0])
		if err != nil {
			return src.queryErr(ctx, err)
		}
		for i := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := emit(src.change(&batch[i])); err != nil {
				return err
			}
			seq = batch[i].seq
		}
		// Drop references to emitted documents while we wait.
		clear(batch)
		if len(batch) == limit {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := src.checkOpen(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-src.closed:
			return ErrClosed
		case <-src.store.closed:
			return ErrClosed
		case <-ticker.C:
		case <-wake:
		}
	}
}

// queryErr prefers the reason the watch was stopped over the database error
// it caused, so a cancelled Watch returns ctx.Err() as promised.
func (src *Source) queryErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if closedErr := src.checkOpen(); closedErr != nil {
		return closedErr
	}
	return err
}

func (src *Source) readBatch(ctx context.Context, stmt *sql.Stmt, after int64, limit int, batch []changeRow) ([]changeRow, error) {
	rows, err := stmt.QueryContext(ctx, src.tenant, after, limit)
	if err != nil {
		return batch, fmt.Errorf("docstore: read changes of %s after %d: %w", src.tenant, after, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var r changeRow
		if err := rows.Scan(&r.seq, &r.collection, &r.docID, &r.op, &r.before, &r.after, &r.committedAt); err != nil {
			return batch, fmt.Errorf("docstore: scan change of %s after %d: %w", src.tenant, after, err)
		}
		batch = append(batch, r)
	}
	if err := rows.Err(); err != nil {
		return batch, fmt.Errorf("docstore: read changes of %s after %d: %w", src.tenant, after, err)
	}
	return batch, nil
}

// checkStart refuses positions that would silently skip changes: ones past
// the log's head, and ones behind pruned changes of this tenant.
func (src *Source) checkStart(ctx context.Context, seq int64) error {
	if seq == 0 {
		return nil
	}
	var head, pruned int64
	err := src.store.db.QueryRowContext(ctx, `
SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0),
       COALESCE((SELECT pruned_seq FROM change_confirmations WHERE tenant = ?), 0)`, src.tenant).Scan(&head, &pruned)
	if err != nil {
		return src.queryErr(ctx, fmt.Errorf("docstore: check start position: %w", err))
	}
	if seq > head {
		return fmt.Errorf("%w: %s is past the newest change %s; is it from another database?",
			ErrInvalidPosition, FormatPosition(seq), FormatPosition(head))
	}
	if seq < pruned {
		return fmt.Errorf("%w: tenant %s has changes pruned up to %s, after the requested %s",
			ErrPruned, src.tenant, FormatPosition(pruned), FormatPosition(seq))
	}
	return nil
}

// change converts a row, reporting undecodable ones through Problem. The
// raw bytes stay in Before and After even then, for the dead letter.
func (src *Source) change(r *changeRow) watcher.Change {
	c := watcher.Change{
		Tenant:     src.tenant,
		Collection: r.collection,
		DocKey:     r.docID,
		Type:       trigger.EventType(r.op),
		Before:     r.before,
		After:      r.after,
		Position:   FormatPosition(r.seq),
		CommitTime: time.UnixMilli(r.committedAt).UTC(),
	}
	c.Problem = rowProblem(r)
	return c
}

func rowProblem(r *changeRow) string {
	if reason := trigger.CollectionProblem(r.collection, MaxCollectionLength); reason != "" {
		return fmt.Sprintf("collection %q %s", shorten(r.collection), reason)
	}
	if err := CheckDocID(r.docID); err != nil {
		return err.Error()
	}
	var needBefore, needAfter bool
	switch trigger.EventType(r.op) {
	case trigger.EventCreate:
		needAfter = true
	case trigger.EventUpdate:
		needBefore, needAfter = true, true
	case trigger.EventDelete:
		needBefore = true
	default:
		return fmt.Sprintf("unknown change type %q", shorten(r.op))
	}
	if needBefore {
		if reason := documentProblem(r.before); reason != "" {
			return "document before the change " + reason
		}
	}
	if needAfter {
		if reason := documentProblem(r.after); reason != "" {
			return "document after the change " + reason
		}
	}
	return ""
}

// Head returns the position of the tenant's newest change, including one
// already pruned, or "" when the tenant has none.
func (src *Source) Head(ctx context.Context) (string, error) {
	if err := src.checkOpen(); err != nil {
		return "", err
	}
	var seq int64
	err := src.store.db.QueryRowContext(ctx, `
SELECT COALESCE((SELECT max(seq) FROM changes WHERE tenant = ?),
                (SELECT pruned_seq FROM change_confirmations WHERE tenant = ?), 0)`,
		src.tenant, src.tenant).Scan(&seq)
	if err != nil {
		return "", src.queryErr(ctx, fmt.Errorf("docstore: head of %s: %w", src.tenant, err))
	}
	if seq == 0 {
		return "", nil
	}
	return FormatPosition(seq), nil
}

// Confirm records that the tenant's changes up to pos are checkpointed and
// prunes those older than Config.Retention. Confirming "" does nothing; a
// position past the newest change is refused, since pruning by it would
// delete changes nobody has seen yet.
func (src *Source) Confirm(ctx context.Context, pos string) error {
	seq, err := ParsePosition(pos)
	if err != nil {
		return err
	}
	if seq == 0 {
		return nil
	}
	if err := src.checkOpen(); err != nil {
		return err
	}
	st := src.store
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	var head int64
	if err := st.db.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)`).Scan(&head); err != nil {
		return fmt.Errorf("docstore: confirm %s for %s: %w", pos, src.tenant, err)
	}
	if seq > head {
		return fmt.Errorf("%w: cannot confirm %s, past the newest change %s", ErrInvalidPosition, FormatPosition(seq), FormatPosition(head))
	}
	_, err = st.db.ExecContext(ctx, `
INSERT INTO change_confirmations (tenant, confirmed_seq, updated_at) VALUES (?, ?, ?)
ON CONFLICT (tenant) DO UPDATE SET confirmed_seq = excluded.confirmed_seq, updated_at = excluded.updated_at`,
		src.tenant, seq, formatTime(time.Now()))
	if err != nil {
		return fmt.Errorf("docstore: confirm %s for %s: %w", pos, src.tenant, err)
	}
	n, err := src.prune(ctx, seq)
	if n > 0 {
		st.log.Debug("docstore pruned change log", "tenant", src.tenant, "through", FormatPosition(seq), "rows", n)
	}
	return err
}

// prune deletes the tenant's changes up to seq that are past retention.
// Retention is applied as a prefix: pruning stops at the first change that
// is too young, so a clock step backwards can delay pruning but never
// delete a change ahead of a younger one. The caller holds writeMu.
func (src *Source) prune(ctx context.Context, through int64) (int64, error) {
	st := src.store
	db := st.db
	if st.cfg.Retention > 0 {
		cutoff := time.Now().Add(-st.cfg.Retention).UnixMilli()
		// Walks the tenant's rows in seq order and stops at the first young
		// one; the rows it passes are the ones about to be deleted.
		var young int64
		err := db.QueryRowContext(ctx, `
SELECT seq FROM changes WHERE tenant = ? AND seq <= ? AND committed_at > ? ORDER BY seq LIMIT 1`,
			src.tenant, through, cutoff).Scan(&young)
		switch {
		case err == nil:
			through = young - 1
		case !errors.Is(err, sql.ErrNoRows):
			return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
		}
	}
	var total int64
	for {
		n, err := src.pruneBatch(ctx, through)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

func (src *Source) pruneBatch(ctx context.Context, through int64) (n int64, err error) {
	tx, err := src.store.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// The batch ends at its pruneBatch-th row, or at the last row to prune.
	var hi int64
	err = tx.QueryRowContext(ctx, `
SELECT seq FROM changes WHERE tenant = ? AND seq <= ? ORDER BY seq LIMIT 1 OFFSET ?`, src.tenant, through, pruneBatch-1).Scan(&hi)
	if errors.Is(err, sql.ErrNoRows) {
		var last sql.NullInt64
		err = tx.QueryRowContext(ctx, `SELECT max(seq) FROM changes WHERE tenant = ? AND seq <= ?`, src.tenant, through).Scan(&last)
		hi = last.Int64
	}
	if err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	if hi == 0 {
		return 0, tx.Commit()
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE tenant = ? AND seq <= ?`, src.tenant, hi)
	if err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	if n, err = res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	// pruned_seq is the newest deleted change, so Watch can tell a resume
	// point that would skip a deleted change from one that would not.
	if _, err = tx.ExecContext(ctx, `
UPDATE change_confirmations SET pruned_seq = max(pruned_seq, ?) WHERE tenant = ?`, hi, src.tenant); err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	if err = tx.Commit(); err != nil {
		return 0, fmt.Errorf("docstore: prune %s: %w", src.tenant, err)
	}
	return n, nil
}

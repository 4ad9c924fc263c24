package docstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"
)

// pruneBatch bounds the rows one pruning transaction deletes, so that a
// large backlog does not hold the write lock (and grow the WAL) in one go.
const pruneBatch = 1000

// The statements of a confirmation, prepared once per transaction: a
// watcher of a thousand tenants confirms all of them every second.
const (
	// dueRows returns the newest seq and the number of the tenant's
	// changes that may go now: those up to ?2, at most ?3 of them, and of
	// those only the ones before the first younger than the cutoff ?4.
	// Retention is applied as a prefix so that a clock step backwards can
	// delay pruning but never delete a change ahead of a younger one; and
	// head bounds the walk, so a large backlog is read a batch at a time.
	dueRows = `
WITH head AS (
	SELECT seq, committed_at FROM changes WHERE tenant = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)
SELECT COALESCE(max(seq), 0), count(*) FROM head
WHERE seq < COALESCE((SELECT min(seq) FROM head WHERE committed_at > ?4), ?2 + 1)`
	// dueRowsNoRetention is dueRows without a cutoff, which leaves the
	// table alone: changes_tenant_seq covers it.
	dueRowsNoRetention = `
SELECT COALESCE(max(seq), 0), count(*) FROM (
	SELECT seq FROM changes WHERE tenant = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)`
	deleteRows = `DELETE FROM changes WHERE tenant = ? AND seq <= ?`
	// pruned_seq is the newest deleted change, so that a tenant's Watch can
	// tell a resume point that would skip a deleted change from one that
	// would not. The WHERE spares the write when a confirmation repeats
	// itself, as it does for every tenant whose watcher's slowest
	// checkpoint stood still.
	upsertConfirmation = `
INSERT INTO change_confirmations (tenant, confirmed_seq, pruned_seq, updated_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (tenant) DO UPDATE SET
	confirmed_seq = excluded.confirmed_seq,
	pruned_seq = max(pruned_seq, excluded.pruned_seq),
	updated_at = excluded.updated_at
WHERE confirmed_seq <> excluded.confirmed_seq OR pruned_seq < excluded.pruned_seq`
)

// confirmation is one Confirm or ConfirmTenants call in progress.
type confirmation struct {
	store     *Store
	seq       int64
	retention bool
	cutoff    int64 // Unix ms; changes committed after it are too young
	now       string
	checked   bool // the head check passed
}

// confirm records that tenants' changes up to seq are checkpointed and
// prunes the due ones. It needs one transaction unless more than
// pruneBatch rows are due; each transaction takes the write lock anew, so
// that writers get in between.
func (s *Store) confirm(ctx context.Context, seq int64, tenants []string) error {
	c := confirmation{store: s, seq: seq, cutoff: math.MaxInt64, now: formatTime(time.Now())}
	if s.cfg.Retention > 0 {
		c.retention = true
		c.cutoff = time.Now().Add(-s.cfg.Retention).UnixMilli()
	}
	var total int64
	var err error
	for rest := tenants; len(rest) > 0 && err == nil; {
		var done int
		var deleted int64
		done, deleted, err = c.tx(ctx, rest)
		total += deleted
		rest = rest[done:]
	}
	if total > 0 {
		if len(tenants) == 1 {
			s.log.Debug("docstore pruned change log", "tenant", tenants[0], "through", FormatPosition(seq), "rows", total)
		} else {
			s.log.Debug("docstore pruned change log", "tenants", len(tenants), "through", FormatPosition(seq), "rows", total)
		}
	}
	return err
}

// tx confirms tenants in order until it has deleted pruneBatch rows, and
// returns how many tenants it finished and the rows it deleted. A tenant
// that used up the batch is not finished: the next transaction starts
// with it, and progresses, since it deletes at least that tenant's rows.
func (c *confirmation) tx(ctx context.Context, tenants []string) (done int, deleted int64, err error) {
	s := c.store
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("docstore: confirm %s for %s: begin: %w", FormatPosition(c.seq), listTenants(tenants), err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			done, deleted = 0, 0
		}
	}()
	if !c.checked {
		var head int64
		if err := tx.QueryRowContext(ctx, selectHead).Scan(&head); err != nil {
			return 0, 0, fmt.Errorf("docstore: confirm %s for %s: read head: %w", FormatPosition(c.seq), listTenants(tenants), err)
		}
		if c.seq > head {
			return 0, 0, fmt.Errorf("%w: cannot confirm %s, past the newest change %s", ErrInvalidPosition, FormatPosition(c.seq), FormatPosition(head))
		}
	}
	query := dueRowsNoRetention
	if c.retention {
		query = dueRows
	}
	var due, del, upsert *sql.Stmt
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{{&due, query}, {&del, deleteRows}, {&upsert, upsertConfirmation}} {
		if *p.stmt, err = tx.PrepareContext(ctx, p.query); err != nil {
			return 0, 0, fmt.Errorf("docstore: confirm %s: prepare: %w", FormatPosition(c.seq), err)
		}
		defer func() { _ = (*p.stmt).Close() }()
	}

	budget := int64(pruneBatch)
	for ; done < len(tenants); done++ {
		t := tenants[done]
		var hi, n int64
		if c.retention {
			err = due.QueryRowContext(ctx, t, c.seq, budget, c.cutoff).Scan(&hi, &n)
		} else {
			err = due.QueryRowContext(ctx, t, c.seq, budget).Scan(&hi, &n)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("docstore: prune %s through %s: %w", t, FormatPosition(c.seq), err)
		}
		if n > 0 {
			if _, err = del.ExecContext(ctx, t, hi); err != nil {
				return 0, 0, fmt.Errorf("docstore: prune %s through %s: %w", t, FormatPosition(hi), err)
			}
			deleted += n
			budget -= n
		}
		if _, err = upsert.ExecContext(ctx, t, c.seq, hi, c.now); err != nil {
			return 0, 0, fmt.Errorf("docstore: confirm %s for %s: %w", FormatPosition(c.seq), t, err)
		}
		if budget == 0 {
			break
		}
	}
	if err = tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("docstore: confirm %s for %s: commit: %w", FormatPosition(c.seq), listTenants(tenants), err)
	}
	c.checked = true
	return done, deleted, nil
}

// listTenants names tenants for an error, a few of a long list.
func listTenants(tenants []string) string {
	const show = 5
	if len(tenants) <= show {
		return strings.Join(tenants, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(tenants[:show], ", "), len(tenants)-show)
}

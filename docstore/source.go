package docstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// positionWidth is the digits of a position: enough for any int64 seq.
const positionWidth = 20

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

// AllTenants, given to Store.Source or OpenSource in place of a tenant,
// asks for one reader over every tenant's changes, so that a watcher
// serving many tenants reads the log once rather than once per tenant. It
// is no valid tenant name, so it cannot collide with one.
//
// Such a source differs from a tenant's in three ways. Its changes carry
// the tenant of their row. It releases history only through
// ConfirmTenants, for the tenants named; Confirm releases nothing. And its
// Watch refuses a position past the head but never returns ErrPruned (see
// checkStart).
const AllTenants = "*"

// Source is one tenant's change stream, or every tenant's (AllTenants); it
// implements watcher.Source and watcher.TenantConfirmer.
type Source struct {
	store  *Store
	tenant string // AllTenants for the all-tenant reader
	all    bool
	owned  bool // Close closes the store too

	closeOnce sync.Once
	closed    chan struct{}
	// confirmWarned limits the all-tenant Confirm's warning to one.
	confirmWarned sync.Once
}

var (
	_ watcher.Source          = (*Source)(nil)
	_ watcher.TenantConfirmer = (*Source)(nil)
)

// Source returns the change stream of tenant, or of every tenant for
// AllTenants. Closing it leaves the store open.
func (s *Store) Source(tenant string) (*Source, error) {
	if tenant != AllTenants {
		if err := CheckTenant(tenant); err != nil {
			return nil, err
		}
	}
	return &Source{store: s, tenant: tenant, all: tenant == AllTenants, closed: make(chan struct{})}, nil
}

// OpenSource opens the store at cfg.Path and returns tenant's change stream
// (every tenant's for AllTenants); closing the source closes the store.
// This is what a watcher process that only reads the store wants.
func OpenSource(ctx context.Context, cfg Config, tenant string) (*Source, error) {
	if tenant != AllTenants {
		if err := CheckTenant(tenant); err != nil {
			return nil, err
		}
	}
	st, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	src, _ := st.Source(tenant)
	src.owned = true
	return src, nil
}

// Tenant returns the tenant whose changes the source reports, or
// AllTenants.
func (src *Source) Tenant() string { return src.tenant }

// scope names what the source reads, for errors.
func (src *Source) scope() string {
	if src.all {
		return "all tenants"
	}
	return src.tenant
}

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
	tenant      string
	collection  string
	docID       string
	op          string
	before      []byte
	after       []byte
	committedAt int64
}

// selectTenantChanges walks the changes_tenant_seq index.
const selectTenantChanges = `
SELECT seq, tenant, collection, doc_id, op, before, after, committed_at
FROM changes WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?`

// selectAllChanges walks the table itself: seq is its INTEGER PRIMARY KEY,
// so a range of seq needs no index and comes out in seq order.
const selectAllChanges = `
SELECT seq, tenant, collection, doc_id, op, before, after, committed_at
FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`

// Watch emits the source's changes after position after in commit order:
// the tenant's, or every tenant's for an AllTenants source, each with the
// Tenant of its row. Once caught up it polls every Config.PollInterval, and
// reads at once after a write through the same Store. It reads at most
// Config.BatchSize rows at a time, releasing its read snapshot before
// calling emit, so a slow emit neither grows memory nor holds back SQLite's
// WAL checkpoints.
//
// Watch fails with ErrInvalidPosition for a token that is not a docstore
// position or lies beyond the newest change (a token from another
// database). A tenant's source also fails with ErrPruned when changes of
// the tenant after the position were already pruned; an AllTenants source
// does not (see checkStart).
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
	query := selectTenantChanges
	if src.all {
		query = selectAllChanges
	}
	stmt, err := src.store.db.PrepareContext(ctx, query)
	if err != nil {
		return src.queryErr(ctx, fmt.Errorf("docstore: prepare watch of %s: %w", src.scope(), err))
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
	var rows *sql.Rows
	var err error
	if src.all {
		rows, err = stmt.QueryContext(ctx, after, limit)
	} else {
		rows, err = stmt.QueryContext(ctx, src.tenant, after, limit)
	}
	if err != nil {
		return batch, fmt.Errorf("docstore: read changes of %s after %d: %w", src.scope(), after, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var r changeRow
		if err := rows.Scan(&r.seq, &r.tenant, &r.collection, &r.docID, &r.op, &r.before, &r.after, &r.committedAt); err != nil {
			return batch, fmt.Errorf("docstore: scan change of %s after %d: %w", src.scope(), after, err)
		}
		batch = append(batch, r)
	}
	if err := rows.Err(); err != nil {
		return batch, fmt.Errorf("docstore: read changes of %s after %d: %w", src.scope(), after, err)
	}
	return batch, nil
}

// checkStart refuses positions that would silently skip changes: ones past
// the log's head, and, for a tenant's source, ones behind pruned changes of
// the tenant.
//
// An AllTenants source checks the head only. Tenants are pruned
// independently, each only up to a position its own watcher confirmed,
// which is never past that watcher's checkpoints of the tenant; and a
// watcher starts at the oldest checkpoint of its scope and skips each
// tenant's changes up to that tenant's own checkpoint. So a tenant's
// change pruned after the start position is one its watcher had already
// checkpointed, and whether anything is lost depends on checkpoints the
// source cannot see. No rule on the position alone is right: a watcher
// whose oldest checkpoint belongs to a tenant with nothing pruned yet
// (just added, say), on a file where another watcher pruned its own
// tenants further, starts behind their pruned changes legitimately, and
// ErrPruned would make it retry forever. What this gives up is catching a
// checkpoint moved back behind its tenant's pruning; a tenant's source
// still catches that.
func (src *Source) checkStart(ctx context.Context, seq int64) error {
	if seq == 0 {
		return nil
	}
	var head, pruned int64
	var err error
	if src.all {
		err = src.store.db.QueryRowContext(ctx, selectHead).Scan(&head)
	} else {
		err = src.store.db.QueryRowContext(ctx, `
SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0),
       COALESCE((SELECT pruned_seq FROM change_confirmations WHERE tenant = ?), 0)`, src.tenant).Scan(&head, &pruned)
	}
	if err != nil {
		return src.queryErr(ctx, fmt.Errorf("docstore: check start position %s for %s: %w", FormatPosition(seq), src.scope(), err))
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

// selectHead reads the newest seq ever committed, pruned or not:
// AUTOINCREMENT keeps it in sqlite_sequence.
const selectHead = `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)`

// change converts a row, reporting undecodable ones through Problem. The
// raw bytes stay in Before and After even then, for the dead letter.
func (src *Source) change(r *changeRow) watcher.Change {
	c := watcher.Change{
		Tenant:     r.tenant,
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
	// Only an AllTenants source can meet a bad tenant (any writer can
	// store one); no watcher serves it, but a tool reading the stream
	// should not mistake it for a real one.
	if err := CheckTenant(r.tenant); err != nil {
		return err.Error()
	}
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

// Head returns the position of the tenant's newest change (any tenant's,
// for an AllTenants source), including one already pruned, or "" when
// there is none.
func (src *Source) Head(ctx context.Context) (string, error) {
	if err := src.checkOpen(); err != nil {
		return "", err
	}
	var seq int64
	var err error
	if src.all {
		err = src.store.db.QueryRowContext(ctx, selectHead).Scan(&seq)
	} else {
		err = src.store.db.QueryRowContext(ctx, `
SELECT COALESCE((SELECT max(seq) FROM changes WHERE tenant = ?),
                (SELECT pruned_seq FROM change_confirmations WHERE tenant = ?), 0)`,
			src.tenant, src.tenant).Scan(&seq)
	}
	if err != nil {
		return "", src.queryErr(ctx, fmt.Errorf("docstore: head of %s: %w", src.scope(), err))
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
//
// On an AllTenants source Confirm checks that pos is a position and
// releases nothing, logging a warning once: pos says how far the caller got but not for which
// tenants, and pruning every tenant would delete history that watchers of
// other tenants on the same file have not read. It does not fail, because
// Confirm only permits a source to release history, and a generic caller
// (a tool, the conformance suite) should not break on it. The watcher
// calls ConfirmTenants instead.
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
	if src.all {
		src.confirmWarned.Do(func() {
			src.store.log.Warn("docstore Confirm on an all-tenant source releases nothing; use ConfirmTenants to prune the change log", "position", FormatPosition(seq))
		})
		return nil
	}
	return src.store.confirm(ctx, seq, []string{src.tenant})
}

// ConfirmTenants records that the changes of each of tenants up to pos are
// checkpointed and prunes those older than Config.Retention, as Confirm
// does for one tenant, in one transaction unless more than a prune batch
// of rows is due. It implements watcher.TenantConfirmer: tenants not named
// keep their history, whoever watches them.
//
// A tenant's source confirms only its own tenant: naming another fails
// with ErrInvalidTenant and confirms nothing, since the caller's
// checkpoint of a tenant the source never delivered says nothing about
// that tenant's changes. Naming its own tenant is exactly Confirm, so a
// watcher behaves the same over either kind of source.
func (src *Source) ConfirmTenants(ctx context.Context, pos string, tenants []string) error {
	seq, err := ParsePosition(pos)
	if err != nil {
		return err
	}
	names, err := src.confirmable(tenants)
	if err != nil {
		return err
	}
	if seq == 0 || len(names) == 0 {
		return nil
	}
	if err := src.checkOpen(); err != nil {
		return err
	}
	return src.store.confirm(ctx, seq, names)
}

// confirmable validates the tenants ConfirmTenants names and returns them
// sorted without duplicates, which also keeps a batch's index reads local.
func (src *Source) confirmable(tenants []string) ([]string, error) {
	names := slices.Clone(tenants)
	slices.Sort(names)
	names = slices.Compact(names)
	var foreign []string
	for _, t := range names {
		if err := CheckTenant(t); err != nil {
			return nil, fmt.Errorf("docstore: confirm: %w", err)
		}
		if !src.all && t != src.tenant {
			foreign = append(foreign, t)
		}
	}
	if len(foreign) > 0 {
		return nil, fmt.Errorf("%w: the source of tenant %s cannot confirm %s: it does not read their changes; use an all-tenant source (docstore.AllTenants)",
			ErrInvalidTenant, src.tenant, listTenants(foreign))
	}
	return names, nil
}

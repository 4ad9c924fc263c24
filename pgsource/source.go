package pgsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/triggerflow/triggerflow/watcher"
)

// Errors. Failures from PostgreSQL are wrapped too, so errors.As finds the
// *pgconn.PgError.
var (
	ErrInvalidConfig = errors.New("pgsource: invalid config")
	// ErrInvalidPosition is returned for a token that is not a pgsource
	// position or lies beyond the server's WAL. It wraps
	// watcher.ErrInvalidPosition.
	ErrInvalidPosition = fmt.Errorf("pgsource: %w", watcher.ErrInvalidPosition)
	// ErrPublicationMissing means the publication is gone; Watch cannot
	// recover from it.
	ErrPublicationMissing = errors.New("pgsource: publication does not exist")
	// ErrSlotMissing means the replication slot is gone, and with it the
	// WAL it retained: changes since the last confirmation are lost.
	ErrSlotMissing = errors.New("pgsource: replication slot does not exist")
	// ErrUnsupportedServer is returned for a server older than
	// PostgreSQL 14 or without wal_level=logical.
	ErrUnsupportedServer = errors.New("pgsource: unsupported server")
	// ErrWatching is returned by a second concurrent Watch: a slot streams
	// to one reader at a time.
	ErrWatching = errors.New("pgsource: source is already watching")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("pgsource: source closed")
	// ErrInvalidCheckpointKey is returned for an empty key, or one that is
	// not UTF-8 or holds NUL (PostgreSQL text cannot).
	ErrInvalidCheckpointKey = errors.New("pgsource: invalid checkpoint key")
)

// checkpointTable is created in the first schema of the DSN's search_path.
const checkpointTable = "triggerflow_checkpoints"

// Source streams row changes from a PostgreSQL database by logical
// replication, for one tenant or, in multi-tenant mode, for all of them
// through one slot. It implements watcher.Source.
type Source struct {
	cfg        Config
	log        *slog.Logger
	pool       *pgxpool.Pool
	replConfig *pgconn.Config
	metrics    *metrics
	ckpt       *Checkpoints
	ckptOID    uint32
	// converters is used only by the decoder of the one running Watch.
	converters *converters
	prog       *progress

	mu        sync.Mutex
	watching  bool
	closed    bool
	kick      func()        // asks the streaming reader for a status update
	stopWatch func()        // cancels the running Watch
	watchDone chan struct{} // closed when it returned
	warned    map[string]bool
}

var _ watcher.Source = (*Source)(nil)

// New connects, checks the server, and creates what is missing: the
// checkpoint table, the publication, then the slot (in that order: a slot
// only decodes WAL written after it, and pgoutput looks the publication up
// as of each decoded transaction).
func New(ctx context.Context, cfg Config) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("pgsource: connect: %w", err)
	}
	repl, err := replicationConfig(cfg.DSN)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: DSN: %w", ErrInvalidConfig, err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		pool.Close()
		return nil, err
	}
	log := cfg.Logger.With("component", "pgsource", "slot", cfg.Slot)
	if cfg.Tenant != "" {
		log = log.With("tenant", cfg.Tenant)
	}
	s := &Source{
		cfg:        cfg,
		log:        log,
		pool:       pool,
		replConfig: repl,
		metrics:    m,
		prog:       &progress{},
		warned:     make(map[string]bool),
	}
	s.converters = newConverters(s.lookupType)
	if err := s.setup(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// replicationConfig is the DSN in logical replication mode, with the
// session settings the text values are decoded under: pgoutput prints each
// value with the walsender's settings, so they are pinned rather than
// inherited from the server's configuration.
func replicationConfig(dsn string) (*pgconn.Config, error) {
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	c.RuntimeParams["replication"] = "database"
	c.RuntimeParams["DateStyle"] = "ISO, YMD"
	c.RuntimeParams["TimeZone"] = "UTC"
	c.RuntimeParams["IntervalStyle"] = "iso_8601"
	c.RuntimeParams["extra_float_digits"] = "3"
	c.RuntimeParams["bytea_output"] = "hex"
	return c, nil
}

func (s *Source) setup(ctx context.Context) error {
	var version int
	var walLevel string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('wal_level')`).Scan(&version, &walLevel); err != nil {
		return fmt.Errorf("pgsource: connect: %w", err)
	}
	if version < 140000 {
		return fmt.Errorf("%w: PostgreSQL %d, need 14 or newer", ErrUnsupportedServer, version/10000)
	}
	if walLevel != "logical" {
		return fmt.Errorf("%w: wal_level is %q, logical replication needs wal_level = logical", ErrUnsupportedServer, walLevel)
	}

	if _, err := s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+checkpointTable+` (
	key        text PRIMARY KEY,
	position   text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
)`); err != nil && !isCode(err, "42P07", "23505") { // concurrent creation by another tenant's source
		return fmt.Errorf("pgsource: create checkpoint table: %w", err)
	}
	var schema string
	if err := s.pool.QueryRow(ctx, `
SELECT c.oid, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`, checkpointTable).Scan(&s.ckptOID, &schema); err != nil {
		return fmt.Errorf("pgsource: find checkpoint table: %w", err)
	}
	s.ckpt = &Checkpoints{pool: s.pool, table: pgx.Identifier{schema, checkpointTable}.Sanitize()}

	if err := s.ensurePublication(ctx); err != nil {
		return err
	}
	return s.ensureSlot(ctx)
}

func (s *Source) ensurePublication(ctx context.Context) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, s.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("pgsource: look up publication: %w", err)
	}
	if exists {
		return nil
	}
	sql := "CREATE PUBLICATION " + pgx.Identifier{s.cfg.Publication}.Sanitize()
	if len(s.cfg.Tables) == 0 {
		sql += " FOR ALL TABLES"
	} else {
		names := make([]string, len(s.cfg.Tables))
		for i, t := range s.cfg.Tables {
			parts, _ := tableIdentifier(t) // validated
			names[i] = pgx.Identifier(parts).Sanitize()
		}
		sql += " FOR TABLE " + strings.Join(names, ", ")
	}
	if _, err := s.pool.Exec(ctx, sql); err != nil {
		if isCode(err, "42710") { // created concurrently
			return nil
		}
		return fmt.Errorf("pgsource: %s: %w", sql, err)
	}
	s.log.Info("created publication", "publication", s.cfg.Publication, "tables", s.cfg.Tables)
	return nil
}

func (s *Source) ensureSlot(ctx context.Context) error {
	var plugin, db string
	var current string
	err := s.pool.QueryRow(ctx, `
SELECT coalesce(plugin, ''), coalesce(database, ''), current_database() FROM pg_replication_slots WHERE slot_name = $1`,
		s.cfg.Slot).Scan(&plugin, &db, &current)
	switch {
	case err == nil:
		if plugin != "pgoutput" || db != current {
			return fmt.Errorf("%w: slot %q exists with plugin %q on database %q; need a pgoutput slot on %q",
				ErrInvalidConfig, s.cfg.Slot, plugin, db, current)
		}
		return nil
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgsource: look up slot: %w", err)
	}
	var lsn string
	err = s.pool.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, s.cfg.Slot).Scan(&lsn)
	if isCode(err, "42710") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgsource: create slot %q: %w", s.cfg.Slot, err)
	}
	// Worth a warning: a new slot for a tenant that has a checkpoint means
	// the changes between that checkpoint and lsn were never retained.
	s.log.Warn("created replication slot; changes are retained from here on", "consistentPoint", lsn)
	return nil
}

func isCode(err error, codes ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	for _, c := range codes {
		if pgErr.Code == c {
			return true
		}
	}
	return false
}

// Slot returns the replication slot's name.
func (s *Source) Slot() string { return s.cfg.Slot }

// Checkpoints returns the checkpoint store in the watched database.
func (s *Source) Checkpoints() watcher.CheckpointStore { return s.ckpt }

// Head returns the token of the server's current WAL insert position: every
// change committed so far lies at or before it and every later one after
// it. It is not the position of a particular change, and never "".
//
// pg_current_wal_insert_lsn rather than pg_current_wal_lsn: with
// asynchronous commit a transaction is visible before its commit record is
// written out, and it must still sort before the head.
func (s *Source) Head(ctx context.Context) (string, error) {
	lsn, err := s.insertLSN(ctx)
	if err != nil {
		return "", err
	}
	return commitPosition(lsn).String(), nil
}

func (s *Source) insertLSN(ctx context.Context) (pglogrepl.LSN, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	var text string
	if err := s.pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&text); err != nil {
		return 0, fmt.Errorf("pgsource: read WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(text)
}

// Confirm lets the slot release the WAL of every change up to pos (see
// progress for exactly how far). While Watch runs, the next standby status
// update carries it, sent right away; otherwise the slot is advanced with
// pg_replication_slot_advance. A position beyond the server's WAL is
// refused: releasing WAL by it would drop changes nobody has seen.
func (s *Source) Confirm(ctx context.Context, pos string) error {
	p, err := parsePosition(pos)
	if err != nil || pos == "" {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	prog, kick, watching := s.prog, s.kick, s.watching
	s.mu.Unlock()

	if _, received := prog.status(); p.commit > received {
		head, err := s.insertLSN(ctx)
		if err != nil {
			return err
		}
		if p.commit > head {
			return fmt.Errorf("%w: cannot confirm %s, past the server's WAL at %s", ErrInvalidPosition, pos, head)
		}
	}
	advanced := prog.confirm(p)
	if watching {
		if advanced && kick != nil {
			kick()
		}
		return nil
	}
	return s.advanceSlot(ctx, prog.flushLSN())
}

// advanceSlot moves an idle slot's confirmed_flush_lsn forward to lsn.
func (s *Source) advanceSlot(ctx context.Context, lsn pglogrepl.LSN) error {
	if lsn == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots
WHERE slot_name = $1 AND NOT active AND confirmed_flush_lsn < $2::pg_lsn`, s.cfg.Slot, lsn.String())
	if isCode(err, "55006") {
		// A Watch (ours or another process's) took the slot meanwhile;
		// ours reports the flush itself.
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgsource: advance slot %s to %s: %w", s.cfg.Slot, lsn, err)
	}
	return nil
}

// Close stops a running Watch (it returns ErrClosed) and releases the
// connections.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stop, done := s.stopWatch, s.watchDone
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	s.pool.Close()
	return nil
}

func (s *Source) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// warnOnce logs a per-table condition once per Source.
func (s *Source) warnOnce(kind string, rel uint32, msg string, args ...any) {
	key := fmt.Sprintf("%s/%d", kind, rel)
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}

// primaryKey returns a table's primary key columns in key order, as the
// catalog has them now.
func (s *Source) primaryKey(ctx context.Context, rel uint32) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::oid AND i.indisprimary
ORDER BY k.ord`, rel)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *Source) lookupType(ctx context.Context, oid uint32) (typeInfo, error) {
	var t typeInfo
	var typtype, category string
	err := s.pool.QueryRow(ctx, `
SELECT typtype::text, typcategory::text, typbasetype, typelem FROM pg_type WHERE oid = $1::oid`, oid).
		Scan(&typtype, &category, &t.base, &t.elem)
	if errors.Is(err, pgx.ErrNoRows) {
		// Dropped since: the value's text form is all that is left.
		return typeInfo{typtype: 'b'}, nil
	}
	if err != nil {
		return t, err
	}
	t.typtype, t.category = typtype[0], category[0]
	return t, nil
}

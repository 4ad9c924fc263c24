package docstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// Errors returned by the store; each is wrapped with the offending value.
var (
	ErrInvalidConfig     = errors.New("invalid docstore config")
	ErrInvalidTenant     = errors.New("invalid tenant")
	ErrInvalidCollection = errors.New("invalid collection")
	ErrInvalidDocID      = errors.New("invalid document id")
	ErrInvalidDocument   = errors.New("invalid document")
	ErrNotFound          = errors.New("document not found")
	// ErrInvalidPosition is the watcher's, so that callers holding only a
	// watcher.Source can recognise it.
	ErrInvalidPosition = watcher.ErrInvalidPosition
	// ErrPruned is returned by Watch when changes after the requested
	// position have already been pruned, so resuming there would skip them.
	ErrPruned = errors.New("changes after this position were pruned")
	// ErrSchemaVersion is returned by Open for a file written by a newer
	// build.
	ErrSchemaVersion = errors.New("unsupported docstore schema version")
	// ErrClosed is returned by calls on a closed Store or Source.
	ErrClosed = errors.New("docstore closed")
)

// Name limits. Tenants and collections match the trigger package's defaults.
// Ids may be longer than Firestore's 1,500 bytes: keys from other systems
// (composite keys, URLs) run long, and every later stage copes with long
// keys (hashed subjects, hashed workflow ids).
const (
	MaxTenantLength     = 128
	MaxCollectionLength = 128
	MaxDocIDLength      = 4096
)

// Config configures a Store.
type Config struct {
	// Path is the database file; a missing file and its directory are
	// created unless MustExist is set. Required.
	Path string
	// MustExist makes Open fail with an error wrapping fs.ErrNotExist
	// instead of creating a missing file: a tool that only reads must not
	// answer from a new, empty store it made at the wrong path.
	MustExist bool
	// Retention keeps confirmed change-log rows for this long after their
	// commit before Confirm prunes them, to allow replays. Defaults to 0:
	// prune right behind the confirmation.
	Retention time.Duration
	// PollInterval is how often a caught-up Watch looks for new changes,
	// and so bounds its latency. Defaults to 10ms.
	PollInterval time.Duration
	// BatchSize is how many changes Watch reads per query; it bounds
	// Watch's memory. Defaults to 500.
	BatchSize int
	// BusyTimeout is how long a statement waits for another connection's
	// (or process's) write lock before failing. Defaults to 5s.
	BusyTimeout time.Duration
	// MaxOpenConns caps the store's connections. Defaults to 8.
	MaxOpenConns int

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// Logger receives migration and pruning notes; nil discards. The store
	// has no metrics, so no Registerer.
	Logger *slog.Logger
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.PollInterval = cmp.Or(c.PollInterval, 10*time.Millisecond)
	c.BatchSize = cmp.Or(c.BatchSize, 500)
	c.BusyTimeout = cmp.Or(c.BusyTimeout, 5*time.Second)
	c.MaxOpenConns = cmp.Or(c.MaxOpenConns, 8)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field of c.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Path == "" {
		bad("path is required")
	}
	if c.Retention < 0 {
		bad("retention %s is negative", c.Retention)
	}
	if c.PollInterval <= 0 {
		bad("pollInterval %s must be positive", c.PollInterval)
	}
	if c.BatchSize <= 0 {
		bad("batchSize %d must be positive", c.BatchSize)
	}
	if c.BusyTimeout <= 0 {
		bad("busyTimeout %s must be positive", c.BusyTimeout)
	}
	if c.MaxOpenConns <= 0 {
		bad("maxOpenConns %d must be positive", c.MaxOpenConns)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Store is an open document database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	cfg  Config
	log  *slog.Logger
	path string

	// writeMu serialises this process's writes. SQLite allows one writer
	// at a time anyway; queueing here keeps our own writers out of
	// SQLite's sleeping busy handler, which is there for other processes.
	writeMu sync.Mutex

	// wake is closed and replaced after each write through this Store,
	// so that its watches read at once instead of at their next poll.
	// Other writers are seen by polling.
	wakeMu sync.Mutex
	wake   chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// written wakes the store's watches.
func (s *Store) written() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

// wakeup returns the channel the next write closes. Take it before
// reading, so that a write landing between the read and the wait is not
// missed.
func (s *Store) wakeup() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

// Document is a stored document.
type Document struct {
	Tenant     string
	Collection string
	ID         string
	Data       json.RawMessage
	// Version counts the document's writes through Put, starting at 1.
	// Writers that bypass Put may leave it unchanged.
	Version   int64
	UpdatedAt time.Time
}

// Open opens (creating if needed) the database at cfg.Path and brings its
// schema up to date.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", ErrInvalidConfig, cfg.Path, err)
	}
	if cfg.MustExist {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("docstore: no store at %s: %w", path, fs.ErrNotExist)
		} else if err != nil {
			return nil, fmt.Errorf("docstore: %w", err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("docstore: create directory for %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path, cfg))
	if err != nil {
		return nil, fmt.Errorf("docstore: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxOpenConns)
	from, err := migrate(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	if from != schemaVersion {
		cfg.Logger.Info("docstore schema migrated", "path", path, "from", from, "to", schemaVersion)
	}
	return &Store{db: db, cfg: cfg, log: cfg.Logger, path: path, wake: make(chan struct{}), closed: make(chan struct{})}, nil
}

// dsn builds a modernc.org/sqlite URI. The path goes through url.URL so
// that '?', '#' and '%' in file names survive.
func dsn(path string, cfg Config) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	// BEGIN IMMEDIATE takes the write lock up front: a deferred
	// transaction that reads and then writes can fail with SQLITE_BUSY
	// without waiting when another writer got there first.
	q.Set("_txlock", "immediate")
	if cfg.MustExist {
		// SQLite's own check, for a file removed since Open looked.
		q.Set("mode", "rw")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. Watches on its sources return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Put creates the document or replaces its data, bumping its version. doc
// must be a JSON object; it is stored compacted.
func (s *Store) Put(ctx context.Context, tenant, collection, id string, doc json.RawMessage) error {
	if err := checkKey(tenant, collection, id); err != nil {
		return err
	}
	if err := checkDocument(doc); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidDocument, err)
	}
	if s.isClosed() {
		return ErrClosed
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// The upsert runs the UPDATE trigger on the conflict path and the
	// INSERT trigger otherwise, so each Put logs exactly one change.
	_, err := s.db.ExecContext(ctx, `
INSERT INTO documents (tenant, collection, id, data, version, updated_at)
VALUES (?, ?, ?, ?, 1, ?)
ON CONFLICT (tenant, collection, id) DO UPDATE
SET data = excluded.data, version = documents.version + 1, updated_at = excluded.updated_at`,
		tenant, collection, id, buf.String(), formatTime(time.Now()))
	if err != nil {
		return fmt.Errorf("docstore: put %s/%s/%s: %w", tenant, collection, id, err)
	}
	s.written()
	return nil
}

// Delete removes the document, or returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, tenant, collection, id string) error {
	if err := checkKey(tenant, collection, id); err != nil {
		return err
	}
	if s.isClosed() {
		return ErrClosed
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res, err := s.db.ExecContext(ctx, `DELETE FROM documents WHERE tenant = ? AND collection = ? AND id = ?`, tenant, collection, id)
	if err != nil {
		return fmt.Errorf("docstore: delete %s/%s/%s: %w", tenant, collection, id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("docstore: delete %s/%s/%s: %w", tenant, collection, id, err)
	} else if n == 0 {
		return fmt.Errorf("%w: %s/%s/%s", ErrNotFound, tenant, collection, id)
	}
	s.written()
	return nil
}

// Get returns the document, or ErrNotFound.
func (s *Store) Get(ctx context.Context, tenant, collection, id string) (Document, error) {
	if err := checkKey(tenant, collection, id); err != nil {
		return Document{}, err
	}
	if s.isClosed() {
		return Document{}, ErrClosed
	}
	d := Document{Tenant: tenant, Collection: collection, ID: id}
	var data []byte
	var updated string
	err := s.db.QueryRowContext(ctx, `SELECT data, version, updated_at FROM documents WHERE tenant = ? AND collection = ? AND id = ?`,
		tenant, collection, id).Scan(&data, &d.Version, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Document{}, fmt.Errorf("%w: %s/%s/%s", ErrNotFound, tenant, collection, id)
	case err != nil:
		return Document{}, fmt.Errorf("docstore: get %s/%s/%s: %w", tenant, collection, id, err)
	}
	d.Data = data
	// Other writers may store any text here; a bad timestamp is not worth
	// failing a read over.
	d.UpdatedAt, _ = parseTime(updated)
	return d, nil
}

// timeLayout matches strftime('%Y-%m-%dT%H:%M:%fZ'), the column default.
const timeLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

func checkKey(tenant, collection, id string) error {
	if err := CheckTenant(tenant); err != nil {
		return err
	}
	if err := CheckCollection(collection); err != nil {
		return err
	}
	return CheckDocID(id)
}

// CheckTenant validates a tenant name: letters, digits, '-' and '_', at
// most MaxTenantLength bytes.
func CheckTenant(tenant string) error {
	if reason := trigger.TenantProblem(tenant, MaxTenantLength); reason != "" {
		return fmt.Errorf("%w: %q %s", ErrInvalidTenant, shorten(tenant), reason)
	}
	return nil
}

// CheckCollection validates a collection path: '/'-separated segments of
// letters, digits, '-' and '_', at most MaxCollectionLength bytes. Unlike a
// trigger's collection it is a path, not a glob.
func CheckCollection(collection string) error {
	if reason := trigger.CollectionProblem(collection, MaxCollectionLength); reason != "" {
		return fmt.Errorf("%w: %q %s", ErrInvalidCollection, shorten(collection), reason)
	}
	return nil
}

// CheckDocID validates a document id: non-empty UTF-8 without NUL, at most
// MaxDocIDLength bytes. Any other character is fine; subjects encode ids.
func CheckDocID(id string) error {
	var reason string
	switch {
	case id == "":
		reason = "is required"
	case len(id) > MaxDocIDLength:
		reason = fmt.Sprintf("is %d bytes long, the limit is %d", len(id), MaxDocIDLength)
	case !utf8.ValidString(id):
		reason = "is not valid UTF-8"
	case strings.IndexByte(id, 0) >= 0:
		reason = "contains NUL"
	default:
		return nil
	}
	return fmt.Errorf("%w: %q %s", ErrInvalidDocID, shorten(id), reason)
}

// checkDocument requires a JSON object: conditions address documents by
// field, so anything else could never match a trigger.
func checkDocument(doc []byte) error {
	if reason := documentProblem(doc); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidDocument, reason)
	}
	return nil
}

// documentProblem says why doc is not a JSON object, or returns "".
func documentProblem(doc []byte) string {
	if doc == nil {
		return "is missing"
	}
	if !json.Valid(doc) {
		return "is not valid JSON"
	}
	if t := bytes.TrimLeft(doc, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return "is JSON but not an object"
	}
	return ""
}

func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

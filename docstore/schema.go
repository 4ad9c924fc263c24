package docstore

import (
	"context"
	"database/sql"
	"fmt"
)

// schemaVersion is the PRAGMA user_version this code writes and reads.
const schemaVersion = 1

// nowMillis is the trigger-side clock. julianday keeps the triggers usable
// by sqlite3 shells older than 3.42, which lack unixepoch('subsec'); its
// resolution (tens of microseconds at today's dates) is finer than the
// millisecond we keep.
const nowMillis = `CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)`

// migrations[i] takes a database from user_version i to i+1.
var migrations = []string{
	// 0 -> 1
	`
CREATE TABLE IF NOT EXISTS documents (
	tenant     TEXT    NOT NULL,
	collection TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	data       TEXT    NOT NULL,
	version    INTEGER NOT NULL DEFAULT 1,
	updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
	PRIMARY KEY (tenant, collection, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS changes (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant       TEXT    NOT NULL,
	collection   TEXT    NOT NULL,
	doc_id       TEXT    NOT NULL,
	op           TEXT    NOT NULL CHECK (op IN ('create', 'update', 'delete')),
	before       TEXT,
	after        TEXT,
	committed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_tenant_seq ON changes (tenant, seq);

CREATE TRIGGER IF NOT EXISTS documents_log_insert AFTER INSERT ON documents
BEGIN
	INSERT INTO changes (tenant, collection, doc_id, op, before, after, committed_at)
	VALUES (NEW.tenant, NEW.collection, NEW.id, 'create', NULL, NEW.data, ` + nowMillis + `);
END;

CREATE TRIGGER IF NOT EXISTS documents_log_update AFTER UPDATE ON documents
WHEN OLD.tenant IS NEW.tenant AND OLD.collection IS NEW.collection AND OLD.id IS NEW.id
BEGIN
	INSERT INTO changes (tenant, collection, doc_id, op, before, after, committed_at)
	VALUES (NEW.tenant, NEW.collection, NEW.id, 'update', OLD.data, NEW.data, ` + nowMillis + `);
END;

-- An UPDATE that changes the key moves the document: to a watcher the old
-- key is gone and the new one appears.
CREATE TRIGGER IF NOT EXISTS documents_log_rekey AFTER UPDATE ON documents
WHEN NOT (OLD.tenant IS NEW.tenant AND OLD.collection IS NEW.collection AND OLD.id IS NEW.id)
BEGIN
	INSERT INTO changes (tenant, collection, doc_id, op, before, after, committed_at)
	VALUES (OLD.tenant, OLD.collection, OLD.id, 'delete', OLD.data, NULL, ` + nowMillis + `);
	INSERT INTO changes (tenant, collection, doc_id, op, before, after, committed_at)
	VALUES (NEW.tenant, NEW.collection, NEW.id, 'create', NULL, NEW.data, ` + nowMillis + `);
END;

CREATE TRIGGER IF NOT EXISTS documents_log_delete AFTER DELETE ON documents
BEGIN
	INSERT INTO changes (tenant, collection, doc_id, op, before, after, committed_at)
	VALUES (OLD.tenant, OLD.collection, OLD.id, 'delete', OLD.data, NULL, ` + nowMillis + `);
END;

CREATE TABLE IF NOT EXISTS sys (
	key        TEXT NOT NULL PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS change_confirmations (
	tenant        TEXT    NOT NULL PRIMARY KEY,
	confirmed_seq INTEGER NOT NULL,
	pruned_seq    INTEGER NOT NULL DEFAULT 0,
	updated_at    TEXT    NOT NULL
) WITHOUT ROWID;
`,
}

// migrate brings the schema to schemaVersion. It runs in one IMMEDIATE
// transaction, so two processes opening a new file at once do not both
// create it, and a failure leaves the file as it was.
func migrate(ctx context.Context, db *sql.DB) (from int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("docstore: begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&from); err != nil {
		return 0, fmt.Errorf("docstore: read schema version: %w", err)
	}
	if from > schemaVersion {
		return from, fmt.Errorf("%w: the file has version %d, this build knows up to %d", ErrSchemaVersion, from, schemaVersion)
	}
	if from < 0 {
		return from, fmt.Errorf("%w: the file has version %d", ErrSchemaVersion, from)
	}
	for v := from; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return from, fmt.Errorf("docstore: migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	if from != schemaVersion {
		// PRAGMA takes no bound parameters; the value is our constant.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
			return from, fmt.Errorf("docstore: set schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return from, fmt.Errorf("docstore: commit migration: %w", err)
	}
	return from, nil
}

// Package docstore is the embedded document store: JSON documents in a
// SQLite file, with a change log that the watcher reads as its Source.
//
// The change log is filled by SQLite triggers on the documents table, not
// by this package's Go code, so every writer — Put, the sqlite3 shell, an
// application with its own driver — records its change in the same
// transaction as the write. A change can therefore be neither lost (the
// write committed, the event did not) nor invented (the event committed,
// the write rolled back).
//
// # Schema
//
// Opening a file creates or migrates it (PRAGMA user_version holds the
// schema version):
//
//	documents(tenant, collection, id, data, version, updated_at)
//	    PRIMARY KEY (tenant, collection, id); data is JSON text.
//	changes(seq, tenant, collection, doc_id, op, before, after, committed_at)
//	    seq INTEGER PRIMARY KEY AUTOINCREMENT; op is create, update or
//	    delete; committed_at is Unix milliseconds.
//	sys(key, value, updated_at)
//	    checkpoints, under keys like "sys/checkpoints/trigger_evaluator/acme".
//	change_confirmations(tenant, confirmed_seq, pruned_seq, updated_at)
//
// Writing from the shell (give it a busy timeout: the watcher and other
// writers hold the lock for short moments):
//
//	sqlite3 -cmd ".timeout 5000" data/documents.db \
//	  "INSERT INTO documents(tenant, collection, id, data) VALUES ('acme', 'orders', 'o-1', '{\"total\": 12}')"
//
// The triggers only use SQL that SQLite has supported for a decade, so old
// sqlite3 shells can write too. They do not validate data: a row that is not
// a JSON object still produces a change, which Watch reports with
// watcher.Change.Problem set so that the watcher dead-letters it rather than
// stopping or skipping it silently. The Go API (Put) rejects such documents
// up front.
//
// SQLite runs no delete trigger for the row that INSERT OR REPLACE
// replaces (unless PRAGMA recursive_triggers is on in the writer's
// connection), so replacing an existing document that way is recorded as a
// create without a before image. Use UPDATE, or INSERT … ON CONFLICT DO
// UPDATE, to record an update.
//
// # Positions and pruning
//
// A position is the change's seq as 20 zero-padded decimal digits, so
// positions compare byte-wise in commit order; seq is global, not per
// tenant. ParsePosition also accepts the seq without the padding and
// returns the padded form. Confirm prunes the confirming tenant's change
// rows up to the confirmed position (once older than Config.Retention), so
// the log of a watched tenant stays bounded. Rows of a tenant that no
// source has ever confirmed are kept: the store cannot know that no
// watcher will come for them.
//
// # Many tenants
//
// Source(AllTenants) reads every tenant's changes in one stream, for a
// watcher serving many tenants. History stays per tenant: its
// ConfirmTenants prunes only the tenants named, which the watcher makes
// the ones it serves, so several watchers can share one file. Its Confirm
// prunes nothing, since it names no tenant.
package docstore

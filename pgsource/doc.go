// Package pgsource is the PostgreSQL change source of the watcher: it
// streams row changes by logical replication with the built-in pgoutput
// plugin (PostgreSQL 14 or newer, wal_level = logical, no extension) and
// implements watcher.Source.
//
// # Setup
//
// New creates what is missing, in this order: the checkpoint table
// triggerflow_checkpoints(key, position, updated_at), the publication
// (Config.Publication, FOR ALL TABLES or FOR TABLE Config.Tables), and a
// persistent logical slot (Config.Slot). The order matters: pgoutput looks
// the publication up as of each decoded transaction, so a slot older than
// its publication fails to decode. An existing publication is used as is.
// The checkpoint table is never reported, even under FOR ALL TABLES.
//
// # Positions
//
// A position token is three uppercase, zero-padded hex fields:
//
//	CCCCCCCCCCCCCCCC-LLLLLLLLLLLLLLLL-SSSSSSSS
//	00000000016B3790-00000000016B3748-00000000
//
// C is the LSN of the transaction's commit record, L the LSN of the
// change's WAL record, S its index among the changes decoded from that
// record (a COPY writes many rows per record; a primary key update yields
// a delete and a create). Byte-wise order is commit order. A single LSN
// cannot serve: transactions arrive in commit order, and one that started
// first and committed last has smaller change LSNs than those before it.
// Watch and ParsePosition also accept a commit LSN alone, as 16 hex digits
// or in PostgreSQL's X/Y notation (0/16B3790), meaning "the transactions
// committing at or after it"; ParsePosition returns it in the three-field
// form (L = S = 0), the only one the watcher compares. Head returns the server's current WAL insert
// position in this form (C = that LSN, L = S = 0): an upper bound of every
// committed change, not the position of a particular one.
//
// The server restarts a stream at a transaction boundary; Watch skips the
// changes at or before after, so resuming from a position inside a
// transaction yields exactly the rest of it.
//
// # Confirmation and WAL retention
//
// The slot's confirmed_flush_lsn, which decides what WAL the server keeps
// and where a stream without a position starts, moves only as far as
// Confirm allows: to the commit LSN of the confirmed change's transaction
// (or past that transaction once it is complete and its changes are all
// confirmed). When every change handed out has been confirmed, it also
// moves over transactions that held nothing for this source (other
// tenants' rows, unpublished tables, checkpoint writes), so an idle tenant
// does not pin WAL and a server shutdown does not wait for the source.
// Nothing unconfirmed is ever released: a crash replays it. Watch with ""
// starts at confirmed_flush_lsn, so a transaction confirmed only in part is
// delivered again in full; the watcher passes its checkpoint instead.
//
// # Changes
//
// Collection is the table name, "schema/table" outside the public schema
// (the bare table name under TenantFrom "schema", see Tenants).
// DocKey is the primary key (else the replica identity index) as text: a
// string column's content, a number's digits, several columns as a JSON
// array text such as ["eu",7]. A new primary key value in an update is
// reported as a delete of the old key and a create of the new one, both at
// the update's WAL record. After (and Before) is the row as a JSON object
// in column order:
//
//	smallint, integer, bigint, oid   JSON number
//	numeric, real, double precision  JSON number with PostgreSQL's digits
//	                                 (no float64 round trip); NaN and
//	                                 ±Infinity as strings
//	boolean                          true / false
//	json, jsonb                      embedded as PostgreSQL prints them
//	timestamptz, timestamp           RFC 3339 string in UTC (a timestamp
//	                                 without time zone is taken as UTC)
//	date                             "2006-01-02"
//	bytea                            base64 string (standard encoding)
//	arrays (any dimension)           nested JSON arrays of the element form
//	domains                          as their base type
//	NULL                             null
//	everything else                  PostgreSQL's text form as a string
//	                                 (text, uuid, interval in ISO 8601,
//	                                 enums, time, inet, ranges, composites)
//
// Values are decoded from pgoutput's text format under pinned session
// settings (UTC, ISO dates, ISO 8601 intervals, exact floats, hex bytea).
// ±infinity timestamps and dates are the strings "infinity"/"-infinity";
// BC and five-digit years, which RFC 3339 cannot carry, make the change a
// Problem.
//
// Before is set only for tables with REPLICA IDENTITY FULL; otherwise
// PostgreSQL sends no old row, Before is nil, and the source logs a
// warning once per table. PostgreSQL does not resend unchanged TOAST
// values (large text, jsonb) in updates: they are taken from the old row
// under REPLICA IDENTITY FULL, else left out of After (warned once per
// table).
//
// Problems (Change.Problem set, documents nil) are reported, not dropped:
// rows of tables without a primary key or replica identity index, values
// that cannot be converted, and TRUNCATE, one per truncated table with an
// empty DocKey, since TRUNCATE removes rows without per-row changes.
//
// # Tenants
//
// Config.TenantFrom says where a row's tenant is:
//
//   - "column" (the default when Config.TenantColumn is set): the text of
//     that column. Tables without the column are not reported (logged once
//     per table). Deletes need the column in the old row (REPLICA IDENTITY
//     FULL, or the column in the primary key); otherwise they are not
//     reported, which is logged once per table and counted in
//     triggerflow_pgsource_unattributed_deletes_total.
//   - "schema" (a schema per tenant): the table's schema name, exactly as
//     the catalog spells it; Collection is then the bare table name, so
//     acme.orders and globex.orders are both "orders". Tables in the
//     public schema belong to no tenant and are not reported (logged once
//     per table): public is where unqualified tables land, which makes it
//     the usual home of shared tables, not a tenant's. A tenant named
//     "public" cannot be served this way.
//   - unset, without TenantColumn: every row is Config.Tenant's.
//
// With Config.Tenant set (single-tenant mode) only that tenant's rows are
// reported. With it empty (multi-tenant mode) every tenant's rows are,
// through one publication and one slot (default "triggerflow"), each with
// Change.Tenant taken from the row; the watcher keeps the tenants it
// serves and skips the rest. Rows whose tenant column is NULL or empty
// are not reported and are counted in the unattributed metric.
//
// An update that moves a row between tenants is a delete for the old
// tenant and a create for the new one, at the update's WAL record, in
// that order; a move to or from NULL, or from or to a tenant outside
// Config.Tenant, yields only the half that concerns a reported tenant. A
// move is only seen when the old row carries the tenant column (same
// condition as deletes); otherwise the update is reported for the new
// tenant.
//
// TRUNCATE is a problem change for the table's tenant: Config.Tenant, or
// the schema's. In multi-tenant column mode the removed rows' tenants are
// not in the WAL, so it is logged as a warning and counted as
// unattributed instead.
//
// Metrics carry the tenant as label "tenant": Config.Tenant, or in
// multi-tenant mode the row's tenant as Config.TenantLabels names it
// (nil names every tenant), and "" where no tenant applies (reconnects,
// unattributed changes).
//
// # Limitations
//
//   - One slot per Source: each slot decodes the whole database's WAL, so
//     single-tenant sources, one per tenant, multiply the decoding work.
//     Serve many tenants of one database with one multi-tenant source.
//   - A position older than the slot's confirmed_flush_lsn cannot be
//     replayed: the server no longer has that WAL. Dropping the slot loses
//     the changes since the last confirmation; New then creates a fresh
//     slot (logged as a warning).
//   - Large transactions are streamed row by row as the server sends them,
//     but the server itself only sends a transaction once it committed
//     (protocol version 1 without streaming).
//   - The document key and the tenant column's presence in deletes are
//     read from the current catalog when a table is first seen, not as of
//     the decoded WAL.
package pgsource

package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// item is one message the reader hands the decoder.
type item struct {
	keepalive bool
	// lsn is the XLogData's WALStart (the change's WAL record for row
	// messages) or, for a keepalive, the server's WAL end.
	lsn  pglogrepl.LSN
	data []byte
}

type column struct {
	name     string
	jsonKey  []byte // `"name":`, encoded once
	identity bool   // part of the replica identity (sent in a delete's key tuple)
	conv     converter
}

// relation is what the decoder knows of a table from its Relation message.
type relation struct {
	id         uint32
	collection string
	cols       []column
	// key lists the docKey columns: the primary key, else the replica
	// identity index. keyProblem explains why there is none.
	key          []int
	keyProblem   string
	identityFull bool
	// attrib says how the table's rows are attributed to tenants.
	attrib attribution
	// tenantCol is the index of Config.TenantColumn under attribColumn.
	tenantCol int
	// fixed is the tenant of every row under attribAll, and the source's
	// tenant under attribColumn in single-tenant mode.
	fixed *tenantRef
	// tenants caches, under attribColumn in multi-tenant mode, the tenants
	// met in this table by column value: looking a tuple's bytes up here
	// costs no allocation, and the tenant's name and counters are shared
	// by all its rows.
	tenants map[string]*tenantRef
	// skip marks the checkpoint table, whose writes are ours, not documents.
	skip bool
}

type attribution uint8

const (
	attribNone   attribution = iota // no row is reported
	attribAll                       // every row belongs to fixed
	attribColumn                    // the tenant column decides
)

// maxCachedTenants bounds relation.tenants: a column with more distinct
// values than that is likely not a tenant column, and the cache must not
// grow with the table.
const maxCachedTenants = 10_000

// tenantRef is a tenant as the decoder reports it.
type tenantRef struct {
	name  string
	label string // metric label value
	// events counts the tenant's changes in one table.
	events prometheus.Counter
}

// rowScope is what a row version's tenant is known to be.
type rowScope uint8

const (
	scopeOut     rowScope = iota // another tenant, or a table reported for none
	scopeIn                      // a tenant the source reports
	scopeNull                    // the tenant column is NULL or empty (multi-tenant mode)
	scopeUnknown                 // not in the tuple sent
)

// emitError carries emit's error so Watch can return it as is.
type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }

// decoder turns pgoutput messages into Changes. One decoder serves a whole
// Watch; reset starts each (re)connected stream afresh.
type decoder struct {
	src  *Source
	conv *converters
	prog *progress
	emit func(watcher.Change) error

	// Changes at or before resume were delivered already: the server
	// restarts at transaction boundaries, so a resumed or reconnected
	// stream repeats the head of a partly delivered transaction.
	resume     position
	hasResume  bool
	afterNoted bool // reset has recorded after as needed, if it is

	rels map[uint32]*relation

	inTxn      bool
	commit     pglogrepl.LSN
	commitTime time.Time
	lastLSN    pglogrepl.LSN
	seq        uint32
	started    bool // a change of this transaction got a position
	txnNeed    position
	txnHasNeed bool
	commits    uint64 // transactions read completely
}

func newDecoder(src *Source, prog *progress, after position, hasAfter bool, emit func(watcher.Change) error) *decoder {
	return &decoder{
		src:       src,
		conv:      src.converters,
		prog:      prog,
		emit:      emit,
		resume:    after,
		hasResume: hasAfter,
	}
}

// reset prepares for a new stream from a slot confirmed at base:
// relations are announced again, and an interrupted transaction is sent
// again from its start.
func (d *decoder) reset(base pglogrepl.LSN) {
	d.rels = make(map[uint32]*relation)
	d.inTxn = false
	if !d.afterNoted {
		d.afterNoted = true
		if d.hasResume && d.resume.commit >= base {
			// The slot has not released the transactions up to after, and
			// nobody confirmed them to us: the flush must not pass them
			// before the watcher confirms after.
			d.prog.needed(d.resume)
		}
	}
}

// startLSN is where a (re)connected stream starts: the commit of the
// transaction holding the last delivered change, which the server then
// sends again in full.
func (d *decoder) startLSN() pglogrepl.LSN {
	if !d.hasResume {
		return 0
	}
	return d.resume.commit
}

// handle processes one item. It reports whether the safe flush advanced.
func (d *decoder) handle(ctx context.Context, it item) (bool, error) {
	if it.keepalive {
		if d.inTxn {
			return false, nil
		}
		return d.prog.caughtUp(it.lsn), nil
	}
	msg, err := parseMessage(it.data)
	if err != nil {
		return false, err
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		d.inTxn = true
		d.commit, d.commitTime = m.FinalLSN, m.CommitTime
		d.lastLSN, d.seq, d.started = 0, 0, false
		d.txnHasNeed = false
	case *pglogrepl.CommitMessage:
		d.inTxn = false
		d.commits++
		return d.prog.txnDone(d.txnNeed, d.txnHasNeed, m.TransactionEndLSN), nil
	case *pglogrepl.RelationMessage:
		return false, d.onRelation(ctx, m)
	case *pglogrepl.InsertMessage:
		return false, d.onInsert(it.lsn, m)
	case *pglogrepl.UpdateMessage:
		return false, d.onUpdate(it.lsn, m)
	case *pglogrepl.DeleteMessage:
		return false, d.onDelete(it.lsn, m)
	case *pglogrepl.TruncateMessage:
		return false, d.onTruncate(it.lsn, m)
	case *pglogrepl.TypeMessage:
		// Column types are resolved from the catalog by OID when the
		// Relation message arrives; the name adds nothing.
	default:
		// Origin and logical decoding messages carry no row changes.
	}
	return false, nil
}

// errProtocol marks a message we cannot parse: a server bug or a protocol
// we do not speak. Reconnecting would read the same bytes again.
var errProtocol = errors.New("pgsource: unreadable pgoutput message")

func parseMessage(data []byte) (msg pglogrepl.Message, err error) {
	// pglogrepl indexes tuple data without bounds checks.
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: %v", errProtocol, r)
		}
	}()
	msg, err = pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProtocol, err)
	}
	return msg, nil
}

// next returns the position of the next change, decoded from the WAL record
// at lsn.
func (d *decoder) next(lsn pglogrepl.LSN) position {
	switch {
	case !d.started || lsn > d.lastLSN:
		d.lastLSN, d.seq = lsn, 0
	default:
		// Same record (multi-insert), or, defensively, an LSN that went
		// backwards: keep positions increasing either way.
		d.seq++
	}
	d.started = true
	return position{commit: d.commit, lsn: d.lastLSN, seq: d.seq}
}

func (d *decoder) onRelation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	cfg := &d.src.cfg
	rel := &relation{id: m.RelationID, collection: collectionName(m.Namespace, m.RelationName), attrib: attribAll}
	if cfg.TenantFrom == TenantFromSchema {
		rel.collection = m.RelationName
	}
	d.rels[m.RelationID] = rel
	if m.RelationID == d.src.ckptOID {
		rel.skip = true
		return nil
	}
	rel.identityFull = m.ReplicaIdentity == 'f'
	rel.cols = make([]column, len(m.Columns))
	byName := make(map[string]int, len(m.Columns))
	for i, c := range m.Columns {
		conv, err := d.conv.forOID(ctx, c.DataType)
		if err != nil {
			return fmt.Errorf("pgsource: table %s column %q: %w", rel.collection, c.Name, err)
		}
		jk, _ := appendString(nil, []byte(c.Name))
		rel.cols[i] = column{name: c.Name, jsonKey: append(jk, ':'), identity: c.Flags&1 != 0, conv: conv}
		byName[c.Name] = i
	}

	key, err := d.keyColumns(ctx, m, rel, byName)
	if err != nil {
		return fmt.Errorf("pgsource: primary key of %s: %w", rel.collection, err)
	}
	rel.key = key
	if len(rel.key) == 0 {
		rel.keyProblem = "table has no primary key and no replica identity index to take the document key from"
		d.src.warnOnce("nokey", rel.id, "table has no primary key; its changes are reported as problems", "collection", rel.collection)
	}

	if !rel.identityFull {
		d.src.warnOnce("identity", rel.id, "table lacks REPLICA IDENTITY FULL; updates and deletes carry no before image",
			"collection", rel.collection, "fix", "ALTER TABLE ... REPLICA IDENTITY FULL")
	}
	switch cfg.TenantFrom {
	case "":
		rel.fixed = d.newTenantRef(rel, cfg.Tenant)
	case TenantFromSchema:
		switch {
		case m.Namespace == publicSchema:
			rel.attrib = attribNone
			d.src.warnOnce("publicschema", rel.id, "table is in the public schema, which holds no tenant's data; its changes are not reported",
				"table", m.RelationName)
		case cfg.Tenant != "" && m.Namespace != cfg.Tenant:
			rel.attrib = attribNone // another tenant's schema
		default:
			rel.fixed = d.newTenantRef(rel, m.Namespace)
		}
	case TenantFromColumn:
		i, ok := byName[cfg.TenantColumn]
		if !ok {
			rel.attrib = attribNone
			d.src.warnOnce("notenant", rel.id, "table has no tenant column; its changes are not reported",
				"collection", rel.collection, "tenantColumn", cfg.TenantColumn)
			break
		}
		rel.attrib, rel.tenantCol = attribColumn, i
		if cfg.Tenant != "" {
			rel.fixed = d.newTenantRef(rel, cfg.Tenant)
		} else {
			rel.tenants = make(map[string]*tenantRef)
		}
		if !rel.identityFull && !rel.cols[i].identity {
			d.src.warnOnce("tenantdelete", rel.id, "tenant column is not part of the replica identity; deletes cannot be attributed to a tenant and are not reported",
				"collection", rel.collection, "tenantColumn", cfg.TenantColumn, "fix", "ALTER TABLE ... REPLICA IDENTITY FULL, or include the column in the primary key")
		}
	}
	return nil
}

// newTenantRef resolves a tenant's label and counter in rel once, rather
// than per row.
func (d *decoder) newTenantRef(rel *relation, tenant string) *tenantRef {
	label := tenant
	if d.src.cfg.Tenant == "" {
		label = d.src.cfg.TenantLabels.Label(tenant)
	}
	return &tenantRef{name: tenant, label: label, events: d.src.metrics.events.WithLabelValues(label, rel.collection)}
}

// keyColumns picks the docKey columns. Under the default replica identity
// the Relation message flags exactly the primary key, as of the decoded
// WAL; otherwise (FULL flags every column, USING INDEX another index) the
// primary key comes from the catalog, falling back to the identity index.
func (d *decoder) keyColumns(ctx context.Context, m *pglogrepl.RelationMessage, rel *relation, byName map[string]int) ([]int, error) {
	var flagged []int
	for i, c := range rel.cols {
		if c.identity {
			flagged = append(flagged, i)
		}
	}
	if m.ReplicaIdentity == 'd' && len(flagged) > 0 {
		return flagged, nil
	}
	pk, err := d.src.primaryKey(ctx, m.RelationID)
	if err != nil {
		return nil, err
	}
	var key []int
	for _, name := range pk {
		i, ok := byName[name]
		if !ok {
			key = nil
			break
		}
		key = append(key, i)
	}
	if len(key) == 0 && !rel.identityFull {
		key = flagged
	}
	return key, nil
}

// collectionName is the table name, schema-qualified with '/' outside
// the public schema.
func collectionName(namespace, name string) string {
	if namespace == "public" || namespace == "" {
		return name
	}
	return namespace + "/" + name
}

func (d *decoder) relation(id uint32) (*relation, error) {
	rel, ok := d.rels[id]
	if !ok {
		return nil, fmt.Errorf("%w: change for relation %d before its Relation message", errProtocol, id)
	}
	return rel, nil
}

// tenantValue returns the tenant column's text in t, empty for NULL, and
// whether it is known: a key tuple ('K') only carries replica identity
// columns, and an unchanged TOAST value is only known from a full old
// tuple. The bytes alias t.
func (rel *relation) tenantValue(t *pglogrepl.TupleData, keyOnly bool, old *pglogrepl.TupleData) ([]byte, bool) {
	if t == nil || rel.tenantCol >= len(t.Columns) {
		return nil, false
	}
	c := t.Columns[rel.tenantCol]
	switch c.DataType {
	case pglogrepl.TupleDataTypeText:
		return c.Data, true
	case pglogrepl.TupleDataTypeNull:
		if keyOnly && !rel.cols[rel.tenantCol].identity {
			return nil, false
		}
		return nil, true
	case pglogrepl.TupleDataTypeToast:
		return rel.tenantValue(old, false, nil)
	}
	return nil, false
}

// scope tells which tenant a row version belongs to, if it is one the
// source reports.
func (d *decoder) scope(rel *relation, t *pglogrepl.TupleData, keyOnly bool, old *pglogrepl.TupleData) (*tenantRef, rowScope) {
	switch rel.attrib {
	case attribAll:
		return rel.fixed, scopeIn
	case attribNone:
		return nil, scopeOut
	}
	v, ok := rel.tenantValue(t, keyOnly, old)
	switch {
	case !ok:
		return nil, scopeUnknown
	case rel.fixed != nil: // single-tenant mode: NULL is just not ours
		if string(v) == rel.fixed.name {
			return rel.fixed, scopeIn
		}
		return nil, scopeOut
	case len(v) == 0:
		// NULL, or an empty string, which no watcher can serve.
		return nil, scopeNull
	}
	if ref, ok := rel.tenants[string(v)]; ok {
		return ref, scopeIn
	}
	if len(rel.tenants) >= maxCachedTenants {
		clear(rel.tenants)
	}
	ref := d.newTenantRef(rel, string(v))
	rel.tenants[ref.name] = ref
	return ref, scopeIn
}

// unattributed counts a row change not reported because its tenant is
// unknown or NULL.
func (d *decoder) unattributed(rel *relation) {
	d.src.metrics.unattributed.WithLabelValues(d.src.cfg.Tenant, rel.collection).Inc()
}

// rowOf looks up a row change's relation and takes the change's position;
// the relation is nil, with no error, when its table is skipped (the
// position is taken all the same).
func (d *decoder) rowOf(lsn pglogrepl.LSN, relID uint32) (*relation, position, error) {
	rel, err := d.relation(relID)
	if err != nil {
		return nil, position{}, err
	}
	pos := d.next(lsn)
	if rel.skip {
		return nil, pos, nil
	}
	return rel, pos, nil
}

func (d *decoder) onInsert(lsn pglogrepl.LSN, m *pglogrepl.InsertMessage) error {
	rel, pos, err := d.rowOf(lsn, m.RelationID)
	if err != nil || rel == nil {
		return err
	}
	ref, sc := d.scope(rel, m.Tuple, false, nil)
	switch sc {
	case scopeIn:
		return d.deliver(pos, ref, d.rowChange(rel, trigger.EventCreate, nil, m.Tuple, nil))
	case scopeNull:
		d.unattributed(rel)
	}
	return nil
}

func (d *decoder) onUpdate(lsn pglogrepl.LSN, m *pglogrepl.UpdateMessage) error {
	rel, pos, err := d.rowOf(lsn, m.RelationID)
	if err != nil || rel == nil {
		return err
	}
	var full *pglogrepl.TupleData // the old row, when the table sends it whole
	if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld {
		full = m.OldTuple
	}
	keyOnly := m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey
	newRef, newScope := d.scope(rel, m.NewTuple, false, full)
	oldRef, oldScope := d.scope(rel, m.OldTuple, keyOnly, nil)
	if newScope == scopeUnknown {
		d.src.warnOnce("tenantunknown", rel.id, "tenant of an updated row is unknown; change not reported", "collection", rel.collection)
		return nil
	}

	if oldScope != scopeUnknown && (oldScope != newScope || oldRef != nil && oldRef.name != newRef.name) {
		// The row moved between tenants (or in or out of the source's
		// view): gone for the old tenant, new to the new one, in the
		// order a per-tenant reader would expect.
		if newScope != scopeIn && oldScope != scopeIn {
			if newScope == scopeNull {
				d.unattributed(rel)
			}
			return nil
		}
		if oldScope == scopeIn {
			if err := d.deliver(pos, oldRef, d.rowChange(rel, trigger.EventDelete, m.OldTuple, nil, full)); err != nil {
				return err
			}
			if newScope != scopeIn {
				return nil
			}
			pos = d.next(lsn)
		}
		return d.deliver(pos, newRef, d.rowChange(rel, trigger.EventCreate, nil, m.NewTuple, full))
	}
	if newScope != scopeIn {
		if newScope == scopeNull {
			d.unattributed(rel)
		}
		return nil
	}
	if m.OldTuple != nil && rel.keyProblem == "" {
		oldKey, errOld := d.docKey(rel, m.OldTuple, nil)
		newKey, errNew := d.docKey(rel, m.NewTuple, m.OldTuple)
		if errOld == nil && errNew == nil && oldKey != newKey {
			// A new primary key is a different document: the old one is
			// deleted and the new one created, so per-key order holds.
			if err := d.deliver(pos, newRef, d.rowChange(rel, trigger.EventDelete, m.OldTuple, nil, full)); err != nil {
				return err
			}
			return d.deliver(d.next(lsn), newRef, d.rowChange(rel, trigger.EventCreate, nil, m.NewTuple, full))
		}
	}
	return d.deliver(pos, newRef, d.rowChange(rel, trigger.EventUpdate, m.OldTuple, m.NewTuple, full))
}

func (d *decoder) onDelete(lsn pglogrepl.LSN, m *pglogrepl.DeleteMessage) error {
	rel, pos, err := d.rowOf(lsn, m.RelationID)
	if err != nil || rel == nil {
		return err
	}
	var full *pglogrepl.TupleData
	if m.OldTupleType == pglogrepl.DeleteMessageTupleTypeOld {
		full = m.OldTuple
	}
	ref, sc := d.scope(rel, m.OldTuple, full == nil, nil)
	switch sc {
	case scopeIn:
		return d.deliver(pos, ref, d.rowChange(rel, trigger.EventDelete, m.OldTuple, nil, full))
	case scopeUnknown, scopeNull:
		// Unknown was warned about when the relation arrived; see
		// onRelation.
		d.unattributed(rel)
	}
	return nil
}

// onTruncate reports a Problem per truncated table: TRUNCATE removes rows
// without row-level WAL, so no per-document delete can be reported, and
// ignoring it would silently leave triggers unaware of the removals.
func (d *decoder) onTruncate(lsn pglogrepl.LSN, m *pglogrepl.TruncateMessage) error {
	for _, id := range m.RelationIDs {
		rel, err := d.relation(id)
		if err != nil {
			return err
		}
		pos := d.next(lsn)
		if rel.skip || rel.attrib == attribNone {
			continue
		}
		if rel.fixed == nil {
			// Multi-tenant column mode: the removed rows' tenants are not
			// in the WAL, and a problem reported for no tenant would be
			// skipped by every watcher; say it where an operator looks.
			d.src.log.Warn("table truncated; the tenants of its removed rows are unknown, so no problem is reported",
				"collection", rel.collection, "position", pos.String())
			d.unattributed(rel)
			continue
		}
		ch := watcher.Change{
			Collection: rel.collection,
			Type:       trigger.EventDelete,
			Problem:    "table truncated: TRUNCATE removes rows without per-row changes, so no document deletes are reported",
		}
		if err := d.deliver(pos, rel.fixed, ch); err != nil {
			return err
		}
	}
	return nil
}

// rowChange builds a change from the row versions at hand: old is the old
// tuple as sent (key or full), newT the new one, full the old tuple when
// it is complete. Decoding failures become a Problem change.
func (d *decoder) rowChange(rel *relation, typ trigger.EventType, old, newT, full *pglogrepl.TupleData) watcher.Change {
	ch := watcher.Change{Collection: rel.collection, Type: typ}
	keyFrom, keyFallback := newT, old
	if newT == nil {
		keyFrom, keyFallback = old, nil
	}
	var problems []string
	if rel.keyProblem != "" {
		problems = append(problems, rel.keyProblem)
	} else if key, err := d.docKey(rel, keyFrom, keyFallback); err != nil {
		problems = append(problems, "document key: "+err.Error())
	} else {
		ch.DocKey = key
	}
	if full != nil && typ != trigger.EventCreate {
		doc, err := d.row(rel, full, nil)
		if err != nil {
			problems = append(problems, "before image: "+err.Error())
		}
		ch.Before = doc
	}
	if newT != nil {
		doc, err := d.row(rel, newT, full)
		if err != nil {
			problems = append(problems, "after image: "+err.Error())
		}
		ch.After = doc
	}
	if len(problems) > 0 {
		ch.Problem = strings.Join(problems, "; ")
		ch.Before, ch.After = nil, nil
	}
	return ch
}

// row renders a tuple as a JSON object in column order. Unchanged TOAST
// values are taken from full (the old row under REPLICA IDENTITY FULL),
// else left out: PostgreSQL does not send them.
func (d *decoder) row(rel *relation, t *pglogrepl.TupleData, full *pglogrepl.TupleData) ([]byte, error) {
	if len(t.Columns) != len(rel.cols) {
		return nil, fmt.Errorf("%w: tuple has %d columns, table %s has %d", errProtocol, len(t.Columns), rel.collection, len(rel.cols))
	}
	size := 2
	for i := range t.Columns {
		size += len(rel.cols[i].jsonKey) + len(t.Columns[i].Data) + 3
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '{')
	first := true
	for i, c := range rel.cols {
		tc := t.Columns[i]
		kind, data := tc.DataType, tc.Data
		if kind == pglogrepl.TupleDataTypeToast {
			if full != nil && i < len(full.Columns) && full.Columns[i].DataType == pglogrepl.TupleDataTypeText {
				kind, data = pglogrepl.TupleDataTypeText, full.Columns[i].Data
			} else {
				d.src.warnOnce("toast", rel.id, "unchanged TOAST values are left out of after images; set REPLICA IDENTITY FULL to include them",
					"collection", rel.collection, "column", c.name)
				continue
			}
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, c.jsonKey...)
		switch kind {
		case pglogrepl.TupleDataTypeNull:
			buf = append(buf, "null"...)
		case pglogrepl.TupleDataTypeText:
			var err error
			if buf, err = c.conv(buf, data); err != nil {
				return nil, fmt.Errorf("column %q: %w", c.name, err)
			}
		default:
			return nil, fmt.Errorf("column %q: unexpected tuple data kind %q", c.name, kind)
		}
	}
	return append(buf, '}'), nil
}

// docKey is the primary key value as text: a single column's value (a
// string's content, else its JSON text), several as a JSON array text.
func (d *decoder) docKey(rel *relation, t, fallback *pglogrepl.TupleData) (string, error) {
	if t == nil {
		return "", errors.New("no row to read the key from")
	}
	if len(rel.key) == 1 {
		v, err := d.keyValue(rel, rel.key[0], t, fallback)
		if err != nil {
			return "", err
		}
		return keyText(v)
	}
	buf := []byte{'['}
	for n, i := range rel.key {
		if n > 0 {
			buf = append(buf, ',')
		}
		v, err := d.keyValue(rel, i, t, fallback)
		if err != nil {
			return "", err
		}
		buf = append(buf, v...)
	}
	return string(append(buf, ']')), nil
}

func (d *decoder) keyValue(rel *relation, i int, t, fallback *pglogrepl.TupleData) ([]byte, error) {
	c := rel.cols[i]
	if i >= len(t.Columns) {
		return nil, fmt.Errorf("%w: key column %q missing from tuple", errProtocol, c.name)
	}
	tc := t.Columns[i]
	if tc.DataType == pglogrepl.TupleDataTypeToast && fallback != nil && i < len(fallback.Columns) {
		tc = fallback.Columns[i]
	}
	if tc.DataType != pglogrepl.TupleDataTypeText {
		return nil, fmt.Errorf("key column %q is not in the row (null, or not part of the replica identity)", c.name)
	}
	v, err := c.conv(nil, tc.Data)
	if err != nil {
		return nil, fmt.Errorf("key column %q: %w", c.name, err)
	}
	return v, nil
}

// deliver emits ch for tenant at pos unless an earlier stream delivered it
// already.
func (d *decoder) deliver(pos position, tenant *tenantRef, ch watcher.Change) error {
	d.prog.needed(pos)
	d.txnNeed, d.txnHasNeed = pos, true
	if d.hasResume && pos.compare(d.resume) <= 0 {
		return nil
	}
	ch.Tenant = tenant.name
	ch.Position = pos.String()
	ch.CommitTime = d.commitTime
	tenant.events.Inc()
	if ch.Problem != "" {
		d.src.metrics.problems.WithLabelValues(tenant.label, ch.Collection).Inc()
		d.src.log.Warn("change could not be decoded; reported as a problem",
			"tenant", ch.Tenant, "collection", ch.Collection, "docKey", ch.DocKey, "position", ch.Position, "problem", ch.Problem)
	}
	d.resume, d.hasResume = pos, true
	if err := d.emit(ch); err != nil {
		return &emitError{err}
	}
	return nil
}

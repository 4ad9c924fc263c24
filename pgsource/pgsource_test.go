package pgsource

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// TestPostgres runs every integration test on one cluster, each in its own
// database: starting a cluster costs more than most of these tests.
func TestPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	for name, run := range map[string]func(*testing.T, *testenv.PostgresServer){
		"Changes":           testChanges,
		"Types":             testTypes,
		"ConfirmIsTheLimit": testConfirmIsTheLimit,
		"LargeTransaction":  testLargeTransaction,
		"Resume":            testResume,
		"Interleaved":       testInterleaved,
		"TenantColumn":      testTenantColumn,
		"MultiTenantColumn": testMultiTenantColumn,
		"TenantPerSchema":   testTenantPerSchema,
		"Reconnect":         testReconnect,
		"SlowEmit":          testSlowEmit,
		"Errors":            testErrors,
		"Conformance":       testConformance,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, pg)
		})
	}
}

type want struct {
	tenant     string // "" means acme
	typ        trigger.EventType
	collection string
	key        string
	before     string
	after      string
	problem    bool
}

func requireChanges(t *testing.T, wants []want, got []watcher.Change) {
	t.Helper()
	require.Len(t, got, len(wants), describe(got))
	for i, w := range wants {
		c := got[i]
		msg := fmt.Sprintf("change #%d:\n%s", i, describe(got))
		require.Equal(t, w.typ, c.Type, msg)
		require.Equal(t, w.collection, c.Collection, msg)
		require.Equal(t, w.key, c.DocKey, msg)
		tenant := w.tenant
		if tenant == "" {
			tenant = "acme"
		}
		require.Equal(t, tenant, c.Tenant, msg)
		require.False(t, c.CommitTime.IsZero(), msg)
		if w.problem {
			require.NotEmpty(t, c.Problem, msg)
			continue
		}
		require.Empty(t, c.Problem, msg)
		require.Equal(t, w.before, string(c.Before), msg)
		require.Equal(t, w.after, string(c.After), msg)
	}
	requireIncreasing(t, got)
}

func testChanges(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t,
		`CREATE TABLE items (id int PRIMARY KEY, name text, qty int)`,
		`ALTER TABLE items REPLICA IDENTITY FULL`,
		`CREATE TABLE plain (id text PRIMARY KEY, v int)`,
		`CREATE SCHEMA sales`,
		`CREATE TABLE sales.orders (region text, num int, total numeric, PRIMARY KEY (region, num))`,
		`CREATE TABLE nokey (v int)`,
		`CREATE TABLE uidx (code text NOT NULL, v int)`,
		`CREATE UNIQUE INDEX uidx_code ON uidx (code)`,
		`ALTER TABLE uidx REPLICA IDENTITY USING INDEX uidx_code`,
		`CREATE TABLE fullnokey (v int)`,
		`ALTER TABLE fullnokey REPLICA IDENTITY FULL`,
	)
	src := d.open(t, nil)
	ctx := t.Context()
	d.exec(t,
		`INSERT INTO items VALUES (1, 'a', 2)`,
		`UPDATE items SET qty = 3 WHERE id = 1`,
		`INSERT INTO plain VALUES ('p/1 ü', 1)`,
		`UPDATE plain SET v = 2`,
		`DELETE FROM plain`,
		`INSERT INTO sales.orders VALUES ('eu', 7, 9.990)`,
		`UPDATE items SET id = 2 WHERE id = 1`,
		`DELETE FROM items WHERE id = 2`,
		`INSERT INTO nokey VALUES (1)`,
		`TRUNCATE plain`,
		`INSERT INTO uidx VALUES ('u1', 1)`,
		`DELETE FROM uidx`,
		`INSERT INTO fullnokey VALUES (1)`,
	)
	require.NoError(t, src.Checkpoints().Save(ctx, "sys/checkpoints/x", "00000000000000AB"))
	d.exec(t, `INSERT INTO items VALUES (3, 'end', 0)`)

	got := watchUntil(t, src, "", func(c watcher.Change) bool { return c.DocKey == "3" })
	requireChanges(t, []want{
		{typ: trigger.EventCreate, collection: "items", key: "1", after: `{"id":1,"name":"a","qty":2}`},
		{typ: trigger.EventUpdate, collection: "items", key: "1", before: `{"id":1,"name":"a","qty":2}`, after: `{"id":1,"name":"a","qty":3}`},
		{typ: trigger.EventCreate, collection: "plain", key: "p/1 ü", after: `{"id":"p/1 ü","v":1}`},
		// Default replica identity: no before images.
		{typ: trigger.EventUpdate, collection: "plain", key: "p/1 ü", after: `{"id":"p/1 ü","v":2}`},
		{typ: trigger.EventDelete, collection: "plain", key: "p/1 ü"},
		{typ: trigger.EventCreate, collection: "sales/orders", key: `["eu",7]`, after: `{"region":"eu","num":7,"total":9.990}`},
		// A new primary key is another document.
		{typ: trigger.EventDelete, collection: "items", key: "1", before: `{"id":1,"name":"a","qty":3}`},
		{typ: trigger.EventCreate, collection: "items", key: "2", after: `{"id":2,"name":"a","qty":3}`},
		{typ: trigger.EventDelete, collection: "items", key: "2", before: `{"id":2,"name":"a","qty":3}`},
		{typ: trigger.EventCreate, collection: "nokey", problem: true},
		{typ: trigger.EventDelete, collection: "plain", problem: true},
		// Without a primary key, the replica identity index is the key.
		{typ: trigger.EventCreate, collection: "uidx", key: "u1", after: `{"code":"u1","v":1}`},
		{typ: trigger.EventDelete, collection: "uidx", key: "u1"},
		// REPLICA IDENTITY FULL alone names no key.
		{typ: trigger.EventCreate, collection: "fullnokey", problem: true},
		{typ: trigger.EventCreate, collection: "items", key: "3", after: `{"id":3,"name":"end","qty":0}`},
	}, got)
	// The key change's two changes share one WAL record.
	require.Equal(t, got[6].Position[:33], got[7].Position[:33])
}

func testTypes(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t,
		`CREATE TYPE mood AS ENUM ('sad', 'happy')`,
		`CREATE DOMAIN posint AS int CHECK (VALUE > 0)`,
		`CREATE TABLE types (
			id int PRIMARY KEY, n numeric, nn numeric, i2 smallint, i8 bigint, f4 real, f8 double precision, fi double precision,
			b bool, t text, vc varchar(10), ch char(3), tstz timestamptz, ts timestamp, d date, dinf date,
			j jsonb, js json, ia int[], ta text[], im int[][], ea int[], u uuid, by bytea, iv interval,
			e mood, ma mood[], dm posint, dma posint[])`,
	)
	src := d.open(t, nil)
	d.exec(t,
		`INSERT INTO types VALUES (
			1, 12345678901234567890.123456789000, 'NaN', -32768, 9007199254740993, 1.5, 0.1, '-Infinity',
			true, E'line\nbreak "q"', 'vc', 'ab', '2024-01-02 03:04:05.123456+02', '2024-01-02 03:04:05', '2024-02-29', 'infinity',
			'{"b": [1, 2.50], "a": null}', '{"x":  1}', '{1,2,NULL}', '{"a b","c\"d",NULL}', '{{1,2},{3,4}}', '{}',
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef', '1 day 2 hours', 'happy', '{sad,happy}', 5, '{1,2}')`,
		`INSERT INTO types (id) VALUES (2)`,
	)
	s := watch(t, src, "")
	got := s.take(2)
	require.Equal(t, "1", got[0].DocKey)
	require.Empty(t, got[0].Problem)
	require.Equal(t, `{"id":1,"n":12345678901234567890.123456789000,"nn":"NaN","i2":-32768,"i8":9007199254740993,`+
		`"f4":1.5,"f8":0.1,"fi":"-Infinity","b":true,"t":"line\nbreak \"q\"","vc":"vc","ch":"ab ",`+
		`"tstz":"2024-01-02T01:04:05.123456Z","ts":"2024-01-02T03:04:05Z","d":"2024-02-29","dinf":"infinity",`+
		`"j":{"a": null, "b": [1, 2.50]},"js":{"x":  1},"ia":[1,2,null],"ta":["a b","c\"d",null],"im":[[1,2],[3,4]],"ea":[],`+
		`"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","by":"3q2+7w==","iv":"P1DT2H","e":"happy","ma":["sad","happy"],"dm":5,"dma":[1,2]}`,
		string(got[0].After))
	require.Equal(t, `{"id":2,"n":null,"nn":null,"i2":null,"i8":null,"f4":null,"f8":null,"fi":null,"b":null,"t":null,"vc":null,"ch":null,`+
		`"tstz":null,"ts":null,"d":null,"dinf":null,"j":null,"js":null,"ia":null,"ta":null,"im":null,"ea":null,"u":null,"by":null,"iv":null,`+
		`"e":null,"ma":null,"dm":null,"dma":null}`, string(got[1].After))

	// A value JSON cannot carry faithfully is a problem, not a crash or
	// a silent drop; the stream goes on.
	d.exec(t, `INSERT INTO types (id, tstz) VALUES (3, '10000-01-01 00:00:00+00')`, `INSERT INTO types (id) VALUES (4)`)
	got = s.take(2)
	require.Equal(t, "3", got[0].DocKey)
	require.Contains(t, got[0].Problem, `column "tstz"`)
	require.Nil(t, got[0].After)
	require.Equal(t, "4", got[1].DocKey)
	require.Empty(t, got[1].Problem)
}

func testConfirmIsTheLimit(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	src := d.open(t, nil)
	ctx := t.Context()
	d.exec(t,
		`INSERT INTO t VALUES (1), (2)`,
		`INSERT INTO t VALUES (3), (4), (5)`,
		`INSERT INTO t VALUES (6)`,
	)
	s := watch(t, src, "")
	got := s.take(6)

	// Confirm half of the second transaction: the slot may release the
	// first transaction but must send the second again.
	require.NoError(t, src.Confirm(ctx, got[3].Position))
	second := commitOf(t, got[3].Position)
	d.awaitFlush(t, src.Slot(), second)

	// Writes the source filters out (its own checkpoints) and keepalives
	// must not move the slot past an unconfirmed change either.
	for i := range 3 {
		require.NoError(t, src.Checkpoints().Save(ctx, "k", strconv.Itoa(i)))
	}
	d.exec(t, `INSERT INTO t VALUES (7)`)
	got = append(got, s.take(1)...)
	require.ErrorIs(t, s.stop(), context.Canceled)
	require.Equal(t, second, d.confirmedFlush(t, src.Slot()), "the slot passed the last confirmed position")

	// A restart sends the partly confirmed transaction again.
	again := watch(t, src, "")
	require.Equal(t, summary(got[2:]), summary(again.take(5)))

	// Once everything delivered is confirmed, the slot may move past it.
	require.NoError(t, src.Confirm(ctx, got[6].Position))
	d.awaitFlushPast(t, src.Slot(), commitOf(t, got[6].Position))
	require.ErrorIs(t, again.stop(), context.Canceled)
	d.exec(t, `INSERT INTO t VALUES (8)`)
	next := watchN(t, src, "", 1)
	require.JSONEq(t, `{"id":8}`, string(next[0].After))
}

func testLargeTransaction(t *testing.T, pg *testenv.PostgresServer) {
	const rows = 10_000
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`)
	src := d.open(t, nil)
	d.exec(t, fmt.Sprintf(`INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, %d) g`, rows))
	got := watchN(t, src, "", rows)
	commit := got[0].Position[:16]
	for i, c := range got {
		require.Equal(t, strconv.Itoa(i+1), c.DocKey)
		require.Equal(t, commit, c.Position[:16], "one transaction")
	}
	requireIncreasing(t, got)
}

func testResume(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE r (id int PRIMARY KEY)`)
	src := d.open(t, nil)
	ctx := t.Context()
	d.exec(t, `INSERT INTO r VALUES (1), (2), (3)`, `INSERT INTO r VALUES (4)`)
	// COPY writes several rows per WAL record.
	_, err := d.pool.CopyFrom(ctx, pgx.Identifier{"r"}, []string{"id"}, pgx.CopyFromRows([][]any{{5}, {6}, {7}}))
	require.NoError(t, err)
	d.exec(t, `INSERT INTO r VALUES (8)`)

	all := watchN(t, src, "", 8)
	requireIncreasing(t, all)
	require.Equal(t, all[4].Position[:33], all[5].Position[:33], "COPY rows share a WAL record")
	isLast := func(c watcher.Change) bool { return c.DocKey == "8" }
	for _, k := range []int{0, 1, 2, 4, 5, 6} {
		got := watchUntil(t, src, all[k].Position, isLast)
		require.Equal(t, summary(all[k+1:]), summary(got), "resume after #%d", k)
	}

	// A new Source on the same slot resumes after the confirmed position.
	require.NoError(t, src.Confirm(ctx, all[2].Position))
	require.NoError(t, src.Close())
	d.exec(t, `INSERT INTO r VALUES (9)`)
	src2 := d.open(t, nil)
	got := watchUntil(t, src2, "", func(c watcher.Change) bool { return c.DocKey == "9" })
	require.Equal(t, summary(all[3:]), summary(got[:len(got)-1]))

	// ...and, given the watcher's checkpoint, after a position inside a
	// transaction too.
	got = watchUntil(t, src2, all[5].Position, func(c watcher.Change) bool { return c.DocKey == "9" })
	require.Equal(t, summary(all[6:]), summary(got[:len(got)-1]))
}

// testInterleaved: a transaction that began first but committed last comes
// last, and its changes sort after the other one's although their WAL
// records came first.
func testInterleaved(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE i (id int PRIMARY KEY)`)
	// A publication name that needs quoting twice, as identifier and literal.
	src := d.open(t, func(c *Config) { c.Publication = `Odd "Pub" 'x'` })
	ctx := t.Context()
	c1 := pg.ConnFor(t, d.dsn)
	c2 := pg.ConnFor(t, d.dsn)
	tx1, err := c1.Begin(ctx)
	require.NoError(t, err)
	_, err = tx1.Exec(ctx, `INSERT INTO i VALUES (1)`)
	require.NoError(t, err)
	_, err = c2.Exec(ctx, `INSERT INTO i VALUES (2)`)
	require.NoError(t, err)
	_, err = tx1.Exec(ctx, `INSERT INTO i VALUES (3)`)
	require.NoError(t, err)
	require.NoError(t, tx1.Commit(ctx))

	got := watchN(t, src, "", 3)
	require.Equal(t, []string{"2", "1", "3"}, []string{got[0].DocKey, got[1].DocKey, got[2].DocKey})
	requireIncreasing(t, got)
	require.Less(t, got[1].Position[17:33], got[0].Position[17:33], "change 1's WAL record precedes change 2's")

	rest := watchN(t, src, got[0].Position, 2)
	require.Equal(t, summary(got[1:]), summary(rest))
}

func testTenantColumn(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t,
		`CREATE TABLE docs (tenant text, id int, v int, PRIMARY KEY (tenant, id))`,
		`CREATE TABLE moving (id int PRIMARY KEY, tenant text, v int)`,
		`ALTER TABLE moving REPLICA IDENTITY FULL`,
		`CREATE TABLE shared (id int PRIMARY KEY)`,
	)
	src := d.open(t, func(c *Config) { c.TenantColumn = "tenant" })
	d.exec(t,
		`INSERT INTO docs VALUES ('acme', 1, 1), ('other', 1, 1)`,
		`UPDATE docs SET v = 2`,
		`DELETE FROM docs WHERE tenant = 'other'`,
		`DELETE FROM docs WHERE tenant = 'acme'`,
		`INSERT INTO shared VALUES (1)`,
		`INSERT INTO moving VALUES (1, 'acme', 1), (2, 'other', 1)`,
		`UPDATE moving SET tenant = CASE tenant WHEN 'acme' THEN 'other' ELSE 'acme' END`,
		`UPDATE moving SET v = 5 WHERE tenant = 'other'`,
		`DELETE FROM moving`,
		`INSERT INTO docs VALUES ('acme', 9, 9)`,
	)
	got := watchUntil(t, src, "", func(c watcher.Change) bool { return c.DocKey == `["acme",9]` })
	requireChanges(t, []want{
		{typ: trigger.EventCreate, collection: "docs", key: `["acme",1]`, after: `{"tenant":"acme","id":1,"v":1}`},
		{typ: trigger.EventUpdate, collection: "docs", key: `["acme",1]`, after: `{"tenant":"acme","id":1,"v":2}`},
		{typ: trigger.EventDelete, collection: "docs", key: `["acme",1]`},
		{typ: trigger.EventCreate, collection: "moving", key: "1", after: `{"id":1,"tenant":"acme","v":1}`},
		// Row 1 left the tenant, row 2 joined it.
		{typ: trigger.EventDelete, collection: "moving", key: "1", before: `{"id":1,"tenant":"acme","v":1}`},
		{typ: trigger.EventCreate, collection: "moving", key: "2", after: `{"id":2,"tenant":"acme","v":1}`},
		{typ: trigger.EventDelete, collection: "moving", key: "2", before: `{"id":2,"tenant":"acme","v":1}`},
		{typ: trigger.EventCreate, collection: "docs", key: `["acme",9]`, after: `{"tenant":"acme","id":9,"v":9}`},
	}, got)
}

func testReconnect(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE c (id int PRIMARY KEY)`)
	reg := prometheus.NewPedanticRegistry()
	src := d.open(t, func(c *Config) { c.Registerer = reg })
	d.exec(t, `INSERT INTO c VALUES (1)`, `INSERT INTO c VALUES (2), (3)`)
	s := watch(t, src, "")
	first := s.take(2) // stop inside the second transaction

	var killed bool
	require.NoError(t, d.pool.QueryRow(t.Context(),
		`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, src.Slot()).Scan(&killed))
	require.True(t, killed)
	d.exec(t, `INSERT INTO c VALUES (4)`)

	// Nothing lost, nothing repeated.
	rest := s.until(func(c watcher.Change) bool { return c.DocKey == "4" })
	require.Equal(t, []string{"3", "4"}, []string{rest[0].DocKey, rest[1].DocKey}, describe(rest))
	requireIncreasing(t, append(first, rest...))
	require.GreaterOrEqual(t, testutil.ToFloat64(src.metrics.reconnects.WithLabelValues("acme")), 1.0)
	require.EqualValues(t, 4, testutil.ToFloat64(src.metrics.events.WithLabelValues("acme", "c")))
}

func testErrors(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE e (id int PRIMARY KEY)`)
	src := d.open(t, nil)
	ctx := t.Context()
	noop := func(watcher.Change) error { return nil }

	require.ErrorIs(t, src.Watch(ctx, "not a token", noop), ErrInvalidPosition)
	require.ErrorIs(t, src.Watch(ctx, "7FFFFFFFFFFFFFFF-0000000000000000-00000000", noop), ErrInvalidPosition)
	require.ErrorIs(t, src.Confirm(ctx, "7FFFFFFFFFFFFFFF-0000000000000000-00000000"), ErrInvalidPosition)

	head, err := src.Head(ctx)
	require.NoError(t, err)
	s := watch(t, src, head)
	d.exec(t, `INSERT INTO e VALUES (1)`)
	s.take(1)
	require.ErrorIs(t, src.Watch(ctx, "", noop), ErrWatching)
	require.ErrorIs(t, s.stop(), context.Canceled)

	_, _, err = src.Checkpoints().Load(ctx, "")
	require.ErrorIs(t, err, ErrInvalidCheckpointKey)
	require.ErrorIs(t, src.Checkpoints().Save(ctx, "a\x00b", "x"), ErrInvalidCheckpointKey)

	// The publication dropped under the slot: no reconnect can help.
	d.exec(t, `DROP PUBLICATION triggerflow`)
	require.ErrorIs(t, src.Watch(ctx, "", noop), ErrPublicationMissing)
	d.exec(t, `CREATE PUBLICATION triggerflow FOR ALL TABLES`)

	d.exec(t, `SELECT pg_drop_replication_slot('`+src.Slot()+`')`)
	require.ErrorIs(t, src.Watch(ctx, "", noop), ErrSlotMissing)

	// Close stops a running Watch.
	src2 := d.open(t, func(c *Config) { c.Slot = d.name + "_2" })
	s = watch(t, src2, "")
	d.exec(t, `INSERT INTO e VALUES (2)`)
	s.take(1) // Watch is running
	require.NoError(t, src2.Close())
	require.ErrorIs(t, s.stop(), ErrClosed)
	require.ErrorIs(t, src2.Watch(ctx, "", noop), ErrClosed)
}

// testSlowEmit: while emit blocks for longer than the server's
// wal_sender_timeout, status updates keep the connection alive.
func testSlowEmit(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t, `CREATE TABLE s (id int PRIMARY KEY)`)
	reg := prometheus.NewPedanticRegistry()
	src := d.open(t, func(c *Config) {
		c.Registerer = reg
		c.DSN += "&wal_sender_timeout=1000"
		c.StandbyTimeout = 100 * time.Millisecond
	})
	d.exec(t, `INSERT INTO s SELECT generate_series(1, 3000)`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	err := src.Watch(ctx, "", func(c watcher.Change) error {
		n++
		if n == 1 {
			// A handler stuck well past wal_sender_timeout: the scenario
			// under test, not synchronisation.
			time.Sleep(2500 * time.Millisecond)
		}
		if n == 3000 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, testutil.ToFloat64(src.metrics.reconnects.WithLabelValues("acme")), "the server dropped the connection")
}

// testMultiTenantColumn: one source, one slot, every tenant's rows, each
// reported with the tenant its row names.
func testMultiTenantColumn(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t,
		`CREATE TABLE orders (id int PRIMARY KEY, tenant text, total int)`,
		`ALTER TABLE orders REPLICA IDENTITY FULL`,
		`CREATE TABLE shared (id int PRIMARY KEY)`,
	)
	reg := prometheus.NewPedanticRegistry()
	src := d.open(t, func(c *Config) {
		c.Tenant = ""
		c.TenantColumn = "tenant"
		// The only test on the cluster with the default slot: it is the
		// name under test.
		c.Slot = ""
		c.Registerer = reg
		c.TenantLabels = tenantlabel.New(2)
	})
	d.exec(t,
		`INSERT INTO orders VALUES (1, 'acme', 10), (2, 'globex', 20), (3, 'initech', 30)`,
		`INSERT INTO shared VALUES (1)`,
		`INSERT INTO orders VALUES (4, NULL, 40), (5, '', 50)`,
		`UPDATE orders SET total = 11 WHERE id = 1`,
		`UPDATE orders SET tenant = 'globex' WHERE id = 1`,
		`UPDATE orders SET tenant = 'acme' WHERE id = 4`,
		`UPDATE orders SET tenant = NULL WHERE id = 3`,
		`UPDATE orders SET total = 31 WHERE id = 3`,
		`DELETE FROM orders WHERE id = 2`,
		`DELETE FROM orders WHERE id = 3`,
		`INSERT INTO orders VALUES (9, 'initech', 90)`,
	)
	got := watchUntil(t, src, "", func(c watcher.Change) bool { return c.DocKey == "9" })
	requireChanges(t, []want{
		{tenant: "acme", typ: trigger.EventCreate, collection: "orders", key: "1", after: `{"id":1,"tenant":"acme","total":10}`},
		{tenant: "globex", typ: trigger.EventCreate, collection: "orders", key: "2", after: `{"id":2,"tenant":"globex","total":20}`},
		{tenant: "initech", typ: trigger.EventCreate, collection: "orders", key: "3", after: `{"id":3,"tenant":"initech","total":30}`},
		{tenant: "acme", typ: trigger.EventUpdate, collection: "orders", key: "1", before: `{"id":1,"tenant":"acme","total":10}`, after: `{"id":1,"tenant":"acme","total":11}`},
		// Moved from acme to globex: gone for one, new to the other.
		{tenant: "acme", typ: trigger.EventDelete, collection: "orders", key: "1", before: `{"id":1,"tenant":"acme","total":11}`},
		{tenant: "globex", typ: trigger.EventCreate, collection: "orders", key: "1", after: `{"id":1,"tenant":"globex","total":11}`},
		// Out of NULL, into NULL.
		{tenant: "acme", typ: trigger.EventCreate, collection: "orders", key: "4", after: `{"id":4,"tenant":"acme","total":40}`},
		{tenant: "initech", typ: trigger.EventDelete, collection: "orders", key: "3", before: `{"id":3,"tenant":"initech","total":30}`},
		{tenant: "globex", typ: trigger.EventDelete, collection: "orders", key: "2", before: `{"id":2,"tenant":"globex","total":20}`},
		{tenant: "initech", typ: trigger.EventCreate, collection: "orders", key: "9", after: `{"id":9,"tenant":"initech","total":90}`},
	}, got)
	require.Equal(t, got[4].Position[:33], got[5].Position[:33], "the move's two changes share its WAL record")

	// The insert of rows 4 and 5, the update of row 3 while NULL, its delete.
	require.EqualValues(t, 4, testutil.ToFloat64(src.metrics.unattributed.WithLabelValues("", "orders")))
	require.EqualValues(t, 4, testutil.ToFloat64(src.metrics.events.WithLabelValues("acme", "orders")))
	require.EqualValues(t, 3, testutil.ToFloat64(src.metrics.events.WithLabelValues("globex", "orders")))
	require.EqualValues(t, 3, testutil.ToFloat64(src.metrics.events.WithLabelValues(tenantlabel.Other, "orders")), "initech is past the label limit")

	require.Equal(t, DefaultSlot, src.Slot())
	require.Equal(t, []string{DefaultSlot}, d.names(t, `SELECT slot_name FROM pg_replication_slots WHERE database = $1`, d.name))
	require.Equal(t, []string{DefaultPublication}, d.names(t, `SELECT pubname FROM pg_publication`))
}

// testTenantPerSchema: a schema per tenant, the same table in each.
func testTenantPerSchema(t *testing.T, pg *testenv.PostgresServer) {
	d := newDB(t, pg)
	d.exec(t,
		`CREATE SCHEMA acme`,
		`CREATE SCHEMA globex`,
		`CREATE TABLE acme.orders (id int PRIMARY KEY, total int)`,
		`CREATE TABLE globex.orders (id int PRIMARY KEY, total int)`,
		`CREATE TABLE public.settings (id int PRIMARY KEY)`,
	)
	all := d.open(t, func(c *Config) {
		c.Tenant = ""
		c.TenantFrom = TenantFromSchema
	})
	globex := d.open(t, func(c *Config) {
		c.Tenant = "globex"
		c.TenantFrom = TenantFromSchema
		c.Slot = d.name + "_globex"
	})
	d.exec(t,
		`INSERT INTO acme.orders VALUES (1, 10)`,
		`INSERT INTO public.settings VALUES (1)`,
		`INSERT INTO globex.orders VALUES (1, 20)`,
		`UPDATE acme.orders SET total = 11`,
		`TRUNCATE globex.orders`,
		`INSERT INTO globex.orders VALUES (9, 0)`,
	)
	got := watchUntil(t, all, "", func(c watcher.Change) bool { return c.DocKey == "9" })
	requireChanges(t, []want{
		{tenant: "acme", typ: trigger.EventCreate, collection: "orders", key: "1", after: `{"id":1,"total":10}`},
		{tenant: "globex", typ: trigger.EventCreate, collection: "orders", key: "1", after: `{"id":1,"total":20}`},
		{tenant: "acme", typ: trigger.EventUpdate, collection: "orders", key: "1", after: `{"id":1,"total":11}`},
		{tenant: "globex", typ: trigger.EventDelete, collection: "orders", problem: true},
		{tenant: "globex", typ: trigger.EventCreate, collection: "orders", key: "9", after: `{"id":9,"total":0}`},
	}, got)

	// A single-tenant source of the same layout sees its schema only.
	require.Equal(t, summary([]watcher.Change{got[1], got[3], got[4]}),
		summary(watchUntil(t, globex, "", func(c watcher.Change) bool { return c.DocKey == "9" })))
}

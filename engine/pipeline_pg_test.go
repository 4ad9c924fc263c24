package engine_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/pgsource"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// TestPipelinePostgres runs the engine over real PostgreSQL logical
// replication: rows with awkward keys become tasks on the right subjects,
// in commit order, with before images for a REPLICA IDENTITY FULL table.
func TestPipelinePostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := testenv.Postgres(t)
	conn := pg.Conn(t)
	_, err := conn.Exec(ctx, `CREATE TABLE users (id text PRIMARY KEY, name text, age int);
		ALTER TABLE users REPLICA IDENTITY FULL;
		CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, vip bool)`)
	require.NoError(t, err)

	nc := testenv.NATS(t).Conn(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	src, err := pgsource.New(ctx, pgsource.Config{DSN: pg.DSN(), Tenant: "acme", Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })

	f, err := engine.NewFactory(
		engine.Deps{Logger: quietLogger(), Source: src, NATS: nc},
		engine.WithConfig(engine.Config{Tenant: "acme", Watcher: watcher.Config{StartFromNow: true}}),
	)
	require.NoError(t, err)
	require.NoError(t, f.Engine().LoadTriggers([]*trigger.Trigger{
		{ID: "users", Tenant: "acme", Collection: "users", URL: "https://hooks.example.com/u"},
		{ID: "vip", Tenant: "acme", Collection: "sales/orders", Condition: "event.document.vip == true", URL: "https://hooks.example.com/o"},
	}))
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- f.Engine().Run(runCtx) }()
	defer func() {
		cancel()
		require.NoError(t, <-errc)
		require.NoError(t, f.Close())
	}()
	waitReady(t, f.Engine(), errc)

	long := strings.Repeat("k", 2048)
	keys := []string{"u.1", "*", ">", "a b", "a/b", "ключ✓", "x", long}
	for _, k := range keys {
		_, err := conn.Exec(ctx, `INSERT INTO users (id, name, age) VALUES ($1, 'n', 1)`, k)
		require.NoError(t, err)
	}
	_, err = conn.Exec(ctx, `UPDATE users SET age = 2 WHERE id = 'x'`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO sales.orders VALUES (1, false), (2, true)`)
	require.NoError(t, err)

	p := &pipeline{nc: nc, js: js}
	msgs := p.tasks(t, len(keys)+2)
	var got []*trigger.DeliveryTask
	for _, m := range msgs {
		task := decode(t, m)
		want, err := streams.BuildSubject("TRIGGERS", task.Tenant, task.Collection, task.DocKey)
		require.NoError(t, err)
		require.Equal(t, want.Name, m.Subject())
		require.Equal(t, want.Hashed, task.SubjectHashed)
		got = append(got, task)
	}
	// Order holds per key on the stream; across keys, the source position
	// carries commit order.
	slices.SortFunc(got, func(a, b *trigger.DeliveryTask) int { return strings.Compare(a.Position, b.Position) })
	for i, k := range keys {
		require.Equal(t, k, got[i].DocKey, "commit order, original keys")
		require.Equal(t, trigger.EventCreate, got[i].Type)
		require.Equal(t, k == long, got[i].SubjectHashed)
	}
	upd := got[len(keys)]
	require.Equal(t, trigger.EventUpdate, upd.Type)
	require.JSONEq(t, `{"id":"x","name":"n","age":1}`, string(upd.Before))
	require.JSONEq(t, `{"id":"x","name":"n","age":2}`, string(upd.After))
	vip := got[len(keys)+1]
	require.Equal(t, "sales/orders", vip.Collection)
	require.Equal(t, "2", vip.DocKey)
	sub, err := streams.BuildSubject("TRIGGERS", "acme", "sales/orders", "2")
	require.NoError(t, err)
	require.Equal(t, "TRIGGERS.acme.sales.orders.Mg", sub.Name)
}

package engine_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// pipeline is one engine over a real SQLite store and embedded NATS.
type pipeline struct {
	store *docstore.Store
	nc    *nats.Conn
	js    jetstream.JetStream
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	store, err := docstore.Open(context.Background(), docstore.Config{Path: filepath.Join(t.TempDir(), "docs.db")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	nc := testenv.NATS(t).Conn(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &pipeline{store: store, nc: nc, js: js}
}

var pipelineTriggers = []*trigger.Trigger{
	{ID: "user-changed", Tenant: "acme", Collection: "users", URL: "https://hooks.example.com/u"},
	{ID: "member-joined", Tenant: "acme", Collection: "chats/*/members", Events: []trigger.EventType{trigger.EventCreate}, URL: "https://hooks.example.com/m"},
	{ID: "vip-orders", Tenant: "acme", Collection: "orders", Condition: `event.document.vip == true`, URL: "https://hooks.example.com/o"},
}

// start runs an engine until the returned stop is called.
func (p *pipeline) start(t *testing.T, wcfg watcher.Config) (stop func()) {
	t.Helper()
	src, err := p.store.Source("acme")
	require.NoError(t, err)
	f, err := engine.NewFactory(
		engine.Deps{Logger: quietLogger(), Source: src, NATS: p.nc},
		engine.WithConfig(engine.Config{Tenant: "acme", Watcher: wcfg}),
	)
	require.NoError(t, err)
	require.NoError(t, f.Engine().LoadTriggers(pipelineTriggers))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Engine().Run(ctx) }()
	waitReady(t, f.Engine(), errc)
	return func() {
		cancel()
		require.NoError(t, <-errc)
		require.NoError(t, f.Close())
	}
}

// waitReady waits until the engine reports ready (or fails to start).
func waitReady(t *testing.T, e engine.TriggerEngine, errc chan error) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for e.Ready(context.Background()) != nil {
		select {
		case err := <-errc:
			t.Fatalf("engine stopped before it was ready: %v", err)
		case <-deadline:
			t.Fatalf("engine not ready: %v", e.Ready(context.Background()))
		case <-tick.C:
		}
	}
}

// tasks reads exactly n messages from the task stream, failing if fewer
// arrive, and then checks no more are there.
func (p *pipeline) tasks(t *testing.T, n int) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	cons, err := p.js.OrderedConsumer(ctx, "TRIGGERS", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var out []jetstream.Msg
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			out = append(out, m)
		}
	}
	require.Len(t, out, n)
	s, err := p.js.Stream(ctx, "TRIGGERS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, info.State.Msgs, "exactly the expected messages, no duplicates")
	return out
}

func decode(t *testing.T, m jetstream.Msg) *trigger.DeliveryTask {
	t.Helper()
	task, err := trigger.DecodeTask(m.Data())
	require.NoError(t, err)
	require.Equal(t, task.EventID, m.Headers().Get(jetstream.MsgIDHeader))
	return task
}

func TestPipelineGoldenSubjects(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	ctx := context.Background()
	stop := p.start(t, watcher.Config{StartFromNow: true})
	defer stop()

	long := strings.Repeat("k", 2048)
	keys := []string{"u.1", "*", ">", "a b", "a/b", "ключ✓", "x", long}
	for _, k := range keys {
		require.NoError(t, p.store.Put(ctx, "acme", "users", k, json.RawMessage(`{"name":"n"}`)))
	}
	require.NoError(t, p.store.Put(ctx, "acme", "chats/42/members", "m.1", json.RawMessage(`{}`)))
	require.NoError(t, p.store.Put(ctx, "acme", "orders", "o1", json.RawMessage(`{"vip":false}`)))
	require.NoError(t, p.store.Put(ctx, "acme", "orders", "o2", json.RawMessage(`{"vip":true}`)))
	require.NoError(t, p.store.Put(ctx, "acme", "unwatched", "z", json.RawMessage(`{}`)))

	msgs := p.tasks(t, len(keys)+2)
	byKey := map[string]*trigger.DeliveryTask{}
	for _, m := range msgs {
		task := decode(t, m)
		want, err := streams.BuildSubject("TRIGGERS", task.Tenant, task.Collection, task.DocKey)
		require.NoError(t, err)
		require.Equal(t, want.Name, m.Subject())
		require.Equal(t, want.Hashed, task.SubjectHashed)
		byKey[task.Collection+"|"+task.DocKey] = task
	}
	for _, k := range keys {
		task := byKey["users|"+k]
		require.NotNil(t, task, "docKey %q arrives with its original value", k)
		require.Equal(t, trigger.EventCreate, task.Type)
		require.Equal(t, k == long, task.SubjectHashed)
		require.JSONEq(t, `{"name":"n"}`, string(task.After))
	}
	require.Equal(t, "member-joined", byKey["chats/42/members|m.1"].TriggerID)
	require.Equal(t, "chats/*/members", byKey["chats/42/members|m.1"].CollectionPattern)
	require.NotNil(t, byKey["orders|o2"], "the condition matched")
	require.Nil(t, byKey["orders|o1"], "the condition did not match")
}

func TestPipelineUpdateDeleteAndRestart(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	ctx := context.Background()
	stop := p.start(t, watcher.Config{StartFromNow: true, CheckpointInterval: 10 * time.Millisecond})
	require.NoError(t, p.store.Put(ctx, "acme", "users", "u1", json.RawMessage(`{"v":1}`)))
	require.NoError(t, p.store.Put(ctx, "acme", "users", "u1", json.RawMessage(`{"v":2}`)))
	require.NoError(t, p.store.Delete(ctx, "acme", "users", "u1"))
	msgs := p.tasks(t, 3)
	stop()

	types := []trigger.EventType{trigger.EventCreate, trigger.EventUpdate, trigger.EventDelete}
	for i, m := range msgs {
		task := decode(t, m)
		require.Equal(t, types[i], task.Type, "one key: stream order is commit order")
	}
	upd := decode(t, msgs[1])
	require.JSONEq(t, `{"v":1}`, string(upd.Before))
	require.JSONEq(t, `{"v":2}`, string(upd.After))
	del := decode(t, msgs[2])
	require.JSONEq(t, `{"v":2}`, string(del.Before))
	require.Nil(t, del.After)

	// A restart resumes from the checkpoint: only the new change is published.
	require.NoError(t, p.store.Put(ctx, "acme", "users", "u2", json.RawMessage(`{}`)))
	stop = p.start(t, watcher.Config{})
	defer stop()
	msgs = p.tasks(t, 4)
	require.Equal(t, "u2", decode(t, msgs[3]).DocKey)
}

func TestPipelineRefusesDriftedStreamInVerifyMode(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	ctx := context.Background()
	_, err := p.js.CreateStream(ctx, jetstream.StreamConfig{Name: "TRIGGERS", Subjects: []string{"TRIGGERS.>"}, MaxAge: time.Hour})
	require.NoError(t, err)

	src, err := p.store.Source("acme")
	require.NoError(t, err)
	f, err := engine.NewFactory(
		engine.Deps{Logger: quietLogger(), Source: src, NATS: p.nc},
		engine.WithConfig(engine.Config{Tenant: "acme", Streams: streams.Config{Provisioning: streams.ProvisionVerify}, Watcher: watcher.Config{StartFromNow: true}}),
	)
	require.NoError(t, err)
	require.NoError(t, f.Engine().LoadTriggers(pipelineTriggers))
	err = f.Engine().Run(ctx)
	require.ErrorContains(t, err, "stream configuration drift")
	require.ErrorContains(t, err, "max age is 1h0m0s, want 168h0m0s")
}

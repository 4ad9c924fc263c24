package deadletter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublishIsIdempotentAndReadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config.NATS{}.WithDefaults()
	js := testenv.NATS(t).JetStream(t, cfg.Streams())

	p := deadletter.NewPublisher(js, cfg.DeadLetterSubject)
	rec := deadletter.Record{
		ID: "evt_1", Stage: deadletter.StageDelivery, Reason: "http-4xx", Detail: "404 Not Found",
		Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1", EventID: "evt_1",
		Task: json.RawMessage(`{"v":1}`),
	}
	require.NoError(t, p.Publish(ctx, rec))
	require.NoError(t, p.Publish(ctx, rec), "a repeat is accepted and dropped by the duplicate window")
	garbage := deadletter.Record{ID: "x", Stage: deadletter.StageIngest, Reason: "invalid-task", Tenant: "bad tenant.*", Payload: []byte{0xff, 0x00}}
	require.NoError(t, p.Publish(ctx, garbage))

	s, err := js.Stream(ctx, cfg.DeadLetterSubject)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, info.State.Msgs)

	m, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "TRIGGERS_DLQ.acme.delivery", m.Subject)
	require.Equal(t, "http-4xx", m.Header.Get(deadletter.HeaderReason))
	got, err := deadletter.Decode(m.Data)
	require.NoError(t, err)
	require.Equal(t, rec.DocKey, got.DocKey)
	require.False(t, got.Time.IsZero())

	m, err = s.GetMsg(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, "TRIGGERS_DLQ._.ingest", m.Subject, "an unsafe tenant cannot reach another subject")
	got, err = deadletter.Decode(m.Data)
	require.NoError(t, err)
	require.Equal(t, []byte{0xff, 0x00}, got.Payload)
}

func TestPublishRejectsIncompleteRecord(t *testing.T) {
	t.Parallel()
	p := deadletter.NewPublisher(nil, "DLQ")
	require.ErrorIs(t, p.Publish(context.Background(), deadletter.Record{ID: "x"}), deadletter.ErrInvalidRecord)
}

func TestFilter(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rec := deadletter.Record{Tenant: "acme", TriggerID: "t1", Reason: "http-4xx", Time: now}
	require.True(t, deadletter.Filter{}.IsZero())
	require.True(t, deadletter.Filter{}.Match(rec))
	require.True(t, deadletter.Filter{Tenant: "acme", TriggerID: "t1", Reason: "http-4xx", Since: now}.Match(rec))
	require.False(t, deadletter.Filter{Tenant: "beta"}.Match(rec))
	require.False(t, deadletter.Filter{TriggerID: "t2"}.Match(rec))
	require.False(t, deadletter.Filter{Reason: "attempts-exhausted"}.Match(rec))
	require.False(t, deadletter.Filter{Since: now.Add(time.Nanosecond)}.Match(rec))
	require.False(t, deadletter.Filter{Tenant: "_"}.Match(rec))
	require.True(t, deadletter.Filter{Tenant: "_"}.Match(deadletter.Record{Tenant: "bad tenant.*"}), "_ is where unsafe tenants are filed")
	require.True(t, deadletter.Filter{Tenant: "_"}.Match(deadletter.Record{}))

	require.Equal(t, "all", deadletter.Filter{}.String())
	since := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	require.Equal(t, "tenant=acme trigger=t1 reason-code=http-4xx since=2026-11-27T09:00:00Z",
		deadletter.Filter{Tenant: "acme", TriggerID: "t1", Reason: "http-4xx", Since: since}.String())
}

func TestFindRemovePurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config.NATS{}.WithDefaults()
	js := testenv.NATS(t).JetStream(t, cfg.Streams())
	stream := cfg.DeadLetterSubject
	p := deadletter.NewPublisher(js, stream)
	for i, r := range []struct{ tenant, reason string }{
		{"acme", "http-4xx"}, {"beta", "http-4xx"}, {"acme", "invalid-task"}, {"acme", "http-4xx"}, {"", "undecodable-change"},
	} {
		require.NoError(t, p.Publish(ctx, deadletter.Record{ID: fmt.Sprint(i), Stage: deadletter.StageDelivery, Reason: r.reason, Tenant: r.tenant}))
	}
	seqs := func(es []deadletter.Entry) []uint64 {
		out := []uint64{}
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	find := func(f deadletter.Filter, limit int) []uint64 {
		t.Helper()
		es, err := deadletter.Find(ctx, js, stream, f, limit)
		require.NoError(t, err)
		return seqs(es)
	}
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, find(deadletter.Filter{}, 0))
	require.Equal(t, []uint64{1, 2}, find(deadletter.Filter{}, 2))
	require.Equal(t, []uint64{1, 3, 4}, find(deadletter.Filter{Tenant: "acme"}, 0))
	require.Equal(t, []uint64{1, 2, 4}, find(deadletter.Filter{Reason: "http-4xx"}, 0))
	require.Equal(t, []uint64{1, 4}, find(deadletter.Filter{Tenant: "acme", Reason: "http-4xx"}, 0))
	require.Equal(t, []uint64{2, 4}, find(deadletter.Filter{Reason: "http-4xx"}, 3)[1:], "the limit counts matches, not records read")
	require.Equal(t, []uint64{5}, find(deadletter.Filter{Tenant: "_"}, 0))

	n, err := deadletter.Remove(ctx, js, stream, []uint64{1, 3})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, err = deadletter.Get(ctx, js, stream, 1)
	require.ErrorIs(t, err, deadletter.ErrNoRecord)
	n, err = deadletter.Remove(ctx, js, stream, []uint64{2, 3, 4})
	require.ErrorIs(t, err, deadletter.ErrNoRecord)
	require.Equal(t, 1, n, "removed 2, then found 3 gone")
	require.Equal(t, []uint64{4, 5}, find(deadletter.Filter{}, 0))

	require.NoError(t, p.Publish(ctx, deadletter.Record{ID: "late", Stage: deadletter.StageWatch, Reason: "undecodable-change", Tenant: "acme"}))
	require.NoError(t, deadletter.PurgeThrough(ctx, js, stream, 5))
	require.Equal(t, []uint64{6}, find(deadletter.Filter{}, 0), "a record written after the bound stays")
}

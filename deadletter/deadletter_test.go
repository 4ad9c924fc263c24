package deadletter_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublishIsIdempotentAndReadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, err := jetstream.New(testenv.NATS(t).Conn(t))
	require.NoError(t, err)
	cfg := config.NATS{}.WithDefaults()
	require.NoError(t, streams.Ensure(ctx, js, cfg))

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

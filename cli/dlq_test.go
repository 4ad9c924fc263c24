package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestDLQListShowRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t))
	require.NoError(t, err)
	cfg := config.NATS{}.WithDefaults()
	require.NoError(t, streams.Ensure(ctx, js, cfg))

	task := &trigger.DeliveryTask{V: trigger.TaskVersion, EventID: trigger.NewEventID("acme", "t1", "orders", "o.1", "p1"),
		Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1", Type: trigger.EventCreate,
		Position: "p1", CommitTime: time.Now().UTC(), URL: "https://hooks.example.com/x"}
	body, err := task.Encode()
	require.NoError(t, err)
	dl := deadletter.NewPublisher(js, cfg.DeadLetterSubject)
	require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: task.EventID, Stage: deadletter.StageDelivery, Reason: "http-4xx", Detail: "404", Tenant: "acme", TriggerID: "t1", Collection: "orders", DocKey: "o.1", EventID: task.EventID, Task: body}))
	require.NoError(t, dl.Publish(ctx, deadletter.Record{ID: "garbage", Stage: deadletter.StageIngest, Reason: "invalid-task", Payload: []byte("{")}))

	code, out, errOut := run("dlq", "list", "--nats", ns.URL())
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "http-4xx")
	require.Contains(t, out, "invalid-task")

	code, out, errOut = run("dlq", "show", "--nats", ns.URL(), "1")
	require.Equal(t, 0, code, errOut)
	var rec deadletter.Record
	require.NoError(t, json.Unmarshal([]byte(out), &rec))
	require.Equal(t, "o.1", rec.DocKey)

	code, _, errOut = run("dlq", "redrive", "--nats", ns.URL(), "--actor", "ada", "--reason", "endpoint fixed", "2")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no task to redrive")

	code, out, errOut = run("dlq", "redrive", "--nats", ns.URL(), "--actor", "ada", "--reason", "endpoint fixed", "1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "redrove 1")

	// The task is back on the task stream, marked as a redrive, with a new
	// dedupe key but the same event id, and the dead letter is gone.
	s, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	m, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "TRIGGERS.acme.orders.by4x", m.Subject)
	got, err := trigger.DecodeTask(m.Data)
	require.NoError(t, err)
	require.Equal(t, task.EventID, got.EventID)
	require.EqualValues(t, 1, got.Redrive)
	require.Equal(t, got.DedupeKey(), m.Header.Get(jetstream.MsgIDHeader))
	require.NotEqual(t, task.EventID, got.DedupeKey())
	entries, err := deadletter.List(ctx, js, cfg.DeadLetterSubject, "", 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "invalid-task", entries[0].Record.Reason)

	recs, err := audit.List(ctx, js, cfg.AuditStream, "", 0)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the redrive is audited; the refused one changed nothing")
	require.Equal(t, audit.ActionRedrive, recs[0].Action)
	require.Equal(t, "ada", recs[0].Actor)
	require.Equal(t, "endpoint fixed", recs[0].Reason)
	require.True(t, strings.Contains(recs[0].Key, "seq 1"))
}

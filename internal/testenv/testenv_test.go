package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv := testenv.NATS(t)
	reconnected := make(chan struct{}, 1)
	nc := srv.Conn(t, nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	}))
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "SMOKE",
		Subjects: []string{"smoke.>"},
		Storage:  jetstream.FileStorage,
	})
	require.NoError(t, err)
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:   "smoke",
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)

	_, err = js.Publish(ctx, "smoke.before", []byte("before"))
	require.NoError(t, err)
	requireFetch(ctx, t, cons, "before")

	url := srv.URL()
	srv.Restart(t)
	require.Equal(t, url, srv.URL(), "restart must keep the URL so clients can reconnect")
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("client did not reconnect after restart")
	}

	// The stream kept its (acked, limits-retained) message, and the durable
	// consumer kept its ack floor, so nothing is redelivered.
	stream, err = js.Stream(ctx, "SMOKE")
	require.NoError(t, err)
	require.EqualValues(t, 1, stream.CachedInfo().State.Msgs)
	cons, err = stream.Consumer(ctx, "smoke")
	require.NoError(t, err)
	require.EqualValues(t, 1, cons.CachedInfo().AckFloor.Stream)

	_, err = js.Publish(ctx, "smoke.after", []byte("after"))
	require.NoError(t, err)
	requireFetch(ctx, t, cons, "after")
}

// requireFetch pulls exactly one message, checks its payload and acks it,
// waiting for the server to confirm the ack.
func requireFetch(ctx context.Context, t *testing.T, cons jetstream.Consumer, want string) {
	t.Helper()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []string
	for msg := range batch.Messages() {
		got = append(got, string(msg.Data()))
		require.NoError(t, msg.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	require.Equal(t, []string{want}, got)
}

func TestTemporalSearchAttributesAndRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	srv := testenv.Temporal(t)
	c := srv.Client(t)

	const taskQueue = "testenv-smoke"
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(awaitSignal, workflow.RegisterOptions{Name: "awaitSignal"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	// The product defines these keys in its own packages; testenv registers
	// the same names with the server.
	var (
		tenantID   = temporal.NewSearchAttributeKeyKeyword("TenantId")
		triggerID  = temporal.NewSearchAttributeKeyKeyword("TriggerId")
		collection = temporal.NewSearchAttributeKeyKeyword("Collection")
		docKey     = temporal.NewSearchAttributeKeyKeyword("DocKey")
	)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        "smoke-" + t.Name(),
		TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			tenantID.ValueSet("acme"),
			triggerID.ValueSet("trg-1"),
			collection.ValueSet("orders"),
			docKey.ValueSet("order-42"),
		),
	}, "awaitSignal")
	require.NoError(t, err)

	desc, err := c.DescribeWorkflow(ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	for key, want := range map[temporal.SearchAttributeKeyKeyword]string{
		tenantID: "acme", triggerID: "trg-1", collection: "orders", docKey: "order-42",
	} {
		got, ok := desc.TypedSearchAttributes.GetKeyword(key)
		assert.True(t, ok, key.GetName())
		assert.Equal(t, want, got, key.GetName())
	}

	// Visibility is updated asynchronously after the start is acknowledged.
	require.Eventually(t, func() bool {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: `TenantId = "acme" AND DocKey = "order-42"`,
		})
		return err == nil && len(resp.GetExecutions()) == 1
	}, 10*time.Second, 50*time.Millisecond, "workflow not listed by its search attributes")

	// A running workflow and its worker ride out a server restart.
	srv.Restart(t)
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "go", "after restart"))
	var result string
	require.NoError(t, run.Get(ctx, &result))
	require.Equal(t, "after restart", result)
}

// awaitSignal completes with the payload of its first "go" signal.
func awaitSignal(ctx workflow.Context) (string, error) {
	var payload string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &payload)
	return payload, nil
}

func TestPostgresLogicalReplication(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pg := testenv.Postgres(t)
	conn := pg.Conn(t)

	var walLevel string
	require.NoError(t, conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel))
	require.Equal(t, "logical", walLevel)

	var slot string
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT slot_name FROM pg_create_logical_replication_slot('smoke', 'pgoutput')").Scan(&slot))
	require.Equal(t, "smoke", slot)

	// A replication-mode connection to an isolated database proves pg_hba
	// lets the walsender in.
	dsn := pg.CreateDatabase(t, "isolated")
	pool := pg.PoolFor(t, dsn)
	require.NoError(t, pool.Ping(ctx))
	repl, err := pgconn.Connect(ctx, dsn+"&replication=database")
	require.NoError(t, err)
	defer repl.Close(ctx)
	results, err := repl.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.Len(t, results[0].Rows, 1)
	require.Equal(t, "isolated", string(results[0].Rows[0][3]), "IDENTIFY_SYSTEM dbname column")
}

// TestStartPostgresWithoutTB is the constructor programs use: the caller
// owns the cluster, and Close stops it and removes its files.
func TestStartPostgresWithoutTB(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pg, err := testenv.StartPostgres(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if mt, ok := errors.AsType[*testenv.MissingToolError](err); ok {
		testenv.MissingTool(t, mt.Name, mt.Reason, mt.How)
	}
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			require.NoError(t, pg.Close())
		}
	})

	conn, err := pgx.Connect(ctx, pg.DSN())
	require.NoError(t, err)
	var walLevel string
	require.NoError(t, conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel))
	require.Equal(t, "logical", walLevel)
	require.NoError(t, conn.Close(ctx))

	pid, err := pg.PID()
	require.NoError(t, err)
	require.DirExists(t, fmt.Sprintf("/proc/%d", pid), "the postmaster runs")

	logFile := pg.LogFile()
	require.FileExists(t, logFile)
	require.NoError(t, pg.Close())
	closed = true
	require.NoFileExists(t, logFile, "Close removes the cluster's directory")
	require.NoError(t, pg.Close(), "closing twice is a no-op")
	_, err = pgx.Connect(ctx, pg.DSN())
	require.Error(t, err, "the server is stopped")
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	rec := testenv.Recorder(t, testenv.AnyRequests())
	rec.Respond(func(r *testenv.Request) testenv.Response {
		if r.Seq == 1 {
			return testenv.Response{
				Status:  http.StatusInternalServerError,
				Headers: http.Header{"Retry-After": {"7"}},
				Body:    []byte("try later"),
			}
		}
		return testenv.Response{}
	})
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)

	post := func(body string) *http.Response {
		t.Helper()
		resp, err := hc.Post(rec.URL()+"/hooks/orders", "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	first := post(`{"n":1}`)
	second := post(`{"n":2}`)

	got := rec.WaitFor(t, 2, 5*time.Second)
	for i, r := range got {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/hooks/orders", r.Path)
		assert.Equal(t, "application/json", r.Headers.Get("Content-Type"))
		assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i+1), string(r.Body))
		assert.False(t, r.ReceivedAt.IsZero())
	}
	assert.False(t, got[1].ReceivedAt.Before(got[0].ReceivedAt))

	assert.Equal(t, http.StatusOK, first.StatusCode)
	assert.Equal(t, http.StatusInternalServerError, second.StatusCode)
	assert.Equal(t, "7", second.Header.Get("Retry-After"))
	body, err := io.ReadAll(second.Body)
	require.NoError(t, err)
	assert.Equal(t, "try later", string(body))
}

func TestRecorderDelayEndsWhenCallerGivesUp(t *testing.T) {
	t.Parallel()
	rec := testenv.Recorder(t, testenv.AnyRequests())
	rec.Respond(func(*testenv.Request) testenv.Response {
		return testenv.Response{Delay: time.Hour}
	})
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 100 * time.Millisecond}
	t.Cleanup(hc.CloseIdleConnections)

	_, err := hc.Get(rec.URL() + "/slow")
	require.Error(t, err, "the delayed response must time the caller out")
	require.Len(t, rec.WaitFor(t, 1, 5*time.Second), 1)
	// Cleanup closes the server; it would block for the full hour if the
	// handler ignored the cancelled request.
}

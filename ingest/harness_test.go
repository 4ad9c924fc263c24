package ingest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait on the real servers: generous, because
// the machine running the suite may be busy, but finite.
const waitTimeout = 90 * time.Second

// harness is one test's world: its own embedded NATS with the
// Triggerflow streams, a tenant and task queue of its own on the shared
// Temporal dev server, and an ingest configuration to tune.
type harness struct {
	t      testing.TB
	ts     *testenv.TemporalServer
	nc     *nats.Conn
	js     jetstream.JetStream
	tc     client.Client
	cfg    ingest.Config
	tenant string
	seq    int // position counter for task events
	// natsURL lets a test connect a replica of its own.
	natsURL string
}

func newHarness(t testing.TB, ts *testenv.TemporalServer) *harness {
	t.Helper()
	ns := testenv.NATS(t)
	nc := ns.Conn(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(t.Name()))
	tenant := "t-" + hex.EncodeToString(sum[:6])
	h := &harness{t: t, ts: ts, nc: nc, js: js, tenant: tenant, natsURL: ns.URL()}
	h.cfg = ingest.Config{
		TaskQueue: "ingest-" + tenant,
		AckWait:   5 * time.Second,
		// Tests restart quickly after Temporal comes back.
		RetryMax: 500 * time.Millisecond,
	}
	if ts != nil {
		h.tc = ts.Client(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, streams.Ensure(ctx, js, streams.Config{Stream: h.cfg.WithDefaults().Stream}.WithDefaults()))
	return h
}

// task returns the next task for (trigger, docKey) in collection "orders".
func (h *harness) task(triggerID, docKey string) *trigger.DeliveryTask {
	h.seq++
	pos := strconv.Itoa(h.seq)
	return &trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: trigger.NewEventID(h.tenant, triggerID, "orders", docKey, pos),
		Tenant: h.tenant, TriggerID: triggerID, Collection: "orders", DocKey: docKey,
		Type: trigger.EventType("update"), After: []byte(`{"n":` + pos + `}`), Position: pos,
		CommitTime: time.Now().UTC(), URL: "http://127.0.0.1:1/hook",
	}
}

func (h *harness) subject(t *trigger.DeliveryTask) string {
	s, err := streams.BuildSubject(h.cfg.WithDefaults().Stream, t.Tenant, t.Collection, t.DocKey)
	require.NoError(h.t, err)
	t.SubjectHashed = s.Hashed
	return s.Name
}

func (h *harness) publish(tasks ...*trigger.DeliveryTask) {
	h.t.Helper()
	for _, task := range tasks {
		subject := h.subject(task)
		data, err := task.Encode()
		require.NoError(h.t, err)
		h.publishRaw(subject, data, task.EventID)
	}
}

func (h *harness) publishRaw(subject string, data []byte, msgID string) uint64 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := h.js.Publish(ctx, subject, data, opts...)
	require.NoError(h.t, err)
	return ack.Sequence
}

// instance is one running Ingester with its step log and metrics.
type instance struct {
	in    *ingest.Ingester
	steps *stepLog
	reg   *prometheus.Registry
}

type startOpts struct {
	// js is the replica's own connection (default: the harness's), so a
	// test can cut one replica off NATS as a crash would.
	js   jetstream.JetStream
	dl   deadletter.Sink
	log  io.Writer
	opts []ingest.Option
}

func (h *harness) start(so startOpts) *instance {
	h.t.Helper()
	return h.startWith(h.tc, so)
}

// startWith starts an Ingester that hands off through tc.
func (h *harness) startWith(tc ingest.TemporalClient, so startOpts) *instance {
	h.t.Helper()
	steps := newStepLog()
	reg := prometheus.NewRegistry()
	dl := so.dl
	if dl == nil {
		dl = deadletter.NewPublisher(h.js, streams.DefaultStream+"_DLQ")
	}
	w := so.log
	if w == nil {
		w = testenv.LogWriter(h.t)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := append([]ingest.Option{ingest.WithSteps(steps.add)}, so.opts...)
	js := so.js
	if js == nil {
		js = h.js
	}
	cfg := h.cfg
	cfg.DeadLetters, cfg.Logger, cfg.Registerer = dl, log, reg
	in, err := ingest.New(cfg, js, tc, opts...)
	require.NoError(h.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(h.t, in.Start(ctx))
	h.t.Cleanup(func() { _ = in.Close() })
	return &instance{in: in, steps: steps, reg: reg}
}

// worker runs the stand-in delivery workflow on the harness's task queue.
func (h *harness) worker() {
	h.t.Helper()
	w := worker.New(h.tc, h.cfg.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(standInDelivery, workflow.RegisterOptions{Name: workflows.DeliveryWorkflow})
	require.NoError(h.t, w.Start())
	h.t.Cleanup(w.Stop)
}

// deliveryWorker runs the real delivery workflow and webhook activities
// on the harness's task queue.
func (h *harness) deliveryWorker(quiet time.Duration) {
	h.t.Helper()
	acts, err := activities.New(activities.Config{
		Egress:      egress.Policy{AllowLoopback: true},
		DeadLetters: deadletter.NewPublisher(h.js, streams.DefaultStream+"_DLQ"),
	}, activities.Deps{})
	require.NoError(h.t, err)
	w := worker.New(h.tc, h.cfg.TaskQueue, worker.Options{})
	workflows.Register(w, acts, workflows.Options{QuietPeriod: quiet})
	require.NoError(h.t, w.Start())
	h.t.Cleanup(w.Stop)
}

// coldDelivery runs the real delivery workflow and returns a receiver and
// a task for a new key that it receives: the key's run closes as soon as
// it delivered.
func (h *harness) coldDelivery(triggerID string) (*testenv.WebhookRecorder, *trigger.DeliveryTask) {
	h.t.Helper()
	rec := testenv.Recorder(h.t)
	h.deliveryWorker(time.Minute)
	task := h.task(triggerID, "doc")
	task.URL = rec.URL() + "/hooks/doc"
	return rec, task
}

// standInDelivery stands in for the real delivery workflow: it records the
// event id of every task it is started with or signalled, duplicates
// included, and answers the "events" query with them. It never closes.
func standInDelivery(ctx workflow.Context, p workflows.DeliveryParams) error {
	var events []string
	for _, t := range p.Pending {
		events = append(events, t.EventID)
	}
	if err := workflow.SetQueryHandler(ctx, "events", func() ([]string, error) { return events, nil }); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, workflows.TaskSignal)
	for {
		var raw json.RawMessage
		ch.Receive(ctx, &raw)
		ids, err := eventIDs(raw)
		if err != nil {
			return err
		}
		events = append(events, ids...)
	}
}

// eventIDs are the event ids of a task signal's tasks, in order.
func eventIDs(raw json.RawMessage) ([]string, error) {
	tasks, err := workflows.SplitTaskSignal(raw)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, one := range tasks {
		var task trigger.DeliveryTask
		if err := json.Unmarshal(one, &task); err != nil {
			return nil, err
		}
		ids = append(ids, task.EventID)
	}
	return ids, nil
}

// queryEvents polls the stand-in workflow until it has seen want events;
// the worker processes signals asynchronously.
func (h *harness) queryEvents(id string, want int) []string {
	h.t.Helper()
	var got []string
	testenv.Eventually(h.t, waitTimeout, fmt.Sprintf("workflow %s to have processed %d events", id, want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := h.tc.QueryWorkflow(ctx, id, "", "events")
		if err != nil {
			return err
		}
		got = nil
		if err := v.Get(&got); err != nil {
			return err
		}
		if len(got) < want {
			return fmt.Errorf("%d events so far", len(got))
		}
		return nil
	})
	return got
}

// handedOff returns the event ids of the tasks in the latest run's history,
// in history order (those it started with, then its task signals): what
// Temporal durably has, with or without a worker.
func (h *harness) handedOff(id string) []string {
	h.t.Helper()
	started, signalled := h.handOffs(id)
	return append(started, signalled...)
}

// handOffs returns the event ids of the tasks the latest run started with
// and of those signalled to it, in history order.
func (h *harness) handOffs(id string) (started, signalled []string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc := converter.GetDefaultDataConverter()
	iter := h.tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(h.t, err)
		if attrs := ev.GetWorkflowExecutionStartedEventAttributes(); attrs != nil {
			var p workflows.DeliveryParams
			require.NoError(h.t, dc.FromPayloads(attrs.GetInput(), &p))
			for _, t := range p.Pending {
				started = append(started, t.EventID)
			}
			continue
		}
		attrs := ev.GetWorkflowExecutionSignaledEventAttributes()
		if attrs == nil || attrs.GetSignalName() != workflows.TaskSignal {
			continue
		}
		var raw json.RawMessage
		require.NoError(h.t, dc.FromPayloads(attrs.GetInput(), &raw))
		got, err := eventIDs(raw)
		require.NoError(h.t, err)
		signalled = append(signalled, got...)
	}
	return started, signalled
}

func (h *harness) wfID(task *trigger.DeliveryTask) string {
	return ingest.WorkflowID(task.Tenant, task.TriggerID, task.Collection, task.DocKey)
}

func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := h.cfg.WithDefaults()
	c, err := h.js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	require.NoError(h.t, err)
	info, err := c.Info(ctx)
	require.NoError(h.t, err)
	return info
}

// deadLetters reads every record on the dead-letter stream.
func (h *harness) deadLetters(want int) []deadletter.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := streams.DefaultStream + "_DLQ"
	c, err := h.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	require.NoError(h.t, err)
	var recs []deadletter.Record
	for len(recs) < want {
		msg, err := c.Next(jetstream.FetchMaxWait(20 * time.Second))
		require.NoError(h.t, err, "after %d of %d dead letters", len(recs), want)
		rec, err := deadletter.Decode(msg.Data())
		require.NoError(h.t, err)
		require.Equal(h.t, rec.Reason, msg.Headers().Get(deadletter.HeaderReason))
		recs = append(recs, rec)
	}
	return recs
}

// stepLog records an Ingester's steps and wakes waiters on each.
type stepLog struct {
	mu      sync.Mutex
	steps   []timedStep
	changed chan struct{}
}

type timedStep struct {
	ingest.Step
	at time.Time
}

func newStepLog() *stepLog { return &stepLog{changed: make(chan struct{})} }

func (s *stepLog) add(st ingest.Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, timedStep{st, time.Now()})
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *stepLog) snapshot() []timedStep {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]timedStep(nil), s.steps...)
}

func (s *stepLog) count(kind string) int { return len(s.of(kind)) }

func (s *stepLog) of(kind string) []timedStep {
	var out []timedStep
	for _, st := range s.snapshot() {
		if st.Kind == kind {
			out = append(out, st)
		}
	}
	return out
}

// waitFor blocks until cond holds over the steps so far, waking on every
// new step.
func (s *stepLog) waitFor(t testing.TB, what string, cond func([]timedStep) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.steps)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			kinds := map[string]int{}
			for _, st := range s.snapshot() {
				kinds[st.Kind]++
			}
			t.Fatalf("timed out waiting for %s (steps so far: %v)", what, kinds)
		}
	}
}

func (s *stepLog) waitCount(t testing.TB, kind string, n int) {
	t.Helper()
	s.waitFor(t, fmt.Sprintf("%d %q steps", n, kind), func(steps []timedStep) bool {
		c := 0
		for _, st := range steps {
			if st.Kind == kind {
				c++
			}
		}
		return c >= n
	})
}

// firstOccurrences drops repeated ids: the workflow dedupes by event id,
// so order is judged on each id's first arrival.
func firstOccurrences(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

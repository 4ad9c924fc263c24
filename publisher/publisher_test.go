package publisher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats.go's ObjectStore.Put may start its reconnect listener
		// after Put cleaned up, and it then waits for good.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// harness is a publisher on a fresh embedded NATS with the streams
// provisioned as production does.
type harness struct {
	srv  *testenv.NATSServer
	js   jetstream.JetStream
	nats config.NATS
	reg  *prometheus.Registry
	warn chan struct{} // gets a value on every warning the publisher logs
	pub  *publisher.Publisher
}

func newHarness(t testing.TB, adjust func(*publisher.Config)) *harness {
	t.Helper()
	return buildHarness(t, adjust, nil)
}

// buildHarness is newHarness with a second hook, streamsReady, that runs
// once the streams and buckets exist, before the publisher is made.
func buildHarness(t testing.TB, adjust func(*publisher.Config), streamsReady func(*harness, *publisher.Config)) *harness {
	t.Helper()
	h := &harness{srv: testenv.NATS(t), nats: config.NATS{}.WithDefaults(), reg: prometheus.NewRegistry(), warn: make(chan struct{}, 1)}
	cfg := publisher.Config{
		Stream:       h.nats.Stream,
		AckTimeout:   2 * time.Second,
		RetryInitial: 10 * time.Millisecond,
		RetryMax:     200 * time.Millisecond,
		Registerer:   h.reg,
		Logger:       slog.New(&testHandler{t: t, warn: h.warn}),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	var err error
	h.js, err = jetstream.New(h.srv.Conn(t), cfg.JetStreamOptions()...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, streams.Ensure(ctx, h.js, h.nats.Streams()))
	if streamsReady != nil {
		streamsReady(h, &cfg)
	}
	cfg.DeadLetters = deadletter.NewPublisher(h.js, h.nats.DeadLetterSubject)
	h.pub, err = publisher.New(h.js, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.pub.Close()) })
	return h
}

func task(docKey, position string) *trigger.DeliveryTask {
	return taskIn("users", docKey, position)
}

func taskIn(collection, docKey, position string) *trigger.DeliveryTask {
	return &trigger.DeliveryTask{
		V:          trigger.TaskVersion,
		EventID:    trigger.NewEventID("acme", "t1", collection, docKey, position),
		Tenant:     "acme",
		TriggerID:  "t1",
		Collection: collection,
		DocKey:     docKey,
		Type:       trigger.EventUpdate,
		After:      json.RawMessage(`{"n":1}`),
		Position:   position,
		CommitTime: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		URL:        "https://hooks.example/t1",
	}
}

// outcomes records every done call by event id.
type outcomes struct {
	mu    sync.Mutex
	calls map[string][]error
	n     chan struct{} // one value per call
}

func newOutcomes(capacity int) *outcomes {
	return &outcomes{calls: map[string][]error{}, n: make(chan struct{}, capacity)}
}

func (o *outcomes) done(eventID string) func(error) {
	return func(err error) {
		o.mu.Lock()
		o.calls[eventID] = append(o.calls[eventID], err)
		o.mu.Unlock()
		o.n <- struct{}{}
	}
}

func (o *outcomes) snapshot() map[string][]error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.calls)
}

// publishAndWait publishes every task and waits for all of them to settle.
func (h *harness) publishAndWait(t *testing.T, tasks ...*trigger.DeliveryTask) *outcomes {
	t.Helper()
	ctx := context.Background()
	o := newOutcomes(len(tasks))
	for _, tk := range tasks {
		require.NoError(t, h.pub.Publish(ctx, tk, o.done(tk.EventID)))
	}
	require.NoError(t, h.pub.Flush(ctx))
	calls := o.snapshot()
	require.Len(t, calls, len(uniqueIDs(tasks)))
	for id, errs := range calls {
		for _, err := range errs {
			require.NoError(t, err, id)
		}
	}
	return o
}

func uniqueIDs(tasks []*trigger.DeliveryTask) map[string]bool {
	ids := map[string]bool{}
	for _, tk := range tasks {
		ids[tk.EventID] = true
	}
	return ids
}

// messages reads every message of a stream in stream order.
func (h *harness) messages(t *testing.T, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

func TestGoldenSubjectsRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	long := strings.Repeat("k", 2048)
	encLong, err := streams.EncodeDocKey(long)
	require.NoError(t, err)
	golden := []struct {
		docKey, subject string
		hashed          bool
	}{
		{"a.b", "TRIGGERS.acme.users.YS5i", false},
		{"*", "TRIGGERS.acme.users.Kg", false},
		{">", "TRIGGERS.acme.users.Pg", false},
		{"a b", "TRIGGERS.acme.users.YSBi", false},
		{"a/b", "TRIGGERS.acme.users.YS9i", false},
		{"ключ✓", "TRIGGERS.acme.users.0LrQu9GO0YfinJM", false},
		{"x", "TRIGGERS.acme.users.eA", false},
		{long, "TRIGGERS.acme.users." + streams.HashToken(encLong), true},
	}
	var tasks []*trigger.DeliveryTask
	for i, g := range golden {
		tasks = append(tasks, task(g.docKey, fmt.Sprintf("%010d", i)))
	}
	h.publishAndWait(t, tasks...)

	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, len(golden))
	bySubject := map[string]*jetstream.RawStreamMsg{}
	for _, m := range msgs {
		bySubject[m.Subject] = m
	}
	for i, g := range golden {
		m := bySubject[g.subject]
		require.NotNil(t, m, "no message on %s", g.subject)
		got, err := trigger.DecodeTask(m.Data)
		require.NoError(t, err)
		require.Equal(t, g.docKey, got.DocKey, "the payload always carries the real docKey")
		require.Equal(t, g.hashed, got.SubjectHashed)
		require.Equal(t, tasks[i].EventID, m.Header.Get(jetstream.MsgIDHeader))
		p, err := streams.ParseSubject(m.Subject)
		require.NoError(t, err)
		if !g.hashed {
			k, err := streams.DecodeDocKey(p.DocKeyToken)
			require.NoError(t, err)
			require.Equal(t, g.docKey, k)
		}
	}
	require.True(t, tasks[len(tasks)-1].SubjectHashed, "Publish flags the task it was given")
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_hashed_subjects_total", prometheus.Labels{"tenant": "acme", "collection": "users"}))
	require.Equal(t, 7.0, testenv.Metric(t, h.reg, "triggerflow_publisher_published_total", prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "false"}))
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_published_total", prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "true"}))
}

func TestNestedCollectionSubject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.publishAndWait(t, taskIn("chats/42/members", "m-1", "1"))
	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, 1)
	require.Equal(t, "TRIGGERS.acme.chats.42.members.bS0x", msgs[0].Subject)
}

// TestPublishedSubjectsNearTheLimit publishes tasks whose plain subjects
// are 1023–1026 bytes: every subject on the stream is within
// MaxSubjectBytes, and the payload is flagged subjectHashed exactly when
// the plain subject would not have fitted.
func TestPublishedSubjectsNearTheLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	docKey := strings.Repeat("k", 750) // 1000 characters encoded
	enc, err := streams.EncodeDocKey(docKey)
	require.NoError(t, err)
	want := map[string]bool{} // subject → hashed
	var tasks []*trigger.DeliveryTask
	for i, plainLen := range []int{1023, 1024, 1025, 1026} {
		collection := strings.Repeat("c", plainLen-len("TRIGGERS.acme..")-len(enc))
		prefix := "TRIGGERS.acme." + collection + "."
		require.Len(t, prefix+enc, plainLen)
		if plainLen > streams.MaxSubjectBytes {
			want[prefix+streams.HashToken(enc)] = true
		} else {
			want[prefix+enc] = false
		}
		tasks = append(tasks, taskIn(collection, docKey, fmt.Sprint(i)))
	}
	h.publishAndWait(t, tasks...)

	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, len(tasks))
	for _, m := range msgs {
		require.LessOrEqual(t, len(m.Subject), streams.MaxSubjectBytes, "a %d-byte subject reached the stream", len(m.Subject))
		hashed, ok := want[m.Subject]
		require.True(t, ok, "unexpected subject of %d bytes", len(m.Subject))
		got, err := trigger.DecodeTask(m.Data)
		require.NoError(t, err)
		require.Equal(t, hashed, got.SubjectHashed, "subjectHashed on a %d-byte subject", len(m.Subject))
		require.Equal(t, docKey, got.DocKey, "the payload always carries the real docKey")
		delete(want, m.Subject)
	}
	require.Empty(t, want, "subjects missing from the stream")
}

func TestDuplicateEventIDIsStoredOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.publishAndWait(t, task("k1", "7"))
	h.publishAndWait(t, task("k1", "7"))
	require.Len(t, h.messages(t, h.nats.Stream), 1)
	labels := prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "false"}
	require.Equal(t, 2.0, testenv.Metric(t, h.reg, "triggerflow_publisher_published_total", labels))
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_duplicates_total", labels))
}

func TestUnpublishableTasksAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *publisher.Config) { c.HashGuard = new(false); c.MaxPayload = 4 << 10 })

	oversize := task("big", "1")
	oversize.After = json.RawMessage(`{"blob":"` + strings.Repeat("x", 8<<10) + `"}`)
	tooLong := task(strings.Repeat("k", 2048), "2")
	badTenant := task("k", "3")
	badTenant.Tenant = "acme.*"
	badCollection := taskIn("users//x", "k", "4")
	invalid := task("k", "5")
	invalid.URL = ""
	ok := task("fine", "6")
	h.publishAndWait(t, oversize, tooLong, badTenant, badCollection, invalid, ok)

	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, 1, "only the valid task reaches the task stream")
	require.Equal(t, "TRIGGERS.acme.users.ZmluZQ", msgs[0].Subject)

	records := map[string]deadletter.Record{}
	for _, m := range h.messages(t, h.nats.DeadLetterSubject) {
		rec, err := deadletter.Decode(m.Data)
		require.NoError(t, err)
		require.Equal(t, deadletter.StagePublish, rec.Stage)
		records[rec.EventID] = rec
	}
	require.Len(t, records, 5)

	rec := records[oversize.EventID]
	require.Equal(t, publisher.ReasonOversize, rec.Reason)
	require.Empty(t, rec.Task, "an oversize task is recorded without its payload")
	require.Contains(t, rec.Detail, "limit is 4096")
	require.Equal(t, "big", rec.DocKey)
	require.Equal(t, "TRIGGERS.acme.users.Ymln", rec.Subject)

	rec = records[tooLong.EventID]
	require.Equal(t, publisher.ReasonSubjectTooLong, rec.Reason)
	require.NotEmpty(t, rec.Task, "a task that fits is kept for redrive")
	redrive, err := trigger.DecodeTask(rec.Task)
	require.NoError(t, err)
	require.Equal(t, tooLong.DocKey, redrive.DocKey)

	require.Equal(t, publisher.ReasonInvalidSubject, records[badTenant.EventID].Reason)
	require.Equal(t, publisher.ReasonInvalidSubject, records[badCollection.EventID].Reason)
	require.Equal(t, publisher.ReasonInvalidTask, records[invalid.EventID].Reason)

	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_dead_lettered_total", prometheus.Labels{"tenant": "acme", "collection": "users", "reason": "oversize"}))
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_dead_lettered_total", prometheus.Labels{"tenant": "_invalid", "collection": "users", "reason": "invalid-subject"}))
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_dead_lettered_total", prometheus.Labels{"tenant": "acme", "collection": "_invalid", "reason": "invalid-subject"}))
}

// TestNATSRestartLosesNothingAndKeepsSubjectOrder shuts the server down
// while tasks are in flight, keeps publishing into the outage until the
// window is full, and restarts it: every task must end up on the stream
// exactly once, each subject's tasks in Publish order, and every done must
// be called exactly once with nil.
func TestNATSRestartLosesNothingAndKeepsSubjectOrder(t *testing.T) {
	t.Parallel()
	const (
		keys   = 16
		perKey = 40
		total  = keys * perKey
		window = 64
		outage = total / 4 // tasks settled before the server goes down
		// Tasks submitted before it comes back: enough to fill the window
		// during the outage, so Publish blocks until the restart.
		restart = outage + window
	)
	h := newHarness(t, func(c *publisher.Config) { c.MaxPending = window })
	o := newOutcomes(total)

	var tasks []*trigger.DeliveryTask
	for i := range total {
		// Position i is global, so per key the positions increase in
		// Publish order.
		tasks = append(tasks, task(fmt.Sprintf("key-%02d", i%keys), fmt.Sprintf("%010d", i)))
	}

	submitted := make(chan int, total)
	pubErr := make(chan error, 1)
	go func() {
		for i, tk := range tasks {
			if err := h.pub.Publish(context.Background(), tk, o.done(tk.EventID)); err != nil {
				pubErr <- err
				return
			}
			submitted <- i
		}
		pubErr <- nil
	}()

	for range outage {
		<-o.n
	}
	h.srv.Shutdown()
	// Wait until the publisher has seen the outage and the window has
	// filled with tasks that cannot be acknowledged.
	<-h.warn
	for i := range submitted {
		if i == restart-1 {
			break
		}
	}
	h.srv.Restart(t)

	require.NoError(t, <-pubErr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, h.pub.Flush(ctx))

	calls := o.snapshot()
	require.Len(t, calls, total)
	for id, errs := range calls {
		require.Equal(t, []error{nil}, errs, "done called exactly once, with nil, for %s", id)
	}

	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, total, "nothing lost, nothing stored twice")
	last := map[string]string{}
	seen := map[string]bool{}
	for _, m := range msgs {
		got, err := trigger.DecodeTask(m.Data)
		require.NoError(t, err)
		require.False(t, seen[got.EventID], "stored twice: %s", got.EventID)
		seen[got.EventID] = true
		require.Greater(t, got.Position, last[m.Subject], "subject %s out of order", m.Subject)
		last[m.Subject] = got.Position
	}
	require.Positive(t, testenv.Metric(t, h.reg, "triggerflow_publisher_publish_failures_total",
		prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "false", "reason": "disconnected"})+
		testenv.Metric(t, h.reg, "triggerflow_publisher_publish_failures_total",
			prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "false", "reason": "timeout"})+
		testenv.Metric(t, h.reg, "triggerflow_publisher_publish_failures_total",
			prometheus.Labels{"tenant": "acme", "collection": "users", "subject_hashed": "false", "reason": "no-stream"}),
		"the outage was seen and retried")
}

func TestPublishBlocksWhileWindowIsFull(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *publisher.Config) { c.MaxPending = 2 })
	h.srv.Shutdown()

	ctx := context.Background()
	o := newOutcomes(3)
	for _, k := range []string{"a", "b"} {
		tk := task(k, "1")
		require.NoError(t, h.pub.Publish(ctx, tk, o.done(tk.EventID)))
	}
	third := make(chan error, 1)
	go func() {
		tk := task("c", "1")
		third <- h.pub.Publish(ctx, tk, o.done(tk.EventID))
	}()
	<-h.warn // the outage is failing the first two
	require.Equal(t, 2, h.pub.Pending())
	select {
	case err := <-third:
		t.Fatalf("a third task was accepted into a full window during an outage (err %v)", err)
	default:
	}

	// A Publish that gives up waiting is not accepted: done never runs.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, h.pub.Publish(cctx, task("d", "1"), func(error) { t.Error("done of a rejected task") }), context.Canceled)
	require.ErrorIs(t, h.pub.Flush(cctx), context.Canceled, "Flush gives up with its context while tasks are pending")

	h.srv.Restart(t)
	require.NoError(t, <-third)
	require.NoError(t, h.pub.Flush(ctx))
	require.Len(t, o.snapshot(), 3)
	require.Len(t, h.messages(t, h.nats.Stream), 3)
}

func TestDoneMayPublish(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *publisher.Config) { c.MaxPending = 1 })
	ctx := context.Background()
	second := make(chan error, 1)
	require.NoError(t, h.pub.Publish(ctx, task("a", "1"), func(err error) {
		second <- h.pub.Publish(ctx, task("a", "2"), nil)
	}))
	require.NoError(t, <-second, "a full window must not deadlock a done that publishes")
	require.NoError(t, h.pub.Flush(ctx))
	require.Len(t, h.messages(t, h.nats.Stream), 2)
}

// TestStreamRefusalIsDeadLettered covers a stream whose max message size is
// below MaxPayload: JetStream refuses the task in its PubAck, no retry could
// succeed, so the task is dead-lettered as oversize rather than retried
// forever.
func TestStreamRefusalIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	s, err := h.js.Stream(ctx, h.nats.Stream)
	require.NoError(t, err)
	sc := s.CachedInfo().Config
	sc.MaxMsgSize = 1024
	_, err = h.js.UpdateStream(ctx, sc)
	require.NoError(t, err)

	big := task("big", "1")
	big.After = json.RawMessage(`{"blob":"` + strings.Repeat("x", 2048) + `"}`)
	h.publishAndWait(t, big, task("small", "2"))

	require.Len(t, h.messages(t, h.nats.Stream), 1)
	dl := h.messages(t, h.nats.DeadLetterSubject)
	require.Len(t, dl, 1)
	rec, err := deadletter.Decode(dl[0].Data)
	require.NoError(t, err)
	require.Equal(t, publisher.ReasonOversize, rec.Reason)
	require.Equal(t, big.EventID, rec.EventID)
	require.Contains(t, rec.Detail, "JetStream refused")
}

func TestCloseAbandonsPendingTasks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.srv.Shutdown()
	o := newOutcomes(10)
	var tasks []*trigger.DeliveryTask
	for i := range 6 {
		tk := task(fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
		tasks = append(tasks, tk)
		require.NoError(t, h.pub.Publish(context.Background(), tk, o.done(tk.EventID)))
	}
	<-h.warn
	require.NoError(t, h.pub.Close())
	calls := o.snapshot()
	require.Len(t, calls, 6)
	for _, tk := range tasks {
		require.Len(t, calls[tk.EventID], 1)
		require.ErrorIs(t, calls[tk.EventID][0], publisher.ErrClosed)
	}
	require.ErrorIs(t, h.pub.Publish(context.Background(), task("late", "9"), nil), publisher.ErrClosed)
	require.NoError(t, h.pub.Close(), "Close is idempotent")
	require.NoError(t, h.pub.Flush(context.Background()))
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	js, err := jetstream.New(testenv.NATS(t).Conn(t))
	require.NoError(t, err)
	dl := deadletter.NewPublisher(js, "DLQ")
	for name, cfg := range map[string]publisher.Config{
		"no dead letter":  {},
		"bad stream":      {Stream: "A.B", DeadLetters: dl},
		"negative window": {MaxPending: -1, DeadLetters: dl},
		"backoff order":   {RetryInitial: time.Second, RetryMax: time.Millisecond, DeadLetters: dl},
	} {
		_, err := publisher.New(js, cfg)
		require.Error(t, err, name)
	}
	_, err = publisher.New(nil, publisher.Config{DeadLetters: dl})
	require.Error(t, err)

}

// testHandler logs through t and signals warn on every warning.
type testHandler struct {
	t     testing.TB
	warn  chan struct{}
	attrs []slog.Attr
}

func (h *testHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *testHandler) WithGroup(string) slog.Handler            { return h }
func (h *testHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &testHandler{t: h.t, warn: h.warn, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *testHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	h.t.Log(b.String())
	if r.Level >= slog.LevelWarn && strings.Contains(r.Message, "retrying") {
		select {
		case h.warn <- struct{}{}:
		default:
		}
	}
	return nil
}

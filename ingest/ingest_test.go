package ingest_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// testBlobLimit lowers the dev server's payload limit (2 MiB by default,
// more than a NATS message may carry) so a test can exceed it.
const testBlobLimit = 256 << 10

// TestWithTemporal shares one Temporal dev server between the tests that
// need one, since each start costs seconds. The outage test runs first and
// alone (it restarts the server); the others run in parallel after it.
func TestWithTemporal(t *testing.T) {
	ts := testenv.Temporal(t, testenv.WithTemporalArgs("--dynamic-config-value", fmt.Sprintf("limit.blobSize.error=%d", testBlobLimit)))
	t.Run("TemporalOutage", func(t *testing.T) { testTemporalOutage(t, ts) })
	t.Run("ManyKeysInOrder", func(t *testing.T) { t.Parallel(); testManyKeysInOrder(t, ts) })
	t.Run("RedeliveryIsDuplicateSignal", func(t *testing.T) { t.Parallel(); testRedeliveryIsDuplicate(t, ts) })
	t.Run("GracefulShutdownHandsOver", func(t *testing.T) { t.Parallel(); testGracefulShutdown(t, ts) })
	t.Run("PoisonIsDeadLettered", func(t *testing.T) { t.Parallel(); testPoison(t, ts) })
	t.Run("UnauthenticatedIsDeadLettered", func(t *testing.T) { t.Parallel(); testUnauthenticated(t, ts) })
	for _, p := range []ingest.CollisionPolicy{ingest.CollisionSerialize, ingest.CollisionAlert, ingest.CollisionFail} {
		t.Run("Collision/"+string(p), func(t *testing.T) { t.Parallel(); testCollision(t, ts, p) })
	}
	t.Run("EndToEnd", func(t *testing.T) { t.Parallel(); testEndToEnd(t, ts) })
	t.Run("StartsQuietKeysSignalsRecentOnes", func(t *testing.T) { t.Parallel(); testStartOrSignal(t, ts) })
	t.Run("LostAnswerIsNotDeliveredTwice", func(t *testing.T) { t.Parallel(); testLostAnswerIsNotDeliveredTwice(t, ts) })
	t.Run("ClosedRunDropsRedelivery", func(t *testing.T) { t.Parallel(); testClosedRunDropsRedelivery(t, ts) })
	t.Run("MaxDeliverDeadLetters", func(t *testing.T) { t.Parallel(); testMaxDeliver(t, ts) })
	t.Run("TemporalRejects", func(t *testing.T) { t.Parallel(); testTemporalRejects(t, ts) })
	t.Run("BatchesAKeysQueuedTasks", func(t *testing.T) { t.Parallel(); testBatching(t, ts) })
	t.Run("RejectedBatchGoesOneByOne", func(t *testing.T) { t.Parallel(); testRejectedBatch(t, ts) })
	t.Run("TakeoverFromCrashedReplica", func(t *testing.T) { t.Parallel(); testTakeover(t, ts) })
	t.Run("NoTakeoverFromLiveReplica", func(t *testing.T) { t.Parallel(); testNoTakeoverFromLive(t, ts) })
}

// 1,000 tasks over 100 docKeys, interleaved across keys, become exactly
// 100 workflows, each of which receives its 10 tasks in publish order.
func testManyKeysInOrder(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.worker()
	const keys, perKey = 100, 10
	want := map[string][]string{} // workflow id -> event ids in publish order
	var tasks []*trigger.DeliveryTask
	for range perKey {
		for k := range keys {
			task := h.task("order-paid", fmt.Sprintf("o-%d", k))
			tasks = append(tasks, task)
			want[h.wfID(task)] = append(want[h.wfID(task)], task.EventID)
		}
	}
	h.publish(tasks...)
	inst := h.start(startOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	require.NoError(t, inst.in.Ready(ctx))

	inst.steps.waitCount(t, "acked", keys*perKey)
	require.Len(t, want, keys)
	for id, events := range want {
		require.Equal(t, events, h.handedOff(id), "history of %s", id)
		require.Equal(t, events, h.queryEvents(id, perKey), "events seen by %s", id)
	}
	query := fmt.Sprintf("%s = %q", workflows.TenantID.GetName(), h.tenant)
	testenv.Eventually(t, waitTimeout, "visibility to count 100 workflows", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := h.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err != nil {
			return err
		}
		if resp.GetCount() != keys {
			return fmt.Errorf("count is %d", resp.GetCount())
		}
		return nil
	})

	// Start options: search attributes, memo and summary.
	desc, err := h.tc.DescribeWorkflow(ctx, h.wfID(tasks[0]), "")
	require.NoError(t, err)
	sa := desc.TypedSearchAttributes
	for _, kv := range []struct {
		key  temporal.SearchAttributeKeyKeyword
		want string
	}{
		{workflows.TenantID, h.tenant}, {workflows.TriggerID, "order-paid"},
		{workflows.Collection, "orders"}, {workflows.DocKey, "o-0"},
	} {
		got, ok := sa.GetKeyword(kv.key)
		require.True(t, ok, kv.key.GetName())
		require.Equal(t, kv.want, got, kv.key.GetName())
	}
	var memoKey string
	require.NoError(t, json.Unmarshal(desc.Memo.GetFields()["docKey"].GetData(), &memoKey))
	require.Equal(t, "o-0", memoKey)
	summary, err := desc.GetStaticSummary()
	require.NoError(t, err)
	require.Equal(t, h.tenant+" · orders/o-0 · order-paid", summary)

	require.Equal(t, float64(keys*perKey), testenv.Metric(t, inst.reg, "triggerflow_ingest_acked_total",
		map[string]string{"tenant": h.tenant, "collection": "orders", "subject_hashed": "false"}))
	require.Zero(t, testenv.Metric(t, inst.reg, "triggerflow_ingest_lane_depth", nil))

	require.NoError(t, inst.in.Close())
	require.Error(t, inst.in.Ready(ctx), "not ready once closed")
	info := h.consumerInfo()
	require.Zero(t, info.NumAckPending)
	require.Zero(t, info.NumPending)
}

// A message handed off but not acked (a crash between the two) comes back
// after AckWait and reaches the workflow again with the same event id.
func testRedeliveryIsDuplicate(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.AckWait = time.Second
	tasks := []*trigger.DeliveryTask{h.task("t", "doc"), h.task("t", "doc"), h.task("t", "doc")}
	crashed := tasks[0].EventID
	var once sync.Once
	inst := h.start(startOpts{opts: []ingest.Option{ingest.WithBeforeAck(func(task *trigger.DeliveryTask) bool {
		crash := false
		if task.EventID == crashed {
			once.Do(func() { crash = true })
		}
		return !crash
	})}})
	h.publish(tasks...)

	inst.steps.waitCount(t, "acked", len(tasks))
	got := h.handedOff(h.wfID(tasks[0]))
	require.Equal(t, []string{tasks[0].EventID, tasks[1].EventID, tasks[2].EventID, crashed}, got)
	redelivered := inst.steps.of("received")[len(tasks)]
	require.Equal(t, crashed, redelivered.EventID)
	require.Equal(t, uint64(2), redelivered.Delivered)
	require.Equal(t, 1.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_redelivered_total", nil))
}

// With Temporal stopped, lanes retry in place, nothing is acked, and ack
// timers are held so nothing is redelivered; after the restart every task
// arrives, in order, once. The outage lasts the dev server's stop and
// start plus at least two AckWaits (a few seconds, not the 30 s an
// operator might see).
func testTemporalOutage(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	ackWait := time.Second
	h.cfg.AckWait = ackWait
	h.cfg.HandoffTimeout = time.Second
	inst := h.start(startOpts{log: &testenv.LogBuffer{}}) // expected hand-off warnings stay out of the output

	var before, during []*trigger.DeliveryTask
	for i := range 20 {
		before = append(before, h.task("t", fmt.Sprintf("k%d", i%5)))
	}
	h.publish(before...)
	inst.steps.waitCount(t, "acked", len(before))

	require.NoError(t, ts.Stop())
	outage := time.Now()
	for i := range 30 {
		during = append(during, h.task("t", fmt.Sprintf("k%d", i%7)))
	}
	h.publish(during...)
	inst.steps.waitCount(t, "received", len(before)+len(during))
	// Hold the outage until failures span two ack waits: without the
	// keeper's InProgress, every held message would be redelivered.
	inst.steps.waitFor(t, "hand-off failures spanning 2×AckWait", func(steps []timedStep) bool {
		var first, last time.Time
		for _, s := range steps {
			if s.Kind == "handoff-error" {
				if first.IsZero() {
					first = s.at
				}
				last = s.at
			}
		}
		return !first.IsZero() && last.Sub(first) > 2*ackWait
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.Error(t, inst.in.Ready(ctx), "not ready while Temporal is down")

	require.Equal(t, len(before), inst.steps.count("acked"), "nothing acked during the outage")
	info := h.consumerInfo()
	require.Equal(t, len(during), info.NumAckPending)
	require.Equal(t, uint64(len(before)), info.AckFloor.Stream)
	require.Zero(t, info.NumRedelivered)

	ts.Restart(t)
	t.Logf("temporal outage lasted %s", time.Since(outage).Round(time.Millisecond))
	inst.steps.waitCount(t, "acked", len(before)+len(during))

	want := map[string][]string{}
	for _, task := range append(before, during...) {
		want[h.wfID(task)] = append(want[h.wfID(task)], task.EventID)
	}
	for id, events := range want {
		// A hand-off the restarted server applied but answered too late
		// is retried: the same signal twice in a row, which the delivery
		// workflow drops. Anything else would break the order.
		require.Equal(t, events, slices.Compact(h.handedOff(id)), "history of %s", id)
	}
	require.Zero(t, inst.steps.count("naked"))
	require.Zero(t, testenv.Metric(t, inst.reg, "triggerflow_ingest_redelivered_total", nil))
	require.Positive(t, testenv.Metric(t, inst.reg, "triggerflow_ingest_handoff_errors_total", nil))
}

// Closing an instance under load acks only what Temporal has and hands the
// rest back; the pinned standby then receives it and every task arrives,
// in order per key.
func testGracefulShutdown(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.DrainTimeout = time.Millisecond
	h.cfg.ShutdownTimeout = 5 * time.Second
	h.cfg.PinnedTTL = 30 * time.Second
	var tasks []*trigger.DeliveryTask
	for i := range 600 {
		tasks = append(tasks, h.task("t", fmt.Sprintf("k%d", i%40)))
	}
	h.publish(tasks...)

	a := h.start(startOpts{})
	a.steps.waitCount(t, "acked", 1)
	b := h.start(startOpts{}) // standby: the group is pinned to a
	a.steps.waitCount(t, "acked", 50)
	require.NoError(t, a.in.Close())

	ackedByA := map[string]bool{}
	for _, s := range a.steps.of("acked") {
		ackedByA[s.EventID] = true
	}
	nakedByA := a.steps.of("naked")
	require.NotEmpty(t, nakedByA, "closing under load hands messages back")
	require.Less(t, len(ackedByA), len(tasks))

	b.steps.waitFor(t, "b to ack everything a did not", func(steps []timedStep) bool {
		acked := map[string]bool{}
		for _, s := range steps {
			if s.Kind == "acked" {
				acked[s.EventID] = true
			}
		}
		for _, task := range tasks {
			if !ackedByA[task.EventID] && !acked[task.EventID] {
				return false
			}
		}
		return true
	})
	receivedByB := map[string]uint64{}
	for _, s := range b.steps.of("received") {
		receivedByB[s.EventID] = max(receivedByB[s.EventID], s.Delivered)
	}
	for _, s := range nakedByA {
		require.GreaterOrEqual(t, receivedByB[s.EventID], uint64(2), "a NAKed %s; b got it redelivered", s.EventID)
	}

	want := map[string][]string{}
	for _, task := range tasks {
		want[h.wfID(task)] = append(want[h.wfID(task)], task.EventID)
	}
	for id, events := range want {
		got := h.handedOff(id)
		for _, e := range events {
			if ackedByA[e] {
				require.Contains(t, got, e, "a acked %s, so Temporal has it", e)
			}
		}
		if !assert.Equal(t, events, firstOccurrences(got), "order of %s across the hand-over", id) {
			for _, e := range events {
				for name, inst := range map[string]*instance{"a": a, "b": b} {
					for _, s := range inst.steps.snapshot() {
						if s.EventID == e {
							t.Logf("%s %s %s seq=%d delivered=%d at %s", e[:12], name, s.Kind, s.StreamSeq, s.Delivered, s.at.Format("05.000000"))
						}
					}
				}
			}
			t.FailNow()
		}
	}
	t.Logf("a acked %d and handed back %d; b acked %d", len(ackedByA), len(nakedByA), b.steps.count("acked"))
}

// Poison (garbage, truncated JSON, an invalid task, a subject that does not
// match the payload) is dead-lettered with its reason and terminated, and
// never holds up valid tasks, even while the dead-letter stream refuses.
func testPoison(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.Sharing = ingest.SharingShared
	dl := &gatedDeadLetterer{gate: make(chan struct{})}
	inst := h.start(startOpts{dl: dl})

	stream := h.cfg.WithDefaults().Stream
	good := []*trigger.DeliveryTask{h.task("t", "doc"), h.task("t", "doc"), h.task("t", "doc")}
	other := h.task("t", "other")
	otherData, err := other.Encode()
	require.NoError(t, err)
	badVersion := h.task("t", "doc")
	badVersion.V = 2
	badVersionData, err := badVersion.Encode()
	require.NoError(t, err)
	goodSubject := h.subject(good[0])

	h.publish(good[0])
	h.publishRaw(goodSubject, []byte("not json at all"), "")
	h.publish(good[1])
	h.publishRaw(goodSubject, []byte(`{"v":1,"eventId":"evt_trunc","tenant":"`), "")
	h.publishRaw(goodSubject, otherData, "") // other's task filed under doc's subject
	h.publishRaw(goodSubject, badVersionData, "")
	h.publishRaw(stream+"."+h.tenant+".orders", otherData, "") // too few tokens
	h.publish(good[2])

	// The dead-letter stream is refusing, yet the valid tasks go through.
	inst.steps.waitCount(t, "acked", len(good))
	require.Equal(t, []string{good[0].EventID, good[1].EventID, good[2].EventID}, h.handedOff(h.wfID(good[0])))
	require.Zero(t, inst.steps.count("terminated"))

	close(dl.gate)
	inst.steps.waitCount(t, "terminated", 5)
	reasons := map[string]int{}
	for _, rec := range dl.records() {
		reasons[rec.Reason]++
		require.Equal(t, deadletter.StageIngest, rec.Stage)
		require.NotEmpty(t, rec.ID)
		require.NotEmpty(t, rec.Detail)
		if rec.Reason == ingest.ReasonSubjectMismatch {
			require.Equal(t, other.EventID, rec.EventID)
			require.Equal(t, "other", rec.DocKey)
			require.JSONEq(t, string(otherData), string(rec.Task))
		}
	}
	require.Equal(t, map[string]int{
		ingest.ReasonInvalidTask: 3, ingest.ReasonSubjectMismatch: 1, ingest.ReasonInvalidSubject: 1,
	}, reasons)
	require.Equal(t, 3.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_terminated_total", map[string]string{"reason": ingest.ReasonInvalidTask}))
	require.Equal(t, 5.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_consumed_total", map[string]string{"tenant": "_invalid"}))
	require.Positive(t, dl.failures(), "dead-lettering was retried")

	require.NoError(t, inst.in.Close())
	info := h.consumerInfo()
	require.Zero(t, info.NumAckPending, "every message settled")
	require.Zero(t, info.NumRedelivered)
}

// gatedDeadLetterer fails every Publish until gate is closed.
type gatedDeadLetterer struct {
	gate  chan struct{}
	mu    sync.Mutex
	recs  []deadletter.Record
	fails int
}

func (g *gatedDeadLetterer) Publish(_ context.Context, rec deadletter.Record) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		g.fails++
		return fmt.Errorf("dead-letter stream unavailable")
	}
	g.recs = append(g.recs, rec)
	return nil
}

func (g *gatedDeadLetterer) records() []deadletter.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]deadletter.Record(nil), g.recs...)
}

func (g *gatedDeadLetterer) failures() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fails
}

// Two long docKeys whose hashed subject tokens collide (forced with a
// short test hash) are detected and counted; serialize and alert hand both
// off in order, alert logs a warning, fail dead-letters the second key.
func testCollision(t *testing.T, ts *testenv.TemporalServer, policy ingest.CollisionPolicy) {
	h := newHarness(t, ts)
	h.cfg.CollisionPolicy = policy
	logs := &testenv.LogBuffer{}
	inst := h.start(startOpts{log: logs, opts: []ingest.Option{
		ingest.WithHashToken(func(string) string { return "collide" }),
	}})

	k1, k2 := strings.Repeat("a", 800)+"-1", strings.Repeat("a", 800)+"-2"
	stream := h.cfg.WithDefaults().Stream
	subject := stream + "." + h.tenant + ".orders.collide"
	var tasks []*trigger.DeliveryTask
	for _, k := range []string{k1, k2, k1, k2} {
		task := h.task("t", k)
		h.subject(task) // sets SubjectHashed
		require.True(t, task.SubjectHashed, "key long enough to hash")
		data, err := task.Encode()
		require.NoError(t, err)
		h.publishRaw(subject, data, task.EventID)
		tasks = append(tasks, task)
	}

	switch policy {
	case ingest.CollisionFail:
		inst.steps.waitCount(t, "acked", 2)
		inst.steps.waitCount(t, "terminated", 2)
		recs := h.deadLetters(2)
		for _, rec := range recs {
			require.Equal(t, ingest.ReasonHashCollision, rec.Reason)
			require.Equal(t, k2, rec.DocKey)
		}
		require.Equal(t, []string{tasks[0].EventID, tasks[2].EventID}, h.handedOff(h.wfID(tasks[0])))
	default:
		inst.steps.waitCount(t, "acked", 4)
		require.Equal(t, []string{tasks[0].EventID, tasks[2].EventID}, h.handedOff(h.wfID(tasks[0])))
		require.Equal(t, []string{tasks[1].EventID, tasks[3].EventID}, h.handedOff(h.wfID(tasks[1])))
	}
	require.Equal(t, 2, inst.steps.count("collision"))
	require.Equal(t, 2.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_collisions_total", map[string]string{"policy": string(policy)}))
	require.Equal(t, 4.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_consumed_total", map[string]string{"subject_hashed": "true"}))
	require.Equal(t, policy == ingest.CollisionAlert, strings.Contains(logs.String(), "level=WARN msg=\"ingest: hashed subject collision; both keys share a lane"),
		"a warning per shared-lane collision only under alert")

	// Long keys are searchable through their hashed keyword, and the full
	// key is in the memo.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := h.tc.DescribeWorkflow(ctx, h.wfID(tasks[0]), "")
	require.NoError(t, err)
	got, _ := desc.TypedSearchAttributes.GetKeyword(workflows.DocKey)
	require.Equal(t, ingest.SearchKeyword(k1), got)
	require.True(t, strings.HasPrefix(got, "sha256:"))
	var memoKey string
	require.NoError(t, json.Unmarshal(desc.Memo.GetFields()["docKey"].GetData(), &memoKey))
	require.Equal(t, k1, memoKey)
	require.True(t, strings.HasPrefix(h.wfID(tasks[0]), "tfh/"), "an 800-byte key takes the hashed workflow ID")
}

// In verify mode ingest refuses a missing or drifted consumer and accepts
// one that matches.
func TestProvisioningVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	fake := fakeTemporal{}
	dl := deadletter.NewPublisher(h.js, streams.DefaultStream+"_DLQ")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h.cfg.DeadLetters = dl
	verify := h.cfg
	verify.Provisioning = streams.ProvisionVerify
	in, err := ingest.New(verify, h.js, fake)
	require.NoError(t, err)
	err = in.Start(ctx)
	require.ErrorIs(t, err, ingest.ErrConsumerMissing)
	require.ErrorIs(t, err, streams.ErrMissing)
	require.NoError(t, in.Close())

	create, err := ingest.New(h.cfg, h.js, fake)
	require.NoError(t, err)
	require.NoError(t, create.Start(ctx))
	require.NoError(t, create.Close())

	drifted := verify
	drifted.AckWait = 7 * time.Second
	drifted.MaxAckPending = 100
	in, err = ingest.New(drifted, h.js, fake)
	require.NoError(t, err)
	err = in.Start(ctx)
	require.ErrorIs(t, err, ingest.ErrConsumerDrift)
	require.ErrorIs(t, err, streams.ErrDrift)
	require.ErrorContains(t, err, "ack wait is 5s, want 7s")
	require.ErrorContains(t, err, "max ack pending is 1024, want 100")

	in, err = ingest.New(verify, h.js, fake)
	require.NoError(t, err)
	require.NoError(t, in.Start(ctx))
	require.NoError(t, in.Close())
}

// fakeTemporal embeds the interface for the calls these tests never make.
type fakeTemporal struct{ ingest.TemporalClient }

func (fakeTemporal) SignalWithStartWorkflow(context.Context, string, string, any, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	return nil, fmt.Errorf("fake temporal: no hand-offs")
}

func (fakeTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return &client.CheckHealthResponse{}, nil
}

// With a verifier, tasks nobody signed are dead-lettered as
// unauthenticated and never reach Temporal: one published unsigned on NATS,
// one signed with a key the verifier does not hold, and a validly signed
// one whose URL was changed afterwards. A validly signed task goes through.
func testUnauthenticated(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.Sharing = ingest.SharingShared
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	_, attackerKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	signer, err := tasksig.NewSigner("watcher-1", priv)
	require.NoError(t, err)
	attacker, err := tasksig.NewSigner("watcher-1", attackerKey)
	require.NoError(t, err)
	h.cfg.Verifier, err = tasksig.NewVerifier(map[string]ed25519.PublicKey{"watcher-1": pub})
	require.NoError(t, err)
	inst := h.start(startOpts{})

	unsigned := h.task("t", "doc")
	forged := h.task("t", "doc")
	attacker.Sign(forged)
	redirected := h.task("t", "doc")
	signer.Sign(redirected)
	redirected.URL = "https://attacker.example/collect"
	good := h.task("t", "doc")
	signer.Sign(good)
	h.publish(unsigned, forged, redirected, good)

	inst.steps.waitCount(t, "terminated", 3)
	inst.steps.waitCount(t, "acked", 1)
	require.Equal(t, []string{good.EventID}, h.handedOff(h.wfID(good)), "only the signed task reaches Temporal")
	recs := h.deadLetters(3)
	for _, rec := range recs {
		require.Equal(t, ingest.ReasonUnauthenticated, rec.Reason)
	}
	require.Equal(t, 3.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_terminated_total", prometheus.Labels{"reason": ingest.ReasonUnauthenticated}))
}

// A cold key's run closes as soon as it delivered. Ingest crashes after
// handing the task off, before acking it: the redelivered task finds the
// run closed with the task in its result, and is acked without starting
// a new run that would deliver it again.
func testClosedRunDropsRedelivery(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.AckWait = time.Second
	rec, task := h.coldDelivery("cold")
	var once sync.Once
	inst := h.start(startOpts{opts: []ingest.Option{ingest.WithBeforeAck(func(*trigger.DeliveryTask) bool {
		crash := false
		once.Do(func() { crash = true })
		return !crash
	})}})
	// The run closes before the redelivery: wait for it, once ingest has
	// started it.
	h.publish(task)
	inst.steps.waitCount(t, "signalled", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, h.tc.GetWorkflow(ctx, h.wfID(task), "").Get(ctx, nil))

	inst.steps.waitCount(t, "acked", 1)
	require.Equal(t, 1, inst.steps.count("signalled"), "the redelivery is not handed off again")
	require.Equal(t, 1, inst.steps.count("delivered-before"))
	require.Equal(t, 1.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_delivered_before_total", nil))
	require.Len(t, rec.Requests(), 1, "delivered once")
}

// A key not handed off within Config.SignalWindow gets a new run with its
// task as input, no signal; one handed off within it is signalled. A start
// Temporal refuses because the run is open after all (this replica never
// handed the key off) falls back to the signal.
func testStartOrSignal(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.worker() // its runs never close
	first, second, third := h.task("start", "doc"), h.task("start", "doc"), h.task("start", "doc")
	id := h.wfID(first)

	inst := h.start(startOpts{})
	h.publish(first)
	inst.steps.waitCount(t, "acked", 1)
	h.publish(second)
	inst.steps.waitCount(t, "acked", 2)
	// A signal that arrives while the run's workflow task is in flight
	// enters its history when the task completes.
	h.queryEvents(id, 2)
	started, signalled := h.handOffs(id)
	require.Equal(t, []string{first.EventID}, started, "a quiet key's run starts with its task")
	require.Equal(t, []string{second.EventID}, signalled, "a key handed off within the window is signalled")
	require.Equal(t, 1.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_started_total", nil))
	require.Equal(t, 2.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_signalled_total", nil), "every hand-off")
	require.Zero(t, testenv.Metric(t, inst.reg, "triggerflow_ingest_start_refused_total", nil))
	require.NoError(t, inst.in.Close())

	next := h.start(startOpts{})
	h.publish(third)
	next.steps.waitCount(t, "acked", 1)
	require.Equal(t, []string{first.EventID, second.EventID, third.EventID}, h.queryEvents(id, 3))
	started, signalled = h.handOffs(id)
	require.Equal(t, []string{first.EventID}, started, "the open run is the same")
	require.Equal(t, []string{second.EventID, third.EventID}, signalled)
	require.Equal(t, 1.0, testenv.Metric(t, next.reg, "triggerflow_ingest_start_refused_total", nil))
	require.Zero(t, testenv.Metric(t, next.reg, "triggerflow_ingest_started_total", nil))
}

// End to end with the real delivery workflow and webhook activities: the
// receiver gets every task once, per key in publish order, even the one
// ingest signalled twice (a crash before its ack), because the workflow
// drops the duplicate event id.
func testEndToEnd(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.AckWait = time.Second
	rec := testenv.Recorder(t)
	h.deliveryWorker(2 * time.Second)

	var tasks []*trigger.DeliveryTask
	want := map[string][]string{} // path -> webhook-ids in publish order
	for i := range 12 {
		key := fmt.Sprintf("doc-%d", i%3)
		task := h.task("e2e", key)
		task.URL = rec.URL() + "/hooks/" + key
		tasks = append(tasks, task)
		want["/hooks/"+key] = append(want["/hooks/"+key], task.EventID)
	}
	dup := tasks[4].EventID
	var once sync.Once
	inst := h.start(startOpts{opts: []ingest.Option{ingest.WithBeforeAck(func(task *trigger.DeliveryTask) bool {
		crash := false
		if task.EventID == dup {
			once.Do(func() { crash = true })
		}
		return !crash
	})}})
	h.publish(tasks...)

	inst.steps.waitCount(t, "acked", len(tasks)) // the crashed hand-off is acked on redelivery
	require.Equal(t, len(tasks)+1, inst.steps.count("signalled"))
	require.Equal(t, 2, strings.Count(strings.Join(h.handedOff(h.wfID(tasks[4])), ","), dup), "signalled twice")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, task := range tasks[:3] {
		// The latest run ends after its quiet period, once it has handled
		// every signal, the duplicate included.
		require.NoError(t, h.tc.GetWorkflow(ctx, h.wfID(task), "").Get(ctx, nil))
	}
	got := map[string][]string{}
	for _, r := range rec.Requests() {
		got[r.Path] = append(got[r.Path], r.Headers.Get("webhook-id"))
	}
	require.Equal(t, want, got)
}

// A message delivered more than Config.MaxDeliver times is dead-lettered
// on the extra delivery JetStream keeps for it, instead of vanishing when
// JetStream gives up.
func testMaxDeliver(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.AckWait = time.Second
	h.cfg.MaxDeliver = 1
	task := h.task("t", "doc")
	inst := h.start(startOpts{opts: []ingest.Option{ingest.WithBeforeAck(func(*trigger.DeliveryTask) bool {
		return false // every hand-off "crashes" before its ack
	})}})
	h.publish(task)

	inst.steps.waitCount(t, "terminated", 1)
	recs := h.deadLetters(1)
	require.Equal(t, ingest.ReasonMaxDeliver, recs[0].Reason)
	require.Equal(t, task.EventID, recs[0].EventID)
	require.Equal(t, []string{task.EventID}, h.handedOff(h.wfID(task)), "handed off once, on the first delivery")
}

// A task Temporal refuses as invalid (here: a signal over the dev server's
// lowered blob size limit) is dead-lettered as "temporal-rejected" and the
// key's next task still goes through.
func testTemporalRejects(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.MaxSignalBatch = 1 // one rejected call; testRejectedBatch covers batches
	big := h.task("t", "doc")
	big.After = []byte(`{"blob":"` + strings.Repeat("x", 2*testBlobLimit) + `"}`)
	next := h.task("t", "doc")
	inst := h.start(startOpts{log: &testenv.LogBuffer{}})
	h.publish(big, next)

	inst.steps.waitCount(t, "acked", 1)
	inst.steps.waitCount(t, "terminated", 1)
	recs := h.deadLetters(1)
	require.Equal(t, ingest.ReasonTemporalRejected, recs[0].Reason)
	require.Equal(t, big.EventID, recs[0].EventID)
	require.Contains(t, recs[0].Detail, "size")
	require.Equal(t, []string{next.EventID}, h.handedOff(h.wfID(next)))
	require.Equal(t, 1.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_handoff_errors_total", map[string]string{"code": "InvalidArgument"}))
}

// gatedTemporal holds the first hand-off until open is closed and records
// the event ids each call carried.
type gatedTemporal struct {
	ingest.TemporalClient
	entered chan struct{} // closed when the first call arrives
	open    chan struct{}
	first   sync.Once

	mu    sync.Mutex
	calls [][]string
}

func newGatedTemporal(tc ingest.TemporalClient) *gatedTemporal {
	return &gatedTemporal{TemporalClient: tc, entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *gatedTemporal) SignalWithStartWorkflow(ctx context.Context, id, name string, arg any,
	opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	ids, err := eventIDs(arg.(json.RawMessage))
	if err != nil {
		return nil, err
	}
	g.record(ids)
	return g.TemporalClient.SignalWithStartWorkflow(ctx, id, name, arg, opts, wf, args...)
}

func (g *gatedTemporal) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	raw, err := json.Marshal(args[0])
	if err != nil {
		return nil, err
	}
	var p workflows.DeliveryParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range p.Pending {
		ids = append(ids, t.EventID)
	}
	g.record(ids)
	return g.TemporalClient.ExecuteWorkflow(ctx, opts, wf, args...)
}

// record holds the first call until the gate opens, and records the event
// ids of each.
func (g *gatedTemporal) record(ids []string) {
	g.first.Do(func() {
		close(g.entered)
		<-g.open
	})
	g.mu.Lock()
	g.calls = append(g.calls, ids)
	g.mu.Unlock()
}

func (g *gatedTemporal) recorded() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.calls...)
}

// The tasks of a key that queue up behind a hand-off in flight go to
// Temporal as one signal, in order.
func testBatching(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	gate := newGatedTemporal(h.tc)
	inst := h.startWith(gate, startOpts{})
	first := h.task("t", "doc")
	h.publish(first)
	<-gate.entered
	var rest []*trigger.DeliveryTask
	want := []string{first.EventID}
	for range 4 {
		task := h.task("t", "doc")
		rest = append(rest, task)
		want = append(want, task.EventID)
	}
	h.publish(rest...)
	inst.steps.waitCount(t, "received", 5)
	close(gate.open)

	inst.steps.waitCount(t, "acked", 5)
	require.Equal(t, [][]string{want[:1], want[1:]}, gate.recorded(), "one call for the four queued tasks")
	require.Equal(t, want, h.handedOff(h.wfID(first)))
	require.Equal(t, 5.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_signalled_total", nil))
}

// A batch Temporal refuses is handed off again task by task, so only the
// task at fault is dead-lettered and the order of the rest holds.
func testRejectedBatch(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.MaxSignalBytes = 4 * testBlobLimit // let the big task into a batch
	gate := newGatedTemporal(h.tc)
	inst := h.startWith(gate, startOpts{log: &testenv.LogBuffer{}})
	first := h.task("t", "doc")
	h.publish(first)
	<-gate.entered
	before := h.task("t", "doc")
	big := h.task("t", "doc")
	big.After = []byte(`{"blob":"` + strings.Repeat("x", 2*testBlobLimit) + `"}`)
	after := h.task("t", "doc")
	h.publish(before, big, after)
	inst.steps.waitCount(t, "received", 4)
	close(gate.open)

	inst.steps.waitCount(t, "acked", 3)
	inst.steps.waitCount(t, "terminated", 1)
	require.Equal(t, [][]string{
		{first.EventID}, {before.EventID, big.EventID, after.EventID},
		{before.EventID}, {big.EventID}, {after.EventID},
	}, gate.recorded())
	require.Equal(t, []string{first.EventID, before.EventID, after.EventID}, h.handedOff(h.wfID(first)))
	recs := h.deadLetters(1)
	require.Equal(t, ingest.ReasonTemporalRejected, recs[0].Reason)
	require.Equal(t, big.EventID, recs[0].EventID)
	require.Equal(t, 2.0, testenv.Metric(t, inst.reg, "triggerflow_ingest_handoff_errors_total", map[string]string{"code": "InvalidArgument"}),
		"the batch and the big task alone")
}

// lostAnswerTemporal makes the first hand-off reach Temporal but answers
// it with a timeout once the run it started has closed, as a lost answer
// would look to ingest.
type lostAnswerTemporal struct {
	ingest.TemporalClient
	once sync.Once
}

func (l *lostAnswerTemporal) ExecuteWorkflow(ctx context.Context, opts client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	run, err := l.TemporalClient.ExecuteWorkflow(ctx, opts, wf, args...)
	lost := false
	l.once.Do(func() { lost = true })
	if err != nil || !lost {
		return run, err
	}
	if err := run.Get(ctx, nil); err != nil {
		return nil, err
	}
	return nil, serviceerror.NewDeadlineExceeded("answer lost")
}

// A hand-off retried after an attempt whose answer was lost does not
// deliver twice: the attempt started a run that delivered and closed, and
// the retry finds the task in its result.
func testLostAnswerIsNotDeliveredTwice(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	h.cfg.RetryInitial = time.Millisecond
	rec, task := h.coldDelivery("lost")
	inst := h.startWith(&lostAnswerTemporal{TemporalClient: h.tc}, startOpts{})
	h.publish(task)
	inst.steps.waitCount(t, "acked", 1)
	require.Equal(t, 1, inst.steps.count("handoff-error"))
	require.Equal(t, 1, inst.steps.count("delivered-before"), "the retry found the closed run's result")
	require.Zero(t, inst.steps.count("signalled"), "no second hand-off")
	require.Len(t, rec.Requests(), 1, "delivered once")
}

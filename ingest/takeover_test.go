package ingest_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
)

// stuckTemporal never completes a hand-off: a replica using it holds
// every task it receives, as one does while Temporal is unreachable.
type stuckTemporal struct{ ingest.TemporalClient }

func (stuckTemporal) SignalWithStartWorkflow(ctx context.Context, _, _ string, _ any,
	_ client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stuckTemporal) ExecuteWorkflow(ctx context.Context, _ client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// takeoverConfig makes JetStream's own failover (pinnedTTL, then ackWait)
// far slower than the test's wait, so only a takeover can finish it.
func takeoverConfig(h *harness) {
	h.cfg.AckWait = 10 * time.Minute
	h.cfg.PinnedTTL = 10 * time.Minute
	h.cfg.DrainTimeout = time.Millisecond
	h.cfg.ShutdownTimeout = 2 * time.Second
	h.cfg.TakeoverInterval = 200 * time.Millisecond
}

// A pinned replica dies (its NATS connection closes without a NAK or an
// unpin) holding 200 tasks; 100 more are published. A replica started
// after it proves the holder dead, resets the consumer to its ack floor and
// takes the pin: every task reaches Temporal, each key's first signals in
// publish order, without waiting for pinnedTTL or ackWait.
func testTakeover(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	takeoverConfig(h)
	var tasks []*trigger.DeliveryTask
	for i := range 200 {
		tasks = append(tasks, h.task("t", fmt.Sprintf("k%d", i%20)))
	}
	h.publish(tasks...)

	nc, err := nats.Connect(h.natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	a := h.startWith(stuckTemporal{h.tc}, startOpts{js: js, log: io.Discard}) // its shutdown after the "crash" only fails
	a.steps.waitCount(t, "received", len(tasks))
	nc.Close() // the crash: the server drops a's subscriptions and pull requests

	var later []*trigger.DeliveryTask
	for i := range 100 {
		later = append(later, h.task("t", fmt.Sprintf("k%d", i%20)))
	}
	h.publish(later...)
	tasks = append(tasks, later...)

	h.worker()
	b := h.start(startOpts{})
	b.steps.waitFor(t, "b to ack every task", func(steps []timedStep) bool {
		acked := map[string]bool{}
		for _, s := range steps {
			if s.Kind == "acked" {
				acked[s.EventID] = true
			}
		}
		return len(acked) == len(tasks)
	})
	require.Equal(t, 1.0, testenv.Metric(t, b.reg, "triggerflow_ingest_takeovers_total", map[string]string{"outcome": "taken"}))
	require.Zero(t, testenv.Metric(t, b.reg, "triggerflow_ingest_redelivered_total", nil),
		"after the reset the held tasks come as first deliveries, in stream order")

	want := map[string][]string{}
	for _, task := range tasks {
		want[h.wfID(task)] = append(want[h.wfID(task)], task.EventID)
	}
	for id, events := range want {
		require.Equal(t, events, firstOccurrences(h.handedOff(id)), "order of %s across the takeover", id)
	}
}

// A live pinned replica that holds tasks (Temporal refuses to answer it)
// is never taken over: a standby's probes find it alive, and once its
// hand-offs go through it delivers everything itself.
func testNoTakeoverFromLive(t *testing.T, ts *testenv.TemporalServer) {
	h := newHarness(t, ts)
	takeoverConfig(h)
	h.worker()
	gate := newGatedTemporal(h.tc)
	a := h.startWith(gate, startOpts{})
	var tasks []*trigger.DeliveryTask
	for i := range 50 {
		tasks = append(tasks, h.task("t", fmt.Sprintf("k%d", i%5)))
	}
	h.publish(tasks...)
	<-gate.entered
	a.steps.waitCount(t, "received", len(tasks))

	b := h.start(startOpts{})
	alive := func() float64 {
		return testenv.Metric(t, b.reg, "triggerflow_ingest_takeovers_total", map[string]string{"outcome": "holder-alive"})
	}
	testenv.Eventually(t, waitTimeout, "the standby to probe the live holder three times", func() error {
		if n := alive(); n < 3 {
			return fmt.Errorf("%v probes", n)
		}
		return nil
	})
	close(gate.open)
	a.steps.waitCount(t, "acked", len(tasks))
	require.Zero(t, testenv.Metric(t, b.reg, "triggerflow_ingest_takeovers_total", map[string]string{"outcome": "taken"}))
	require.Zero(t, b.steps.count("received"), "the standby received nothing")
}

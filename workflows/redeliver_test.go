package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// redeliverAt sends what `triggerflow redeliver` sends, at d after the
// start.
func redeliverAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, t trigger.DeliveryTask) {
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.RedeliverSignal, workflows.Redelivery{Task: t, Actor: "ada", Reason: "receiver lost it"})
	}, d)
}

func TestRedeliveryBypassesTheDedupeSet(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"), task("e2"))
		redeliverAt(env, 10*time.Second, task("e1"))
		// A late copy of the original task is still a duplicate.
		signalAt(env, 20*time.Second, task("e1"), task("e3"))
		execute(t, env, testKey)

		_, delivered, dls := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e1", "e3"}, delivered, "the redelivery goes out once more, in arrival order")
		require.Empty(t, dls)
	})
}

func TestRedeliveryQueuesBehindPendingTasks(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	r.respond("e2", outcome{status: 500})
	signalAt(env, 0, task("e1"), task("e2"))
	// Sent while e2 waits for its retry: it is delivered after e2.
	redeliverAt(env, 500*time.Millisecond, task("e1"))
	execute(t, env, testKey)

	_, delivered, _ := r.snapshot()
	require.Equal(t, []string{"e1", "e2", "e1"}, delivered)
}

func TestRedeliveryForAnotherKeyIsDeadLettered(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	other := foreignTask("e9")
	signalAt(env, 0, task("e1"))
	redeliverAt(env, time.Second, other)
	execute(t, env, testKey)

	requireOneDeadLetter(t, r, []string{"e1"}, "invalid-task", "redelivery: task for acme/orders-hook/orders/\"o-2\"")
}

// TestRedeliverAfterTheRunClosed sends a redelivery the way `triggerflow
// redeliver` does, with SignalWithStart after the key's run exited: a new
// run delivers the task again with the same webhook-id, and its history is
// part of the replay corpus.
func TestRedeliverAfterTheRunClosed(t *testing.T) {
	t.Parallel()
	srv := testenv.Temporal(t)
	opts := replayOptions["redeliver"]
	h := newHarness(t, srv, opts)
	tk := h.liveTask("again", "evt_again")
	h.signal(t, tk)
	h.wait(t, "again")
	require.Equal(t, []string{"evt_again"}, requestsFor(h, "again"))

	k := keyFor("again")
	_, err := h.c.SignalWithStartWorkflow(context.Background(), workflowID(k), workflows.RedeliverSignal,
		workflows.Redelivery{Task: tk, Actor: "ada", Reason: "receiver lost it"},
		client.StartWorkflowOptions{
			TaskQueue: h.tq,
			TypedSearchAttributes: temporal.NewSearchAttributes(
				workflows.TenantID.ValueSet(k.Tenant), workflows.TriggerID.ValueSet(k.TriggerID),
				workflows.Collection.ValueSet(k.Collection), workflows.DocKey.ValueSet(k.DocKey)),
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		}, workflows.DeliveryWorkflow, k)
	require.NoError(t, err)
	h.wait(t, "again")
	require.Equal(t, []string{"evt_again", "evt_again"}, requestsFor(h, "again"), "delivered again, same webhook-id")

	hists := h.runs(t, "again")
	require.Len(t, hists, 1, "the redelivery started a run of its own")
	var signals []string
	for _, ev := range hists[0].Events {
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			signals = append(signals, a.GetSignalName())
		}
	}
	require.Equal(t, []string{workflows.RedeliverSignal}, signals)
	// go test ./workflows -run TestRedeliverAfterTheRunClosed -record
	recordAndReplay(t, "redeliver", hists, opts)
}

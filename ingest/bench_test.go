package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// benchKeys is how many documents the benchmark's tasks spread over.
const benchKeys = 100

// BenchmarkHandoff compares ingest's hand-off rate with raw
// SignalWithStartWorkflow calls against the same dev server in the same
// run: Ingest measures JetStream → lanes → SignalWithStart → ack for b.N
// queued tasks; RawSignalWithStart makes the same calls with the same
// options from as many goroutines as ingest has lanes, each owning a
// disjoint set of keys, with no JetStream at all. The ratio is what the
// consumer, ordering and acks cost. No worker runs, so only the signal's
// persistence is measured.
//
//	go test ./ingest -run '^$' -bench Handoff -benchtime 2000x
func BenchmarkHandoff(b *testing.B) {
	ts := testenv.Temporal(b)
	lanes := ingest.Config{}.WithDefaults().Lanes
	b.Run("Ingest", func(b *testing.B) {
		h := newHarness(b, ts)
		tasks := benchTasks(h, b.N)
		h.publish(tasks...)
		b.ResetTimer()
		start := time.Now()
		inst := h.start(startOpts{log: &testenv.LogBuffer{}})
		inst.steps.waitCount(b, "acked", b.N)
		elapsed := time.Since(start)
		b.StopTimer()
		require.NoError(b, inst.in.Close())
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handoffs/s")
	})
	b.Run("RawSignalWithStart", func(b *testing.B) {
		h := newHarness(b, ts)
		tasks := benchTasks(h, b.N)
		queues := make([][]*trigger.DeliveryTask, lanes)
		for i, t := range tasks {
			k := (i % benchKeys) % len(queues)
			queues[k] = append(queues[k], t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(queues))
		for _, q := range queues {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, t := range q {
					if err := rawSignalWithStart(ctx, h.tc, h.cfg.TaskQueue, t); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		close(errs)
		for err := range errs {
			require.NoError(b, err)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handoffs/s")
	})
}

func benchTasks(h *harness, n int) []*trigger.DeliveryTask {
	tasks := make([]*trigger.DeliveryTask, n)
	for i := range tasks {
		tasks[i] = h.task("bench", fmt.Sprintf("doc-%d", i%benchKeys))
		h.subject(tasks[i])
	}
	return tasks
}

// rawSignalWithStart is the call ingest makes, with the same options.
func rawSignalWithStart(ctx context.Context, tc client.Client, taskQueue string, t *trigger.DeliveryTask) error {
	id := ingest.WorkflowID(t.Tenant, t.TriggerID, t.Collection, t.DocKey)
	data, err := t.Encode()
	if err != nil {
		return err
	}
	opts := client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.TenantID.ValueSet(t.Tenant), workflows.TriggerID.ValueSet(t.TriggerID),
			workflows.Collection.ValueSet(t.Collection), workflows.DocKey.ValueSet(t.DocKey),
		),
		Memo:                  map[string]any{"docKey": t.DocKey, "collection": t.Collection},
		StaticSummary:         t.Tenant + " · " + t.Collection + "/" + t.DocKey + " · " + t.TriggerID,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
	params := workflows.StartParams(t)
	_, err = tc.SignalWithStartWorkflow(ctx, id, workflows.TaskSignal, json.RawMessage(data), opts, workflows.DeliveryWorkflow, params)
	return err
}

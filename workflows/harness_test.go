package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// harness is a real worker on a dev server, delivering to a webhook
// recorder and dead-lettering to JetStream, as the worker binary does.
type harness struct {
	c    client.Client
	tq   string
	rec  *testenv.WebhookRecorder
	js   jetstream.JetStream
	nats config.NATS
}

var taskQueueSeq atomic.Int64

func newHarness(t testing.TB, srv *testenv.TemporalServer, opts workflows.Options) *harness {
	t.Helper()
	return newHarnessWith(t, srv, opts, activities.Deps{})
}

// newHarnessWith is newHarness with the activities' dependencies.
func newHarnessWith(t testing.TB, srv *testenv.TemporalServer, opts workflows.Options, deps activities.Deps) *harness {
	t.Helper()
	cfg := config.NATS{}.WithDefaults()
	js := testenv.NATS(t).JetStream(t, cfg.Streams())

	h := &harness{
		c:    srv.Client(t),
		tq:   fmt.Sprintf("deliveries-%d", taskQueueSeq.Add(1)),
		rec:  testenv.Recorder(t),
		js:   js,
		nats: cfg,
	}
	acts, err := activities.New(activities.Config{
		Egress:      egress.Policy{AllowLoopback: true},
		DeadLetters: deadletter.NewPublisher(js, cfg.DeadLetterSubject),
	}, deps)
	require.NoError(t, err)
	w := worker.New(h.c, h.tq, worker.Options{})
	workflows.Register(w, acts, opts)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return h
}

func workflowID(k workflows.DeliveryParams) string {
	return "delivery/" + k.Tenant + "/" + k.TriggerID + "/" + k.Collection + "/" + k.DocKey
}

// keyFor is the input ingest starts docKey's run with.
func keyFor(docKey string) workflows.DeliveryParams {
	t := trigger.DeliveryTask{Tenant: testKey.Tenant, TriggerID: testKey.TriggerID, Collection: testKey.Collection, DocKey: docKey}
	return workflows.StartParams(&t)
}

// liveTask is a task for docKey that the recorder receives.
func (h *harness) task(docKey, eventID string) trigger.DeliveryTask {
	t := task(eventID)
	t.DocKey = docKey
	t.URL = h.rec.URL() + "/hooks"
	t.RetryPolicy = trigger.RetryPolicy{InitialBackoff: trigger.Duration(200 * time.Millisecond), Multiplier: 2, MaxAttempts: 5}
	return t
}

// signal does what ingest does: SignalWithStart the key's workflow.
func (h *harness) signal(t testing.TB, tk trigger.DeliveryTask) {
	t.Helper()
	require.NoError(t, h.signalErr(tk))
}

// start does what ingest does for a key quiet longer than its signal
// window: it starts the key's workflow with the tasks as its input.
func (h *harness) start(t testing.TB, tasks ...trigger.DeliveryTask) {
	t.Helper()
	k := keyFor(tasks[0].DocKey)
	_, err := h.c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: workflowID(k), TaskQueue: h.tq,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.DeliveryWorkflow, workflows.StartInput(&tasks[0], encodeTasks(t, tasks...)))
	require.NoError(t, err)
}

// encodeTasks returns each task's JSON, as ingest receives it.
func encodeTasks(t testing.TB, tasks ...trigger.DeliveryTask) []json.RawMessage {
	t.Helper()
	raws := make([]json.RawMessage, len(tasks))
	for i, tk := range tasks {
		raw, err := json.Marshal(tk)
		require.NoError(t, err)
		raws[i] = raw
	}
	return raws
}

// wait blocks until the key's workflow (following continue-as-new) exits.
func (h *harness) wait(t testing.TB, docKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, h.c.GetWorkflow(ctx, workflowID(keyFor(docKey)), "").Get(ctx, nil))
}

// runs returns the histories of the key's latest chain of runs, oldest
// first, by following ContinuedExecutionRunId back from the latest run.
func (h *harness) runs(t testing.TB, docKey string) []*historypb.History {
	t.Helper()
	id := workflowID(keyFor(docKey))
	var out []*historypb.History
	runID := ""
	for {
		hist := h.history(t, id, runID)
		out = append([]*historypb.History{hist}, out...)
		prev := hist.Events[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		if prev == "" {
			return out
		}
		runID = prev
	}
}

func (h *harness) history(t testing.TB, id, runID string) *historypb.History {
	t.Helper()
	it := h.c.GetWorkflowHistory(context.Background(), id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	hist := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	require.NotEmpty(t, hist.Events)
	return hist
}

func (h *harness) deadLetters(t testing.TB) []deadletter.Record {
	t.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, h.nats.DeadLetterSubject)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []deadletter.Record
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		rec, err := deadletter.Decode(m.Data)
		require.NoError(t, err)
		out = append(out, rec)
	}
	return out
}

// writeHistory stores a history the way `temporal workflow show --output
// json` does, which is what the replayer reads.
func writeHistory(t testing.TB, path string, hist *historypb.History) {
	t.Helper()
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(b, '\n'), 0o644))
}

func fileName(s string) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(s)
}

func countEvents(hists []*historypb.History, typ enumspb.EventType) int {
	n := 0
	for _, h := range hists {
		for _, ev := range h.Events {
			if ev.EventType == typ {
				n++
			}
		}
	}
	return n
}

func saveHistories(t testing.TB, dir, name string, hists []*historypb.History) {
	t.Helper()
	for i, h := range hists {
		writeHistory(t, filepath.Join(dir, fmt.Sprintf("%s-run%d.json", fileName(name), i+1)), h)
	}
}

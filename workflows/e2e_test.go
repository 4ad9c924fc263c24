package workflows_test

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

var record = flag.Bool("record", false, "rewrite testdata/*.json from the end-to-end runs: go test ./workflows -run TestEndToEnd -record")

const historyDir = "testdata"

var quietLogger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))

// script answers the recorder's requests per webhook-id: the listed
// statuses in turn, then 200.
type script struct {
	mu   sync.Mutex
	outs map[string][]int
}

func (s *script) set(eventID string, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs[eventID] = statuses
}

func (s *script) respond(r *testenv.Request) testenv.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.Headers.Get("webhook-id")
	if q := s.outs[id]; len(q) > 0 {
		s.outs[id] = q[1:]
		return testenv.Response{Status: q[0], Body: []byte(fmt.Sprintf(`{"error":"scripted %d"}`, q[0]))}
	}
	return testenv.Response{}
}

// requestsFor lists the webhook-ids the recorder got for docKey, in order.
func requestsFor(h *harness, docKey string) []string {
	var ids []string
	for _, r := range h.rec.Requests() {
		if r.Path == "/hooks/"+docKey {
			ids = append(ids, r.Headers.Get("webhook-id"))
		}
	}
	return ids
}

func (h *harness) liveTask(docKey, eventID string) trigger.DeliveryTask {
	t := h.task(docKey, eventID)
	t.URL = h.rec.URL() + "/hooks/" + docKey
	return t
}

// awaitRequests polls the recorder until docKey got n requests.
func awaitRequests(t *testing.T, h *harness, docKey string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(requestsFor(h, docKey)) >= n }, 30*time.Second, 10*time.Millisecond)
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	srv := testenv.Temporal(t)
	// These scenarios follow the activity retry path from the first
	// attempt; "local first attempt" covers the default.
	opts := replayOptions["retries"]
	h := newHarness(t, srv, opts)
	sc := &script{outs: map[string][]int{}}
	h.rec.Respond(sc.respond)

	// Histories of every scenario are replayed right away and, with
	// -record, kept as the replay corpus.
	replay := func(t *testing.T, name, docKey string) {
		recordAndReplay(t, name, h.runs(t, docKey), opts)
	}

	t.Run("500 500 200 shows three attempts in history", func(t *testing.T) {
		t.Parallel()
		sc.set("evt_retry", 500, 500)
		h.signal(t, h.liveTask("retry", "evt_retry"))
		h.wait(t, "retry")

		require.Equal(t, []string{"evt_retry", "evt_retry", "evt_retry"}, requestsFor(h, "retry"))
		hists := h.runs(t, "retry")
		var scheduled, started []*historypb.HistoryEvent
		for _, ev := range hists[0].Events {
			switch ev.EventType {
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				if ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == activities.DeliverName {
					scheduled = append(scheduled, ev)
				}
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				started = append(started, ev)
			}
		}
		require.Len(t, scheduled, 1, "one Deliver activity")
		attrs := scheduled[0].GetActivityTaskScheduledEventAttributes()
		require.EqualValues(t, 5, attrs.GetRetryPolicy().GetMaximumAttempts())
		require.Equal(t, 200*time.Millisecond, attrs.GetRetryPolicy().GetInitialInterval().AsDuration())
		require.Contains(t, attrs.GetRetryPolicy().GetNonRetryableErrorTypes(), "HTTP_4XX")
		require.Len(t, started, 1)
		st := started[0].GetActivityTaskStartedEventAttributes()
		require.EqualValues(t, 3, st.GetAttempt(), "the started event counts the attempts")
		require.Contains(t, st.GetLastFailure().GetMessage(), "500 Internal Server Error",
			"the previous attempt's failure is in history")
		details := st.GetLastFailure().GetApplicationFailureInfo().GetDetails()
		var f activities.Failure
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(details, &f))
		require.Equal(t, 500, f.Status)
		require.Equal(t, `{"error":"scripted 500"}`, f.Body)
		replay(t, "retries", "retry")
	})

	t.Run("404 is dead-lettered and the key moves on", func(t *testing.T) {
		t.Parallel()
		sc.set("evt_gone", 404)
		h.signal(t, h.liveTask("dlq", "evt_gone"))
		h.signal(t, h.liveTask("dlq", "evt_after"))
		awaitRequests(t, h, "dlq", 2)
		h.signal(t, h.liveTask("dlq", "evt_later"))
		h.wait(t, "dlq")

		require.Equal(t, []string{"evt_gone", "evt_after", "evt_later"}, requestsFor(h, "dlq"), "one attempt for the 404")
		var found bool
		for _, rec := range h.deadLetters(t) {
			if rec.EventID == "evt_gone" {
				found = true
				require.Equal(t, "http-4xx", rec.Reason)
				require.Contains(t, rec.Detail, "404 Not Found")
				require.Equal(t, "dlq", rec.DocKey)
				task, err := trigger.DecodeTask(rec.Task)
				require.NoError(t, err)
				require.Equal(t, "evt_gone", task.EventID)
			}
		}
		require.True(t, found, "dead-letter record on the stream")

		desc, err := h.c.DescribeWorkflow(context.Background(), workflowID(keyFor("dlq")), "")
		require.NoError(t, err)
		failed, ok := desc.TypedSearchAttributes.GetInt64(workflows.FailedDeliveries)
		require.True(t, ok)
		require.EqualValues(t, 1, failed)
		replay(t, "dead-letter", "dlq")
	})

	t.Run("arrival order with duplicates", func(t *testing.T) {
		t.Parallel()
		var want []string
		for i := range 25 {
			id := fmt.Sprintf("evt_o%02d", i)
			h.signal(t, h.liveTask("order", id))
			want = append(want, id)
			if i == 5 {
				h.signal(t, h.liveTask("order", "evt_o02")) // a redelivery
			}
		}
		// A batch, as ingest signals a key's queued tasks, with another
		// redelivery inside.
		batch := []trigger.DeliveryTask{h.liveTask("order", "evt_o25"), h.liveTask("order", "evt_o03"), h.liveTask("order", "evt_o26")}
		require.NoError(t, h.send("order", batch))
		want = append(want, "evt_o25", "evt_o26")
		h.wait(t, "order")
		require.Equal(t, want, requestsFor(h, "order"))
		hists := h.runs(t, "order")
		require.Positive(t, countEvents(hists, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED))
		replay(t, "order", "order")
	})

	t.Run("blocked key resumes on unblock", func(t *testing.T) {
		t.Parallel()
		sc.set("evt_stuck", 400)
		stuck := h.liveTask("block", "evt_stuck")
		stuck.OnFailure = trigger.FailureBlock
		h.signal(t, stuck)
		h.signal(t, h.liveTask("block", "evt_queued"))
		id := workflowID(keyFor("block"))
		require.Eventually(t, func() bool {
			v, err := h.c.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
			if err != nil {
				return false
			}
			var s workflows.Status
			return v.Get(&s) == nil && s.Blocked != nil && s.Pending == 2
		}, 30*time.Second, 20*time.Millisecond)
		require.Equal(t, []string{"evt_stuck"}, requestsFor(h, "block"))

		require.NoError(t, h.c.SignalWorkflow(context.Background(), id, "", workflows.UnblockSignal, workflows.Unblock{}))
		h.wait(t, "block")
		require.Equal(t, []string{"evt_stuck", "evt_stuck", "evt_queued"}, requestsFor(h, "block"))
		replay(t, "block", "block")
	})

	t.Run("local first attempt", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv, replayOptions["local-first-attempt"])
		sc := &script{outs: map[string][]int{"evt_l1": {500}, "evt_l3": {404}}}
		h.rec.Respond(sc.respond)
		var batch []trigger.DeliveryTask
		for _, id := range []string{"evt_l0", "evt_l1", "evt_l2", "evt_l3"} {
			batch = append(batch, h.liveTask("local", id))
		}
		require.NoError(t, h.send("local", batch))
		h.wait(t, "local")
		require.Equal(t, []string{"evt_l0", "evt_l1", "evt_l1", "evt_l2", "evt_l3"}, requestsFor(h, "local"))
		var dead bool
		for _, rec := range h.deadLetters(t) {
			if rec.EventID == "evt_l3" {
				dead = true
				require.Equal(t, "http-4xx", rec.Reason, "a 4xx on the local first attempt is final")
			}
		}
		require.True(t, dead, "the 404 is dead-lettered")
		hists := h.runs(t, "local")
		require.Positive(t, countEvents(hists, enumspb.EVENT_TYPE_MARKER_RECORDED))
		var retried bool
		for _, ev := range hists[0].Events {
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activities.DeliverName {
				retried = true
				require.EqualValues(t, 4, a.GetRetryPolicy().GetMaximumAttempts(), "the local attempt counts")
			}
		}
		require.True(t, retried, "the failed task is retried as a regular activity")
		recordAndReplay(t, "local-first-attempt", hists, replayOptions["local-first-attempt"])
	})

	t.Run("the retry marker holds the policy the retries use", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv, replayOptions["retry-policy"])
		sc := &script{outs: map[string][]int{"evt_own": {500}, "evt_default": {500}}}
		h.rec.Respond(sc.respond)
		// One trigger sets maxAttempts itself, the other leaves it to the
		// worker's default (5): only the second decision depends on the
		// worker, so only it is recorded.
		own := h.liveTask("policy", "evt_own")
		own.RetryPolicy = trigger.RetryPolicy{MaxAttempts: 2, InitialBackoff: trigger.Duration(200 * time.Millisecond)}
		def := h.liveTask("policy", "evt_default")
		def.RetryPolicy = trigger.RetryPolicy{InitialBackoff: trigger.Duration(200 * time.Millisecond), Multiplier: 3}
		h.signal(t, own)
		h.signal(t, def)
		h.wait(t, "policy")
		require.Equal(t, []string{"evt_own", "evt_own", "evt_default", "evt_default"}, requestsFor(h, "policy"))

		hists := h.runs(t, "policy")
		require.Len(t, hists, 1)
		var recorded []trigger.RetryPolicy
		var summaries []string
		versions := 0
		retries := map[string]*commonpb.RetryPolicy{}
		dc := converter.GetDefaultDataConverter()
		for _, ev := range hists[0].Events {
			if a := ev.GetMarkerRecordedEventAttributes(); a != nil {
				switch a.GetMarkerName() {
				case "SideEffect":
					var p trigger.RetryPolicy
					require.NoError(t, dc.FromPayloads(a.GetDetails()["data"], &p))
					recorded = append(recorded, p)
					var summary string
					require.NoError(t, dc.FromPayload(ev.GetUserMetadata().GetSummary(), &summary))
					summaries = append(summaries, summary)
				case "Version":
					versions++
				}
			}
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activities.DeliverName {
				var tk trigger.DeliveryTask
				require.NoError(t, dc.FromPayloads(a.GetInput(), &tk))
				retries[tk.EventID] = a.GetRetryPolicy()
			}
		}
		require.Equal(t, 1, versions, "the change is versioned once per run")
		require.Equal(t, []trigger.RetryPolicy{{
			MaxAttempts: 5, InitialBackoff: trigger.Duration(200 * time.Millisecond),
			MaxBackoff: trigger.Duration(5 * time.Minute), Multiplier: 3,
		}}, recorded, "one marker, with the policy evt_default's retries use: the trigger's fields and the worker's maxAttempts")
		require.Equal(t, []string{"retry policy of evt_default: 5 attempts (the worker's default)"}, summaries)
		// The activities run under what the marker says (less the batch's
		// attempt), and evt_own under its own policy.
		require.EqualValues(t, 4, retries["evt_default"].GetMaximumAttempts())
		require.Equal(t, 600*time.Millisecond, retries["evt_default"].GetInitialInterval().AsDuration())
		require.EqualValues(t, 1, retries["evt_own"].GetMaximumAttempts())
		// Replayed with a worker default of one attempt, the recorded
		// policy still decides that evt_default is retried.
		recordAndReplay(t, "retry-policy", hists, replayOptions["retry-policy"])
	})

	t.Run("a cold key costs one workflow task: 6 events started, 7 signalled", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv, replayOptions["cold-start"])
		// Ingest starts a quiet key's run with its task, and signals one
		// handed off lately (whose run may be open).
		h.start(t, h.liveTask("cold", "evt_cold"))
		h.signal(t, h.liveTask("cold-signalled", "evt_cold_signalled"))
		wantEvents := func(first ...enumspb.EventType) []enumspb.EventType {
			// The workflow task that delivers (the local activity's
			// marker) also closes the run: no quiet timer for a key that
			// had one task.
			return append(first,
				enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED,
				enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, enumspb.EVENT_TYPE_MARKER_RECORDED,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
		}
		for _, c := range []struct {
			key, event, history string
			want                []enumspb.EventType
		}{
			{"cold", "evt_cold", "cold-start", wantEvents(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)},
			{"cold-signalled", "evt_cold_signalled", "cold-close", wantEvents(enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)},
		} {
			h.wait(t, c.key)
			hists := h.runs(t, c.key)
			require.Len(t, hists, 1)
			var events []enumspb.EventType
			for _, ev := range hists[0].Events {
				events = append(events, ev.EventType)
			}
			require.Equal(t, c.want, events, c.key)
			var res workflows.DeliveryResult
			require.NoError(t, h.c.GetWorkflow(context.Background(), workflowID(keyFor(c.key)), "").Get(context.Background(), &res))
			require.Equal(t, []string{c.event}, res.Seen, "the closed run lists what it delivered, for ingest")
			require.Len(t, requestsFor(h, c.key), 1, c.key)
			recordAndReplay(t, c.history, hists, replayOptions[c.history])
		}
	})

	t.Run("a task arriving while a cold run closes is delivered once, after it", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv, workflows.Options{QuietPeriod: time.Second})
		// The first delivery waits until the second task is signalled:
		// the run then tries to close with a signal pending, the server
		// refuses, and the replayed run must not post the first again.
		hold, held := make(chan struct{}), make(chan struct{})
		var once sync.Once
		h.rec.Respond(func(r *testenv.Request) testenv.Response {
			if r.Headers.Get("webhook-id") == "evt_race1" {
				once.Do(func() { close(held); <-hold })
			}
			return testenv.Response{}
		})
		h.signal(t, h.liveTask("race", "evt_race1"))
		<-held
		h.signal(t, h.liveTask("race", "evt_race2"))
		close(hold)
		awaitRequests(t, h, "race", 2)
		h.wait(t, "race")
		require.Equal(t, []string{"evt_race1", "evt_race2"}, requestsFor(h, "race"), "each once, in order")
		refused := false
		for _, ev := range h.runs(t, "race")[0].Events {
			if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil && a.GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
				refused = true
			}
		}
		require.True(t, refused, "the run's first attempt to close was refused, so its local activity ran again")
	})

	t.Run("a forged task signalled straight to the workflow is refused", func(t *testing.T) {
		t.Parallel()
		pub, priv, err := ed25519.GenerateKey(nil)
		require.NoError(t, err)
		_, attackerKey, err := ed25519.GenerateKey(nil)
		require.NoError(t, err)
		verifier, err := tasksig.NewVerifier(map[string]ed25519.PublicKey{"watcher-1": pub})
		require.NoError(t, err)
		h := newHarnessWith(t, srv, workflows.Options{QuietPeriod: time.Second}, activities.Deps{Verifier: verifier})
		signer, _ := tasksig.NewSigner("watcher-1", priv)
		attacker, _ := tasksig.NewSigner("watcher-1", attackerKey)

		forged := h.liveTask("forged", "evt_forged")
		attacker.Sign(&forged)
		unsigned := h.liveTask("forged", "evt_unsigned")
		good := h.liveTask("forged", "evt_signed")
		signer.Sign(&good)
		require.NoError(t, h.send("forged", []trigger.DeliveryTask{forged, unsigned, good}))
		awaitRequests(t, h, "forged", 1)
		h.wait(t, "forged")

		require.Equal(t, []string{"evt_signed"}, requestsFor(h, "forged"), "nothing but the signed task reaches the receiver")
		reasons := map[string]string{}
		for _, rec := range h.deadLetters(t) {
			reasons[rec.EventID] = rec.Reason
		}
		require.Equal(t, "unauthenticated", reasons["evt_forged"])
		require.Equal(t, "unauthenticated", reasons["evt_unsigned"])
	})

	t.Run("continue-as-new keeps order and dedupe", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv, replayOptions["continue-as-new"])
		// The first two arrive together, as ingest batches a key's queued
		// tasks: a run that saw two stays open for the next.
		want := []string{"evt_c00", "evt_c01"}
		require.NoError(t, h.send("can", []trigger.DeliveryTask{h.liveTask("can", "evt_c00"), h.liveTask("can", "evt_c01")}))
		awaitRequests(t, h, "can", 2)
		for i := 2; i < 12; i++ {
			id := fmt.Sprintf("evt_c%02d", i)
			h.signal(t, h.liveTask("can", id))
			want = append(want, id)
			awaitRequests(t, h, "can", i+1)
		}
		h.signal(t, h.liveTask("can", "evt_c00")) // remembered across runs
		h.signal(t, h.liveTask("can", "evt_c12"))
		want = append(want, "evt_c12")
		h.wait(t, "can")
		require.Equal(t, want, requestsFor(h, "can"))
		hists := h.runs(t, "can")
		require.Greater(t, len(hists), 1, "the history cap made it continue as new")
		for i, hist := range hists[:len(hists)-1] {
			last := hist.Events[len(hist.Events)-1]
			require.Equal(t, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, last.EventType, "run %d", i+1)
		}
		// The first two runs are enough to cover both a run that
		// continues as new and one that starts from a carried state.
		recordAndReplay(t, "continue-as-new", hists[:2], replayOptions["continue-as-new"])
	})
}

// replayOptions are the options each recorded scenario ran with, by the
// name its history files start with. Options are not recorded in history,
// and those that shape a run's commands (see workflows.Options) must be
// the same on replay.
var replayOptions = map[string]workflows.Options{
	"retries":             {QuietPeriod: time.Second, ActivityFirstAttempt: true},
	"dead-letter":         {QuietPeriod: time.Second, ActivityFirstAttempt: true},
	"order":               {QuietPeriod: time.Second, ActivityFirstAttempt: true},
	"block":               {QuietPeriod: time.Second, ActivityFirstAttempt: true},
	"local-first-attempt": {QuietPeriod: time.Second},
	"retry-policy":        {QuietPeriod: time.Second},
	"continue-as-new":     {QuietPeriod: time.Second, MaxHistoryLength: 30},
	"redeliver":           {QuietPeriod: time.Second},
	"cold-close":          {QuietPeriod: time.Minute},
	"cold-start":          {QuietPeriod: time.Minute},
}

// recordAndReplay saves hists as name's history files and replays them
// right away; with -record it keeps them as the replay corpus.
func recordAndReplay(t *testing.T, name string, hists []*historypb.History, opts workflows.Options) {
	t.Helper()
	dir := t.TempDir()
	if *record {
		dir = historyDir
	}
	saveHistories(t, dir, name, hists)
	replayDir(t, dir, fileName(name)+"-run*.json", opts)
}

// replayDir replays every history matching pattern in dir against the
// current workflow code registered with opts. The worker-file options
// (QuietPeriod, Retry, HTTPTimeout) are deliberately not the ones the runs
// used: a worker restarted with other values must replay open runs.
func replayDir(t *testing.T, dir, pattern string, opts workflows.Options) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no histories match %s in %s", pattern, dir)
	opts.QuietPeriod = 7 * time.Minute
	opts.HTTPTimeout = 3 * time.Second
	opts.Retry = trigger.RetryPolicy{MaxAttempts: 1, InitialBackoff: trigger.Duration(time.Minute)}
	r := worker.NewWorkflowReplayer()
	workflows.RegisterWorkflow(r, opts)
	for _, f := range files {
		require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(quietLogger, f), "replaying %s", f)
	}
}

// TestReplay checks that the workflow code still replays the histories
// recorded from real runs (regenerate with -record, see TestEndToEnd).
func TestReplay(t *testing.T) {
	t.Parallel()
	if *record {
		t.Skip("recording")
	}
	entries, err := os.ReadDir(historyDir)
	require.NoError(t, err)
	var n int
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	require.GreaterOrEqual(t, n, 8, "recorded histories are missing from %s", historyDir)
	for name, opts := range replayOptions {
		replayDir(t, historyDir, name+"-run*.json", opts)
	}
}

package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// testOptions keep retries short and visible on the test clock.
var testOptions = workflows.Options{
	QuietPeriod: time.Minute,
	Retry: trigger.RetryPolicy{
		MaxAttempts:    5,
		InitialBackoff: trigger.Duration(time.Second),
		MaxBackoff:     trigger.Duration(10 * time.Second),
		Multiplier:     2,
	},
}

var testKey = workflows.DeliveryParams{Tenant: "acme", TriggerID: "orders-hook", Collection: "orders", DocKey: "o-1"}

func task(id string) trigger.DeliveryTask {
	return trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: id,
		Tenant: testKey.Tenant, TriggerID: testKey.TriggerID, Collection: testKey.Collection, DocKey: testKey.DocKey,
		Type: trigger.EventUpdate, After: []byte(`{"n":1}`), Position: "p-" + id,
		CommitTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), URL: "https://hooks.example.com/in",
	}
}

// foreignTask is task id for another document key, o-2.
func foreignTask(id string) trigger.DeliveryTask {
	t := task(id)
	t.DocKey = "o-2"
	return t
}

// outcome scripts one attempt of one event: a status (0 = 200).
type outcome struct {
	status     int
	retryAfter time.Duration
	// failType fails the attempt, without retry, with this type instead
	// of the status's.
	failType string
}

type call struct {
	eventID string
	attempt int32
	batch   bool
	at      time.Time
}

// receiver fakes the activities: a scripted receiver per event id, and a
// record of every attempt with the test clock's time.
type receiver struct {
	env *testsuite.TestWorkflowEnvironment

	mu          sync.Mutex
	script      map[string][]outcome
	calls       []call
	delivered   []string
	deadLetters []deadletter.Record
}

func newReceiver(env *testsuite.TestWorkflowEnvironment) *receiver {
	r := &receiver{env: env, script: map[string][]outcome{}}
	env.RegisterActivityWithOptions(r.Deliver, activity.RegisterOptions{Name: activities.DeliverName})
	env.RegisterActivityWithOptions(r.DeliverBatch, activity.RegisterOptions{Name: activities.DeliverBatchName})
	env.RegisterActivityWithOptions(r.DeadLetter, activity.RegisterOptions{Name: activities.DeadLetterName})
	return r
}

func (r *receiver) respond(eventID string, outs ...outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script[eventID] = append(r.script[eventID], outs...)
}

// attempt answers like activities.Activities would.
func (r *receiver) attempt(ctx context.Context, t trigger.DeliveryTask, batch bool) (activities.Result, *activities.Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{eventID: t.EventID, attempt: activity.GetInfo(ctx).Attempt, batch: batch, at: r.env.Now()})
	out := outcome{status: 200}
	if s := r.script[t.EventID]; len(s) > 0 {
		out, r.script[t.EventID] = s[0], s[1:]
	}
	if out.status < 300 {
		r.delivered = append(r.delivered, t.EventID)
		return activities.Result{EventID: t.EventID, Status: out.status}, nil
	}
	f := &activities.Failure{
		EventID: t.EventID, Status: out.status, RetryAfterMS: out.retryAfter.Milliseconds(),
		Message: fmt.Sprintf("POST https://hooks.example.com: %d %s", out.status, http.StatusText(out.status)),
		Body:    "nope",
	}
	switch {
	case out.failType != "":
		f.Type, f.Status = out.failType, 0
	case out.status == 429:
		f.Type, f.Retryable = activities.TypeHTTPThrottled, true
	case out.status >= 500:
		f.Type, f.Retryable = activities.TypeHTTP5xx, true
	default:
		f.Type = activities.TypeHTTP4xx
	}
	return activities.Result{}, f
}

func (r *receiver) Deliver(ctx context.Context, t trigger.DeliveryTask) (activities.Result, error) {
	res, f := r.attempt(ctx, t, false)
	if f != nil {
		return res, f.ApplicationError()
	}
	return res, nil
}

func (r *receiver) DeliverBatch(ctx context.Context, ts []trigger.DeliveryTask) (activities.BatchResult, error) {
	var out activities.BatchResult
	for _, t := range ts {
		res, f := r.attempt(ctx, t, true)
		if f != nil {
			out.Failure = f
			return out, nil
		}
		out.Delivered++
		out.Results = append(out.Results, res)
	}
	return out, nil
}

func (r *receiver) DeadLetter(_ context.Context, rec deadletter.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadLetters = append(r.deadLetters, rec)
	return nil
}

func (r *receiver) snapshot() (calls []call, delivered []string, dls []deadletter.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...), append([]string(nil), r.delivered...), append([]deadletter.Record(nil), r.deadLetters...)
}

func (r *receiver) callsFor(id string) []call {
	calls, _, _ := r.snapshot()
	var out []call
	for _, c := range calls {
		if c.eventID == id {
			out = append(out, c)
		}
	}
	return out
}

// eachMode runs a test with the first attempt as a regular activity and as
// a local one; the observable behaviour must be the same.
func eachMode(t *testing.T, opts workflows.Options, fn func(t *testing.T, opts workflows.Options)) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			t.Parallel()
			o := opts
			o.ActivityFirstAttempt = !local
			fn(t, o)
		})
	}
}

// eachEnv runs a test in each mode, each in an environment of its own.
func eachEnv(t *testing.T, opts workflows.Options, fn func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver)) {
	eachMode(t, opts, func(t *testing.T, opts workflows.Options) {
		env, r := newEnv(t, opts)
		fn(t, env, r)
	})
}

// eachBool runs fn as parallel subtests name=false and name=true.
func eachBool(t *testing.T, name string, fn func(t *testing.T, v bool)) {
	for _, v := range []bool{false, true} {
		t.Run(fmt.Sprintf("%s=%v", name, v), func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

func newEnv(t *testing.T, opts workflows.Options) (*testsuite.TestWorkflowEnvironment, *receiver) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := s.NewTestWorkflowEnvironment()
	workflows.RegisterWorkflow(env, opts)
	return env, newReceiver(env)
}

// tWriter shows the SDK's and the workflow's log lines with the test's
// output, only when it fails or runs with -v.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// signalAt sends tasks at d after the start; d = 0 is what ingest's
// SignalWithStart does.
func signalAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, tasks ...trigger.DeliveryTask) {
	env.RegisterDelayedCallback(func() {
		for _, t := range tasks {
			env.SignalWorkflow(workflows.TaskSignal, t)
		}
	}, d)
}

func execute(t *testing.T, env *testsuite.TestWorkflowEnvironment, p workflows.DeliveryParams) {
	t.Helper()
	env.ExecuteWorkflow(workflows.DeliveryWorkflow, p)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
}

// signalFailing sends the task id at the start; batched, "next" comes in the
// same signal, so the two go out in one batch activity.
func signalFailing(env *testsuite.TestWorkflowEnvironment, id string, batched bool) {
	if batched {
		signalAt(env, 0, task(id), task("next"))
	} else {
		signalAt(env, 0, task(id))
	}
}

// requireGaps checks that id was attempted once more than there are gaps,
// the attempts spaced by gaps, and returns its calls.
func requireGaps(t *testing.T, r *receiver, id string, gaps ...time.Duration) []call {
	t.Helper()
	calls := r.callsFor(id)
	require.Len(t, calls, len(gaps)+1)
	for i, gap := range gaps {
		require.Equal(t, gap, calls[i+1].at.Sub(calls[i].at), "gap before attempt %d", i+2)
	}
	return calls
}

// requireOneDeadLetter checks that r delivered exactly delivered and
// dead-lettered one task, for reason, with detail in its Detail, and
// returns that record.
func requireOneDeadLetter(t *testing.T, r *receiver, delivered []string, reason, detail string) deadletter.Record {
	t.Helper()
	_, got, dls := r.snapshot()
	require.Equal(t, delivered, got)
	require.Len(t, dls, 1)
	require.Equal(t, reason, dls[0].Reason)
	require.Contains(t, dls[0].Detail, detail)
	return dls[0]
}

// continuedAsNew checks that the run continued as new and returns the
// error and the next run's parameters.
func continuedAsNew(t *testing.T, env *testsuite.TestWorkflowEnvironment) (*workflow.ContinueAsNewError, workflows.DeliveryParams) {
	t.Helper()
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next workflows.DeliveryParams
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return can, next
}

func TestDeliversInArrivalOrder(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"), task("e2"), task("e3"), task("e4"))
		signalAt(env, 5*time.Second, task("e5"))
		signalAt(env, 6*time.Second, task("e6"), task("e7"))
		execute(t, env, testKey)

		calls, delivered, dls := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7"}, delivered)
		require.Empty(t, dls)
		require.True(t, calls[0].batch, "tasks queued together go out in one batch activity")
	})
}

func TestDuplicateEventDropped(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"), task("e2"), task("e1"))
		signalAt(env, 10*time.Second, task("e2"), task("e3"))
		execute(t, env, testKey)

		_, delivered, _ := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e3"}, delivered)
	})
}

func TestNotFoundIsDeadLetteredAfterOneAttempt(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		eachBool(t, "batched", func(t *testing.T, batched bool) {
			env, r := newEnv(t, opts)
			r.respond("bad", outcome{status: 404})
			var failed []int64
			if batched {
				signalAt(env, 0, task("bad"), task("next"))
			} else {
				signalAt(env, 0, task("bad"))
				signalAt(env, time.Second, task("next"))
			}
			env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
				v, _ := args.Get(0).(temporal.SearchAttributes).GetInt64(workflows.FailedDeliveries)
				failed = append(failed, v)
			}).Return(nil)
			execute(t, env, testKey)

			require.Len(t, r.callsFor("bad"), 1, "a 404 is not retried")
			rec := requireOneDeadLetter(t, r, []string{"next"}, "http-4xx", "404 Not Found")
			require.Equal(t, deadletter.StageDelivery, rec.Stage)
			require.Equal(t, "bad", rec.ID)
			require.Equal(t, "bad", rec.EventID)
			require.Equal(t, testKey.DocKey, rec.DocKey)
			require.Contains(t, rec.Detail, "nope", "the receiver's answer is quoted")
			got, err := trigger.DecodeTask(rec.Task)
			require.NoError(t, err, "the record carries the task for redrive")
			require.Equal(t, "bad", got.EventID)
			require.Equal(t, []int64{1}, failed)
		})
	})
}

func TestServerErrorsRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		eachBool(t, "batched", func(t *testing.T, batched bool) {
			env, r := newEnv(t, opts)
			r.respond("flaky", outcome{status: 500}, outcome{status: 500}, outcome{status: 200})
			signalFailing(env, "flaky", batched)
			execute(t, env, testKey)

			// The initial backoff, then backoff × multiplier.
			calls := requireGaps(t, r, "flaky", time.Second, 2*time.Second)
			_, delivered, dls := r.snapshot()
			require.Empty(t, dls)
			if batched {
				require.Equal(t, []string{"flaky", "next"}, delivered)
				require.True(t, calls[0].batch)
				require.Equal(t, []int32{1, 2}, []int32{calls[1].attempt, calls[2].attempt},
					"the retries run as one Deliver activity, attempts numbered in history")
			}
		})
	})
}

func TestRetryAfterSetsNextAttempt(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		eachBool(t, "batched", func(t *testing.T, batched bool) {
			env, r := newEnv(t, opts)
			r.respond("busy", outcome{status: 429, retryAfter: 7 * time.Second}, outcome{status: 200})
			signalFailing(env, "busy", batched)
			execute(t, env, testKey)

			requireGaps(t, r, "busy", 7*time.Second)
		})
	})
}

func TestAttemptsExhaustedDeadLetters(t *testing.T) {
	t.Parallel()
	opts := testOptions
	opts.Retry.MaxAttempts = 3
	eachEnv(t, opts, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		r.respond("down", outcome{status: 503}, outcome{status: 503}, outcome{status: 503})
		signalAt(env, 0, task("down"), task("next"))
		execute(t, env, testKey)

		require.Len(t, r.callsFor("down"), 3, "the batch attempt counts towards maxAttempts")
		requireOneDeadLetter(t, r, []string{"next"}, "attempts-exhausted", "503")
	})
}

func TestTaskRetryPolicyOverridesDefaults(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		r.respond("x", outcome{status: 500}, outcome{status: 500}, outcome{status: 500})
		tk := task("x")
		tk.RetryPolicy = trigger.RetryPolicy{MaxAttempts: 2, InitialBackoff: trigger.Duration(3 * time.Second)}
		signalAt(env, 0, tk)
		execute(t, env, testKey)

		requireGaps(t, r, "x", 3*time.Second)
	})
}

func TestContinueAsNewCarriesQueueAndDedupeSet(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		env, r := newEnv(t, opts)
		signalAt(env, 0, task("e1"))
		env.RegisterDelayedCallback(func() {
			env.SetContinueAsNewSuggested(true)
			// Buffered without waking the workflow, as signals that arrive
			// together are: only draining before continue-as-new saves e2 and
			// e3 when e4 wakes it.
			env.SignalWorkflowSkippingWorkflowTask(workflows.TaskSignal, task("e2"))
			env.SignalWorkflowSkippingWorkflowTask(workflows.TaskSignal, task("e3"))
			env.SignalWorkflow(workflows.TaskSignal, task("e4"))
		}, 10*time.Second)
		env.ExecuteWorkflow(workflows.DeliveryWorkflow, testKey)

		require.True(t, env.IsWorkflowCompleted())
		can, next := continuedAsNew(t, env)
		require.Equal(t, workflows.DeliveryWorkflow, can.WorkflowType.Name)

		_, delivered, _ := r.snapshot()
		require.Equal(t, []string{"e1"}, delivered)
		require.Equal(t, testKey.DocKey, next.DocKey)
		var pending []string
		for _, p := range next.Pending {
			pending = append(pending, p.EventID)
		}
		require.Equal(t, []string{"e2", "e3", "e4"}, pending)
		require.Equal(t, []string{"e1", "e2", "e3", "e4"}, next.Seen)

		// The next run delivers the carried queue and still knows e1 and e3.
		env2, r2 := newEnv(t, opts)
		signalAt(env2, 0, task("e1"), task("e3"), task("e5"))
		execute(t, env2, next)
		_, delivered, _ = r2.snapshot()
		require.Equal(t, []string{"e2", "e3", "e4", "e5"}, delivered)
	})
}

func TestRedrivenTaskIsDeliveredAgain(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	redriven := task("e1")
	redriven.Redrive = 7
	signalAt(env, 0, task("e1"))
	signalAt(env, time.Second, task("e1"), redriven, redriven)
	execute(t, env, testKey)

	_, delivered, _ := r.snapshot()
	require.Equal(t, []string{"e1", "e1"}, delivered, "the redrive goes out once more, with the same webhook-id")
}

func TestDedupeSetIsBounded(t *testing.T) {
	t.Parallel()
	opts := testOptions
	opts.DedupeSize = 3
	env, r := newEnv(t, opts)
	signalAt(env, 0, task("e1"), task("e2"), task("e3"), task("e4"))
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflowSkippingWorkflowTask(workflows.TaskSignal, task("e1")) // forgotten: queued again
		env.SignalWorkflow(workflows.TaskSignal, task("e4"))                     // remembered: dropped
	}, 10*time.Second)
	env.ExecuteWorkflow(workflows.DeliveryWorkflow, testKey)

	_, next := continuedAsNew(t, env)
	require.Equal(t, []string{"e4", "e1"}, next.Seen[1:], "oldest ids fall out first")
	require.Len(t, next.Seen, 3)
	require.Len(t, next.Pending, 1)
	_, delivered, _ := r.snapshot()
	require.Equal(t, []string{"e1", "e2", "e3", "e4"}, delivered)
}

func TestSignalDuringFinalTaskIsDelivered(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"))
		// Lands in the buffer without a workflow task of its own, so the run
		// sees it only in the task where the quiet timer fires: the one that
		// would otherwise complete the workflow.
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflowSkippingWorkflowTask(workflows.TaskSignal, task("late"))
		}, 30*time.Second)
		start := env.Now()
		execute(t, env, testKey)

		_, delivered, _ := r.snapshot()
		require.Equal(t, []string{"e1", "late"}, delivered)
		calls := r.callsFor("late")
		require.Equal(t, time.Minute, calls[0].at.Sub(start), "picked up when the quiet timer fired")
	})
}

func TestQuietPeriodExit(t *testing.T) {
	t.Parallel()
	opts := testOptions
	opts.QuietPeriod = 10 * time.Second
	eachEnv(t, opts, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"))
		signalAt(env, 5*time.Second, task("e2"))
		start := env.Now()
		execute(t, env, testKey)

		_, delivered, _ := r.snapshot()
		require.Equal(t, []string{"e1", "e2"}, delivered)
		require.Equal(t, 15*time.Second, env.Now().Sub(start), "exits one quiet period after the last task")
	})
}

func TestBlockedKeyWaitsForOperator(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		eachBool(t, "skip", func(t *testing.T, skip bool) {
			env, r := newEnv(t, opts)
			r.respond("stuck", outcome{status: 400})
			stuck := task("stuck")
			stuck.OnFailure = trigger.FailureBlock
			signalAt(env, 0, stuck)
			signalAt(env, time.Second, task("after1"))
			// A key without a blocked task ignores unblock.
			var statusWhileBlocked workflows.Status
			env.RegisterDelayedCallback(func() {
				v, err := env.QueryWorkflow(workflows.StatusQuery)
				require.NoError(t, err)
				require.NoError(t, v.Get(&statusWhileBlocked))
				env.SignalWorkflow(workflows.TaskSignal, task("after2"))
			}, time.Hour)
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(workflows.UnblockSignal, workflows.Unblock{Skip: skip})
			}, 2*time.Hour)
			execute(t, env, testKey)

			require.NotNil(t, statusWhileBlocked.Blocked, "still blocked an hour later: no quiet exit")
			require.Equal(t, "stuck", statusWhileBlocked.Blocked.EventID)
			require.Equal(t, "http-4xx", statusWhileBlocked.Blocked.Reason)
			require.Equal(t, []string{"stuck", "after1"}, statusWhileBlocked.PendingEventIDs)
			require.EqualValues(t, 1, statusWhileBlocked.Failed)

			calls, delivered, dls := r.snapshot()
			if skip {
				rec := requireOneDeadLetter(t, r, []string{"after1", "after2"}, "http-4xx", "skipped by an operator")
				require.Equal(t, "stuck", rec.EventID)
			} else {
				require.Equal(t, []string{"stuck", "after1", "after2"}, delivered)
				require.Empty(t, dls)
			}
			for _, c := range calls {
				if c.eventID != "stuck" {
					require.GreaterOrEqual(t, c.at.Sub(calls[0].at), 2*time.Hour, "nothing passes a blocked key")
				}
			}
		})
	})
}

// A task whose stored image is gone is dead-lettered even when its
// trigger blocks the key on failure: no retry can bring the image back,
// so a block would hold the key for good.
func TestMissingImageNeverBlocksTheKey(t *testing.T) {
	t.Parallel()
	eachMode(t, testOptions, func(t *testing.T, opts workflows.Options) {
		env, r := newEnv(t, opts)
		r.respond("gone", outcome{status: 500, failType: activities.TypeImageMissing})
		gone := task("gone")
		gone.OnFailure = trigger.FailureBlock
		signalAt(env, 0, gone, task("next"))
		execute(t, env, testKey)

		require.Len(t, r.callsFor("gone"), 1, "not retried")
		requireOneDeadLetter(t, r, []string{"next"}, "image-missing", "")
	})
}

func TestBlockedKeySurvivesContinueAsNew(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	r.respond("stuck", outcome{status: 422})
	stuck := task("stuck")
	stuck.OnFailure = trigger.FailureBlock
	signalAt(env, 0, stuck)
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(workflows.TaskSignal, task("next"))
	}, time.Hour)
	env.ExecuteWorkflow(workflows.DeliveryWorkflow, testKey)
	_, next := continuedAsNew(t, env)
	require.NotNil(t, next.Blocked)
	require.Equal(t, "stuck", next.Blocked.EventID)
	require.Len(t, next.Pending, 2)
	require.EqualValues(t, 1, next.Failed)

	// The new run stays blocked, past its quiet period, until released.
	env2, r2 := newEnv(t, testOptions)
	env2.RegisterDelayedCallback(func() {
		env2.SignalWorkflow(workflows.UnblockSignal, workflows.Unblock{Skip: true})
	}, 3*time.Hour)
	start := env2.Now()
	execute(t, env2, next)
	calls, delivered, dls := r2.snapshot()
	require.Equal(t, []string{"next"}, delivered)
	require.GreaterOrEqual(t, calls[0].at.Sub(start), 3*time.Hour)
	require.Len(t, dls, 1)
	require.Equal(t, "stuck", dls[0].EventID)
}

func TestUnblockWhenNotBlockedIsIgnored(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	signalAt(env, 0, task("e1"))
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(workflows.UnblockSignal, workflows.Unblock{Skip: true})
	}, time.Second)
	execute(t, env, testKey)
	_, delivered, dls := r.snapshot()
	require.Equal(t, []string{"e1"}, delivered)
	require.Empty(t, dls)
}

func TestInvalidSignalIsDeadLettered(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		other := foreignTask("foreign")
		signalAt(env, 0, task("e1"))
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(workflows.TaskSignal, map[string]any{"v": 99, "eventId": "weird"})
			env.SignalWorkflow(workflows.TaskSignal, "not a task")
			env.SignalWorkflow(workflows.TaskSignal, other)
			env.SignalWorkflow(workflows.TaskSignal, task("e2"))
		}, time.Second)
		execute(t, env, testKey)

		_, delivered, dls := r.snapshot()
		require.Equal(t, []string{"e1", "e2"}, delivered)
		require.Len(t, dls, 3)
		for _, d := range dls {
			require.Equal(t, "invalid-task", d.Reason)
			require.NotEmpty(t, d.Payload)
			require.NotEmpty(t, d.ID)
		}
		require.Contains(t, dls[0].Detail, "v is 99")
		require.Contains(t, dls[2].Detail, "o-2")
	})
}

func TestSignalCarryingSeveralTasks(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		other := foreignTask("foreign")
		signalAt(env, 0, task("e1"))
		env.RegisterDelayedCallback(func() {
			// As ingest batches a key's queued tasks: in order, one of them a
			// redelivery, one for another key.
			env.SignalWorkflow(workflows.TaskSignal, []trigger.DeliveryTask{task("e2"), task("e1"), other, task("e3")})
			env.SignalWorkflow(workflows.TaskSignal, []trigger.DeliveryTask{task("e4")})
			env.SignalWorkflow(workflows.TaskSignal, json.RawMessage(` [1]`))
		}, time.Second)
		execute(t, env, testKey)

		_, delivered, dls := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e3", "e4"}, delivered)
		require.Len(t, dls, 2)
		require.Contains(t, dls[0].Detail, "o-2", "the foreign task alone is dead-lettered")
		require.Contains(t, dls[1].Detail, "does not decode")
		require.JSONEq(t, "1", string(dls[1].Payload), "the element is kept")
	})
}

func TestBatchActivityFailureFallsBackToSingle(t *testing.T) {
	t.Parallel()
	env, r := newEnv(t, testOptions)
	// Replace the batch activity with one that dies after heartbeating one
	// delivered task, as a crashed worker's batch would.
	env.OnActivity(activities.DeliverBatchName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, ts []trigger.DeliveryTask) (activities.BatchResult, error) {
			_, _ = r.Deliver(ctx, ts[0])
			return activities.BatchResult{}, errors.New("worker lost")
		})
	signalAt(env, 0, task("e1"), task("e2"), task("e3"))
	execute(t, env, testKey)
	_, delivered, _ := r.snapshot()
	// e1 was delivered but not acknowledged: at-least-once redelivers it.
	require.Equal(t, "e1", delivered[0])
	require.Subset(t, delivered, []string{"e2", "e3"})
	require.Equal(t, []string{"e3"}, delivered[len(delivered)-1:])
}

func TestTemporalRetryPolicyMapping(t *testing.T) {
	t.Parallel()
	p := workflows.EffectiveRetryPolicy(trigger.RetryPolicy{MaxAttempts: 4, Multiplier: 3}, trigger.RetryPolicy{
		MaxAttempts: 9, InitialBackoff: trigger.Duration(2 * time.Second), MaxBackoff: trigger.Duration(10 * time.Second), Multiplier: 2,
	})
	rp := workflows.TemporalRetryPolicy(p, 0)
	require.EqualValues(t, 4, rp.MaximumAttempts)
	require.Equal(t, 2*time.Second, rp.InitialInterval)
	require.Equal(t, 10*time.Second, rp.MaximumInterval)
	require.InDelta(t, 3.0, rp.BackoffCoefficient, 0)
	require.Contains(t, rp.NonRetryableErrorTypes, "HTTP_4XX")

	after := workflows.TemporalRetryPolicy(p, 1)
	require.EqualValues(t, 3, after.MaximumAttempts, "the batch's attempt counts")
	require.Equal(t, 6*time.Second, after.InitialInterval, "continues the schedule")
	after2 := workflows.TemporalRetryPolicy(p, 2)
	require.Equal(t, 10*time.Second, after2.InitialInterval, "capped by maxBackoff")

	bad := workflows.EffectiveRetryPolicy(trigger.RetryPolicy{MaxAttempts: -1, Multiplier: 0.5, MaxBackoff: trigger.Duration(time.Millisecond)}, trigger.RetryPolicy{})
	require.Equal(t, 1, bad.MaxAttempts)
	require.InDelta(t, 1.0, bad.Multiplier, 0)
	require.Equal(t, bad.InitialBackoff, bad.MaxBackoff)
}

// coldKey is how ingest starts a run (workflows.StartParams).
var coldKey = func() workflows.DeliveryParams {
	k := testKey
	k.Lifecycle = workflows.LifecycleCloseWhenCold
	return k
}()

// A cold key's run, signalled its task or started with it, closes in the
// workflow task that delivers.
func TestColdKeyClosesRightAfterDelivering(t *testing.T) {
	t.Parallel()
	for name, input := range map[string]any{"signalled": coldKey, "started": startInput(t, task("e1"))} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
				if name == "signalled" {
					signalAt(env, 0, task("e1"))
				}
				start := env.Now()
				env.ExecuteWorkflow(workflows.DeliveryWorkflow, input)
				require.True(t, env.IsWorkflowCompleted())
				require.NoError(t, env.GetWorkflowError())

				_, delivered, _ := r.snapshot()
				require.Equal(t, []string{"e1"}, delivered)
				require.Zero(t, env.Now().Sub(start), "no quiet timer for a key that had one task")
				var res workflows.DeliveryResult
				require.NoError(t, env.GetWorkflowResult(&res))
				require.Equal(t, []string{"e1"}, res.Seen, "the result lists what the run saw, for ingest's check of redeliveries")
			})
		})
	}
}

func TestHotKeyWaitsTheQuietPeriod(t *testing.T) {
	t.Parallel()
	opts := testOptions
	opts.QuietPeriod = 10 * time.Second
	eachEnv(t, opts, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, 0, task("e1"), task("e2"))
		signalAt(env, 5*time.Second, task("e3"))
		start := env.Now()
		execute(t, env, coldKey)

		_, delivered, _ := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e3"}, delivered, "a run that saw two tasks stays for the third")
		require.Equal(t, 15*time.Second, env.Now().Sub(start), "exits one quiet period after the last task")
	})
}

func TestLifecycleSurvivesContinueAsNew(t *testing.T) {
	t.Parallel()
	env, _ := newEnv(t, testOptions)
	signalAt(env, 0, task("e1"), task("e2"))
	env.RegisterDelayedCallback(func() {
		env.SetContinueAsNewSuggested(true)
		env.SignalWorkflow(workflows.TaskSignal, task("e3"))
	}, 10*time.Second)
	env.ExecuteWorkflow(workflows.DeliveryWorkflow, coldKey)
	_, next := continuedAsNew(t, env)
	require.Equal(t, workflows.LifecycleCloseWhenCold, next.Lifecycle)
}

// startInput is what ingest starts a quiet key's run with: its tasks as the
// input, encoded as ingest received them.
func startInput(t *testing.T, tasks ...trigger.DeliveryTask) any {
	t.Helper()
	return workflows.StartInput(&tasks[0], encodeTasks(t, tasks...))
}

func TestStartedTasksAreCheckedLikeSignalledOnes(t *testing.T) {
	t.Parallel()
	eachEnv(t, testOptions, func(t *testing.T, env *testsuite.TestWorkflowEnvironment, r *receiver) {
		signalAt(env, time.Second, task("e2"), task("e3"))
		env.ExecuteWorkflow(workflows.DeliveryWorkflow, startInput(t, task("e1"), task("e1"), foreignTask("foreign"), task("e2")))
		require.True(t, env.IsWorkflowCompleted())
		require.NoError(t, env.GetWorkflowError())

		_, delivered, dls := r.snapshot()
		require.Equal(t, []string{"e1", "e2", "e3"}, delivered, "duplicates in the input and after it are dropped")
		require.Len(t, dls, 1)
		require.Equal(t, "invalid-task", dls[0].Reason)
		require.Contains(t, dls[0].Detail, "o-2", "the foreign task is dead-lettered")
		require.Contains(t, string(dls[0].Payload), `"eventId":"foreign"`)
	})
}

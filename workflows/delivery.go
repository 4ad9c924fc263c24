package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/trigger"
)

// Register registers the delivery workflow (under DeliveryWorkflow) with
// opts, and acts' activities under their activities.*Name names.
func Register(w worker.Registry, acts *activities.Activities, opts Options) {
	RegisterWorkflow(w, opts)
	w.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name: activities.Prefix})
}

// RegisterWorkflow registers only the workflow, for replayers and for
// workers that run the activities elsewhere.
func RegisterWorkflow(w worker.WorkflowRegistry, opts Options) {
	opts = opts.WithDefaults()
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, p DeliveryParams) (DeliveryResult, error) {
		return run(ctx, p, opts)
	}, workflow.RegisterOptions{Name: DeliveryWorkflow})
}

// Delivery is the per-key mailbox workflow with DefaultOptions; Register
// installs it with the worker's options instead.
//
// It delivers the tasks signalled on TaskSignal strictly in arrival order,
// drops event ids it has seen recently, dead-letters a task that fails for
// good (or blocks the key, for onFailure "block") and moves on, continues
// as new before its history grows large, and exits when idle (see
// Lifecycle), returning the dedupe keys it saw.
func Delivery(ctx workflow.Context, p DeliveryParams) (DeliveryResult, error) {
	return run(ctx, p, DefaultOptions())
}

// Reasons recorded on dead letters, besides the failure-type ones.
const (
	reasonExhausted = "attempts-exhausted"
	reasonInvalid   = "invalid-task"
	// reasonUnauthenticated is a task whose signature did not verify.
	reasonUnauthenticated = "unauthenticated"
	// reasonImageMissing is a task whose stored document image is gone.
	reasonImageMissing = "image-missing"
)

// deadLetterReason maps a failure type to a dead-letter reason.
func deadLetterReason(failureType string, retryable bool) string {
	if retryable {
		return reasonExhausted
	}
	switch failureType {
	case activities.TypeHTTP4xx:
		return "http-4xx"
	case activities.TypeHTTP3xx:
		return "http-3xx"
	case activities.TypeOversize:
		return "oversize"
	case activities.TypeForbidden:
		return "url-forbidden"
	case activities.TypeInvalid:
		return reasonInvalid
	case activities.TypeUnauthenticated:
		return reasonUnauthenticated
	case activities.TypeImageMissing:
		return reasonImageMissing
	}
	return "non-retryable"
}

type mailbox struct {
	ctx  workflow.Context
	opts Options
	log  log.Logger
	key  DeliveryParams // only the key fields are used
	// lifecycle comes from the run's input, so replay decides alike.
	lifecycle Lifecycle

	pending []trigger.DeliveryTask
	seen    []string // dedupe keys, oldest first, at most opts.DedupeSize
	seenSet map[string]bool
	failed  int64
	blocked *BlockState

	tasks       workflow.ReceiveChannel
	unblockCh   workflow.ReceiveChannel
	redeliverCh workflow.ReceiveChannel
	// Signals taken off the channels that need work outside a Select.
	invalid    []invalidTask
	unblockReq *Unblock

	lastActive  time.Time
	idleTimer   workflow.Future
	idleArmed   time.Time // when idleTimer was started
	forceSingle bool
	invalidSeq  int
	// retry is, in a run recorded before retryPolicyChange, the worker's
	// default retry policy as its marker holds it; nil until then, and
	// always nil in later runs.
	retry *trigger.RetryPolicy
}

type invalidTask struct {
	raw    json.RawMessage
	reason string
}

func run(ctx workflow.Context, p DeliveryParams, registered Options) (DeliveryResult, error) {
	// The options are not recorded in history: a marker would cost every
	// run an event. The ones a worker's file sets are used so that a
	// different value on replay cannot change which commands the run
	// issues (see Options).
	opts := registered.WithDefaults()

	m := &mailbox{
		ctx:        ctx,
		opts:       opts,
		log:        workflow.GetLogger(ctx),
		key:        DeliveryParams{Tenant: p.Tenant, TriggerID: p.TriggerID, Collection: p.Collection, DocKey: p.DocKey},
		lifecycle:  p.Lifecycle,
		seenSet:    make(map[string]bool, len(p.Seen)),
		failed:     p.Failed,
		blocked:    p.Blocked,
		tasks:      workflow.GetSignalChannel(ctx, TaskSignal),
		unblockCh:  workflow.GetSignalChannel(ctx, UnblockSignal),
		lastActive: workflow.Now(ctx),
	}
	// Runs recorded before this signal existed never received it: a
	// channel that stays empty issues no command, so they replay.
	m.redeliverCh = workflow.GetSignalChannel(ctx, RedeliverSignal)
	for _, id := range p.Seen {
		m.remember(id)
	}
	if len(p.Seen) == 0 {
		// A run ingest started with its first tasks (StartInput): they
		// are checked and deduplicated as signalled ones are. A
		// continued run's pending tasks are in its dedupe set already.
		for _, t := range p.Pending {
			m.acceptTask(t, nil)
		}
	} else {
		m.pending = p.Pending
	}
	if m.blocked != nil && len(m.pending) == 0 {
		m.blocked = nil // nothing left to block on
	}
	if err := workflow.SetQueryHandler(ctx, StatusQuery, m.status); err != nil {
		return DeliveryResult{}, fmt.Errorf("registering %s query: %w", StatusQuery, err)
	}
	m.showBlocked()
	if err := m.run(); err != nil {
		return DeliveryResult{}, err
	}
	return DeliveryResult{Seen: m.seen}, nil
}

func (m *mailbox) run() error {
	for {
		m.drain()
		switch {
		case len(m.invalid) > 0:
			m.deadLetterInvalid()
		case m.blocked != nil && m.unblockReq != nil:
			if err := m.resolveBlock(); err != nil {
				return err
			}
		case m.shouldContinueAsNew():
			if done, err := m.continueAsNew(); done {
				return err
			}
		case m.blocked != nil:
			m.wait(false)
		case len(m.pending) > 0:
			if err := m.deliverNext(); err != nil {
				return err
			}
		case m.cold():
			// Nothing buffered (drain ran above): close now. A task
			// signalled while this workflow task ran makes the server
			// refuse the completion, and the run goes on with it.
			m.log.Debug("cold key delivered, exiting")
			return nil
		case !m.wait(true):
			// Quiet for QuietPeriod. A task signalled while this last
			// workflow task ran is still buffered: look once more before
			// returning, or it would be lost with the run.
			m.drain()
			if len(m.pending) == 0 && len(m.invalid) == 0 && m.unblockReq == nil {
				m.log.Debug("quiet period elapsed, exiting")
				return nil
			}
		}
	}
}

// cold reports whether an idle run closes without waiting: under
// LifecycleCloseWhenCold, a run that has seen a single task.
func (m *mailbox) cold() bool {
	return m.lifecycle == LifecycleCloseWhenCold && len(m.seen) <= 1 && m.blocked == nil
}

// drain takes every buffered signal without blocking.
func (m *mailbox) drain() {
	for {
		var raw json.RawMessage
		if !m.tasks.ReceiveAsync(&raw) {
			break
		}
		m.accept(raw)
	}
	for {
		var u Unblock
		if !m.unblockCh.ReceiveAsync(&u) {
			break
		}
		m.onUnblock(u)
	}
	for {
		var r Redelivery
		if !m.redeliverCh.ReceiveAsync(&r) {
			break
		}
		m.acceptRedelivery(r)
	}
}

// wait blocks until a signal arrives (true) or, with quiet set, until the
// key has been idle for QuietPeriod (false).
//
// The idle timer is armed once and reused rather than cancelled on every
// task: a busy key pays two timer events per quiet period instead of two
// per burst. When it fires the run exits only if nothing happened since it
// was armed, and otherwise arms it again for the rest of the period. That
// decision depends on the history alone, never on QuietPeriod's value, so a
// worker restarted with another quietPeriod replays open runs unchanged;
// the value only sets timer durations, which replay does not compare.
func (m *mailbox) wait(quiet bool) bool {
	for {
		if quiet && m.idleTimer == nil {
			now := workflow.Now(m.ctx)
			// At least a second: a timer of zero would issue no command,
			// so the value would decide whether there is one.
			d := max(m.lastActive.Add(m.opts.QuietPeriod).Sub(now), time.Second)
			m.idleTimer, m.idleArmed = workflow.NewTimer(m.ctx, d), now
		}
		got, idle := false, false
		sel := workflow.NewSelector(m.ctx)
		sel.AddReceive(m.tasks, func(c workflow.ReceiveChannel, _ bool) {
			var raw json.RawMessage
			c.Receive(m.ctx, &raw)
			m.accept(raw)
			got = true
		})
		sel.AddReceive(m.unblockCh, func(c workflow.ReceiveChannel, _ bool) {
			var u Unblock
			c.Receive(m.ctx, &u)
			m.onUnblock(u)
			got = true
		})
		sel.AddReceive(m.redeliverCh, func(c workflow.ReceiveChannel, _ bool) {
			var r Redelivery
			c.Receive(m.ctx, &r)
			m.acceptRedelivery(r)
			got = true
		})
		if quiet {
			sel.AddFuture(m.idleTimer, func(workflow.Future) {
				idle = !m.lastActive.After(m.idleArmed)
				m.idleTimer = nil
			})
		}
		sel.Select(m.ctx)
		if got {
			return true
		}
		if idle {
			return false
		}
	}
}

// accept queues the task or tasks of one signal: ingest sends a key's
// queued tasks together as a JSON array, in order.
func (m *mailbox) accept(raw json.RawMessage) {
	// encoding/json is deterministic; workflowcheck flags it only because
	// reflect can reach the runtime's garbage collector.
	//workflowcheck:ignore
	tasks, err := SplitTaskSignal(raw)
	if err != nil {
		m.invalid = append(m.invalid, invalidTask{raw: raw, reason: err.Error()})
		return
	}
	for _, one := range tasks {
		m.acceptOne(one)
	}
}

// acceptOne queues a signalled task unless it is malformed (dead-lettered)
// or a duplicate (dropped).
func (m *mailbox) acceptOne(raw json.RawMessage) {
	var t trigger.DeliveryTask
	// encoding/json is deterministic; workflowcheck flags it only because
	// reflect can reach the runtime's garbage collector.
	//workflowcheck:ignore
	if err := json.Unmarshal(raw, &t); err != nil {
		m.invalid = append(m.invalid, invalidTask{raw: raw, reason: "task does not decode: " + err.Error()})
		return
	}
	m.acceptTask(t, raw)
}

// acceptTask queues a decoded task unless it is invalid (dead-lettered)
// or a duplicate (dropped). raw is the task as received, for the dead
// letter; nil for a task that came decoded.
func (m *mailbox) acceptTask(t trigger.DeliveryTask, raw json.RawMessage) {
	if reason := m.check(&t); reason != "" {
		if raw == nil {
			// Deterministic: map keys are sorted. One that does not encode
			// is recorded without its payload.
			//workflowcheck:ignore
			raw, _ = json.Marshal(t)
		}
		m.invalid = append(m.invalid, invalidTask{raw: raw, reason: reason})
		return
	}
	// The dedupe key is the event id, except for a task an operator
	// redrove from the dead-letter stream, which must go out again.
	key := t.DedupeKey()
	if m.seenSet[key] {
		m.log.Info("duplicate task dropped", "eventId", t.EventID, "dedupeKey", key)
		return
	}
	m.remember(key)
	m.pending = append(m.pending, t)
	m.lastActive = workflow.Now(m.ctx)
}

// check validates a task and that it belongs to this key. The task's own
// Validate ranges over a map, which only reorders its message; the lines
// are sorted so the text is the same on every replay.
func (m *mailbox) check(t *trigger.DeliveryTask) string {
	//workflowcheck:ignore
	if err := t.Validate(); err != nil {
		lines := strings.Split(err.Error(), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "; ")
	}
	k := m.key
	if k.Tenant != "" && (t.Tenant != k.Tenant || t.TriggerID != k.TriggerID || t.Collection != k.Collection || t.DocKey != k.DocKey) {
		return fmt.Sprintf("task for %s/%s/%s/%q signalled to the workflow of %s/%s/%s/%q",
			t.Tenant, t.TriggerID, t.Collection, t.DocKey, k.Tenant, k.TriggerID, k.Collection, k.DocKey)
	}
	return ""
}

// acceptRedelivery queues an operator's redelivery like a new task, but
// without consulting the dedupe set: the event was delivered (or
// dead-lettered) before, and the operator wants it sent once more. Its
// dedupe key is remembered, so a late copy of the original task from
// ingest is still dropped.
func (m *mailbox) acceptRedelivery(r Redelivery) {
	t := r.Task
	if reason := m.check(&t); reason != "" {
		// Deterministic: map keys are sorted. One that does not encode is
		// recorded without its payload.
		//workflowcheck:ignore
		raw, _ := json.Marshal(r)
		m.invalid = append(m.invalid, invalidTask{raw: raw, reason: "redelivery: " + reason})
		return
	}
	m.log.Info("redelivery queued", "eventId", t.EventID, "actor", r.Actor, "reason", r.Reason)
	m.remember(t.DedupeKey())
	m.pending = append(m.pending, t)
	m.lastActive = workflow.Now(m.ctx)
}

func (m *mailbox) remember(id string) {
	if m.seenSet[id] {
		return
	}
	m.seen = append(m.seen, id)
	m.seenSet[id] = true
	if over := len(m.seen) - m.opts.DedupeSize; over > 0 {
		for _, old := range m.seen[:over] {
			delete(m.seenSet, old)
		}
		m.seen = slices.Clone(m.seen[over:])
	}
}

// forget drops id from the dedupe set.
func (m *mailbox) forget(id string) {
	if !m.seenSet[id] {
		return
	}
	delete(m.seenSet, id)
	m.seen = slices.DeleteFunc(m.seen, func(s string) bool { return s == id })
}

func (m *mailbox) onUnblock(u Unblock) {
	if m.blocked == nil {
		m.log.Warn("unblock signal ignored: the key is not blocked")
		return
	}
	m.unblockReq = &u
}

// deliverNext delivers the head of the queue, several tasks at once when
// more are queued.
func (m *mailbox) deliverNext() error {
	n := m.batchSize()
	if m.forceSingle || (n <= 1 && m.opts.ActivityFirstAttempt) {
		m.forceSingle = false
		return m.deliverHead()
	}
	batch := m.pending[:n:n]
	opts := m.batchOptions(batch)
	var fut workflow.Future
	if !m.opts.ActivityFirstAttempt {
		ctx := workflow.WithLocalActivityOptions(m.ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: opts.StartToCloseTimeout,
			RetryPolicy:         opts.RetryPolicy,
			Summary:             opts.Summary,
		})
		fut = workflow.ExecuteLocalActivity(ctx, activities.DeliverBatchName, batch)
	} else {
		fut = workflow.ExecuteActivity(workflow.WithActivityOptions(m.ctx, opts), activities.DeliverBatchName, batch)
	}
	var res activities.BatchResult
	err := fut.Get(m.ctx, &res)
	if err != nil {
		if m.cancelled() {
			return err
		}
		// The batch died (worker lost, timed out). What it heartbeated is
		// delivered (a local activity cannot heartbeat: it all repeats);
		// the rest go one by one so each attempt is recorded and a
		// poisoned batch cannot stall the key.
		var done int
		var te *temporal.TimeoutError
		if errors.As(err, &te) && te.HasLastHeartbeatDetails() {
			_ = te.LastHeartbeatDetails(&done)
		}
		done = min(max(done, 0), n)
		m.log.Warn("batch delivery failed, continuing one by one", "delivered", done, "error", err)
		m.pop(done)
		m.forceSingle = true
		return nil
	}
	m.pop(min(res.Delivered, n))
	m.lastActive = workflow.Now(m.ctx)
	f := res.Failure
	if f == nil {
		if res.Delivered < n {
			m.forceSingle = true // interrupted: make progress the recorded way
		}
		return nil
	}
	head := m.pending[0]
	policy := m.failedBatchPolicy(&head, f.Retryable)
	if !f.Retryable || policy.MaxAttempts <= 1 {
		return m.fail(head, deadLetterReason(f.Type, f.Retryable), failureDetail(f))
	}
	// The batch made attempt 1; the rest run as a Deliver activity whose
	// attempts show in history, after the delay attempt 1 asked for.
	delay := f.RetryAfter()
	if delay <= 0 {
		delay = policy.InitialBackoff.D()
	}
	if err := workflow.Sleep(m.ctx, delay); err != nil {
		return err
	}
	return m.deliverOne(1, policy)
}

// deliverHead delivers the head of the queue as one Deliver activity with
// its whole retry policy.
func (m *mailbox) deliverHead() error {
	def := m.opts.Retry
	if m.retry != nil {
		def = *m.retry
	}
	// Only activity options depend on the policy here, and replay does not
	// compare those, so an unrecorded default is fine.
	return m.deliverOne(0, EffectiveRetryPolicy(m.pending[0].RetryPolicy, def))
}

// deliverOne delivers the head of the queue as one Deliver activity under
// policy, less prior attempts already made. The ActivityTaskScheduled event
// records the policy the retries use.
func (m *mailbox) deliverOne(prior int, policy trigger.RetryPolicy) error {
	task := m.pending[0]
	ctx := workflow.WithActivityOptions(m.ctx, workflow.ActivityOptions{
		StartToCloseTimeout: m.attemptTimeout(&task) + m.opts.TimeoutMargin,
		RetryPolicy:         TemporalRetryPolicy(policy, prior),
		Summary:             "deliver " + task.EventID,
	})
	var res activities.Result
	err := workflow.ExecuteActivity(ctx, activities.DeliverName, task).Get(ctx, &res)
	if err == nil {
		m.pop(1)
		m.lastActive = workflow.Now(m.ctx)
		return nil
	}
	if m.cancelled() {
		return err
	}
	reason, detail := classify(err)
	return m.fail(task, reason, detail)
}

// fail handles the head task's final failure: block the key, or
// dead-letter the task and move on.
func (m *mailbox) fail(task trigger.DeliveryTask, reason, detail string) error {
	m.failed++
	m.lastActive = workflow.Now(m.ctx)
	if err := workflow.UpsertTypedSearchAttributes(m.ctx, FailedDeliveries.ValueSet(m.failed)); err != nil {
		m.log.Warn("updating FailedDeliveries search attribute", "error", err)
	}
	if reason == reasonUnauthenticated {
		// Nobody vouched for this task: it may not block the key, nor
		// keep its event id, or a forged copy signalled first would make
		// the workflow drop the real task as a duplicate.
		m.forget(task.DedupeKey())
	} else if task.OnFailure == trigger.FailureBlock && reason != reasonImageMissing {
		// (An image that is gone cannot come back: blocking the key for
		// an operator's retry would hold it for good.)
		m.blocked = &BlockState{EventID: task.EventID, Reason: reason, Detail: detail}
		m.log.Warn("delivery failed, key blocked until an unblock signal", "eventId", task.EventID, "reason", reason, "detail", detail)
		m.showBlocked()
		return nil
	}
	m.log.Warn("delivery failed, dead-lettering", "eventId", task.EventID, "reason", reason, "detail", detail)
	//workflowcheck:ignore
	raw, err := json.Marshal(task) // deterministic: map keys are sorted
	if err != nil {
		return fmt.Errorf("encoding task %s for the dead-letter record: %w", task.EventID, err)
	}
	m.deadLetter(deadletter.Record{
		ID: task.DedupeKey(), Reason: reason, Detail: detail,
		Tenant: task.Tenant, TriggerID: task.TriggerID, Collection: task.Collection,
		DocKey: task.DocKey, EventID: task.EventID, Task: raw,
	})
	m.pop(1)
	return nil
}

// resolveBlock applies an operator's unblock signal.
func (m *mailbox) resolveBlock() error {
	u, b := *m.unblockReq, *m.blocked
	m.unblockReq, m.blocked = nil, nil
	m.showBlocked()
	if !u.Skip {
		m.log.Info("key unblocked, retrying the failed task", "eventId", b.EventID)
		return m.deliverHead()
	}
	m.log.Info("key unblocked, skipping the failed task", "eventId", b.EventID)
	task := m.pending[0]
	//workflowcheck:ignore
	raw, err := json.Marshal(task) // deterministic: map keys are sorted
	if err != nil {
		return fmt.Errorf("encoding task %s for the dead-letter record: %w", task.EventID, err)
	}
	m.deadLetter(deadletter.Record{
		ID: task.DedupeKey(), Reason: b.Reason, Detail: b.Detail + " (skipped by an operator after blocking the key)",
		Tenant: task.Tenant, TriggerID: task.TriggerID, Collection: task.Collection,
		DocKey: task.DocKey, EventID: task.EventID, Task: raw,
	})
	m.pop(1)
	return nil
}

// deadLetterInvalid records signals that carried no usable task.
func (m *mailbox) deadLetterInvalid() {
	bad := m.invalid
	m.invalid = nil
	for _, it := range bad {
		m.invalidSeq++
		m.failed++
		m.log.Error("invalid task signalled, dead-lettering", "reason", it.reason)
		m.deadLetter(deadletter.Record{
			// Unique per signal and stable on replay.
			ID:     fmt.Sprintf("invalid-%s-%d", workflow.GetInfo(m.ctx).WorkflowExecution.RunID, m.invalidSeq),
			Reason: reasonInvalid, Detail: it.reason,
			Tenant: m.key.Tenant, TriggerID: m.key.TriggerID, Collection: m.key.Collection, DocKey: m.key.DocKey,
			Payload: it.raw,
		})
	}
	if err := workflow.UpsertTypedSearchAttributes(m.ctx, FailedDeliveries.ValueSet(m.failed)); err != nil {
		m.log.Warn("updating FailedDeliveries search attribute", "error", err)
	}
}

// deadLetter stores a record, retrying until the dead-letter stream takes
// it: the key waits rather than drop the event unrecorded.
func (m *mailbox) deadLetter(rec deadletter.Record) {
	rec.Stage = deadletter.StageDelivery
	rec.Time = workflow.Now(m.ctx)
	ctx := workflow.WithActivityOptions(m.ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: []string{activities.TypeInvalidRecord},
		},
		Summary: "dead-letter " + rec.EventID,
	})
	if err := workflow.ExecuteActivity(ctx, activities.DeadLetterName, rec).Get(ctx, nil); err != nil {
		// Only a record the publisher rejects outright (a bug) or a
		// cancelled workflow ends here; the log and the history keep it.
		m.log.Error("dead-letter record not stored", "id", rec.ID, "reason", rec.Reason, "error", err)
	}
}

func (m *mailbox) shouldContinueAsNew() bool {
	info := workflow.GetInfo(m.ctx)
	if !info.GetContinueAsNewSuggested() && info.GetCurrentHistoryLength() < m.opts.MaxHistoryLength {
		return false
	}
	if size := estimateSize(m.pending); size > m.opts.MaxCarryBytes {
		if m.blocked != nil {
			m.log.Warn("history is long but the blocked key's queue is too large to carry into a new run",
				"pending", len(m.pending), "estimatedBytes", size)
		}
		return false
	}
	return true
}

// continueAsNew hands the queue, the dedupe set and the failure count to a
// new run. It first drains the signal channels: anything left there would
// be lost with this run. If draining brought work that must happen in this
// run (invalid tasks, an unblock), it returns false and the loop does it.
func (m *mailbox) continueAsNew() (bool, error) {
	m.drain()
	if len(m.invalid) > 0 || m.unblockReq != nil {
		return false, nil
	}
	m.log.Info("continuing as new", "pending", len(m.pending), "historyLength", workflow.GetInfo(m.ctx).GetCurrentHistoryLength())
	next := m.key
	next.Pending = m.pending
	next.Seen = m.seen
	next.Failed = m.failed
	next.Blocked = m.blocked
	next.Lifecycle = m.lifecycle
	return true, workflow.NewContinueAsNewError(m.ctx, DeliveryWorkflow, next)
}

// retryPolicyChange versions what a batch's failed task records. Runs
// recorded before it hold a SideEffect marker at their first batch failure
// with the worker's default retry policy, whatever the task set; they
// replay down that branch. Later runs record the policy the task's retries
// use, and only when the worker's default decided whether there are any.
const retryPolicyChange = "record-used-retry-policy"

// failedBatchPolicy returns the retry policy of a task whose first attempt,
// in a batch, failed: whether it gets more attempts depends on the policy's
// maxAttempts, which is the task's own or, when the trigger set none, the
// worker's default. That default may differ on a restarted worker, so
// then, and only then, the policy is recorded in history, for replay to
// make the same decision; the marker holds exactly the policy the retries
// run under. A non-retryable failure, or a task with its own maxAttempts,
// records nothing: the history alone decides.
func (m *mailbox) failedBatchPolicy(head *trigger.DeliveryTask, retryable bool) trigger.RetryPolicy {
	if workflow.GetVersion(m.ctx, retryPolicyChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return EffectiveRetryPolicy(head.RetryPolicy, m.recordedDefaults())
	}
	policy := EffectiveRetryPolicy(head.RetryPolicy, m.opts.Retry)
	if !retryable || head.RetryPolicy.MaxAttempts != 0 {
		return policy
	}
	rec := workflow.SideEffectWithOptions(m.ctx, workflow.SideEffectOptions{
		Summary: fmt.Sprintf("retry policy of %s: %d attempts (the worker's default)", head.EventID, policy.MaxAttempts),
	}, func(workflow.Context) any { return policy })
	if err := rec.Get(&policy); err != nil {
		m.log.Warn("reading the recorded retry policy", "eventId", head.EventID, "error", err)
	}
	return policy
}

// recordedDefaults is the branch of runs recorded before retryPolicyChange:
// the worker's default retry policy, recorded at the run's first batch
// failure and reused for the rest of the run.
func (m *mailbox) recordedDefaults() trigger.RetryPolicy {
	if m.retry == nil {
		p := m.opts.Retry
		if err := workflow.SideEffect(m.ctx, func(workflow.Context) any { return m.opts.Retry }).Get(&p); err != nil {
			m.log.Warn("reading the recorded retry policy", "error", err)
		}
		m.retry = &p
	}
	return *m.retry
}

func (m *mailbox) pop(n int) {
	m.pending = m.pending[n:]
	if len(m.pending) == 0 {
		m.pending = nil // let the delivered tasks' memory go
	}
}

func (m *mailbox) cancelled() bool { return m.ctx.Err() != nil }

// batchSize is how many queued tasks the next batch takes: at most
// MaxBatch and MaxBatchBytes, at least one.
func (m *mailbox) batchSize() int {
	n, size := 0, 0
	for i := range m.pending {
		if n == m.opts.MaxBatch {
			break
		}
		size += taskSize(&m.pending[i])
		if n > 0 && size > m.opts.MaxBatchBytes {
			break
		}
		n++
	}
	return n
}

func (m *mailbox) attemptTimeout(t *trigger.DeliveryTask) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout.D()
	}
	return m.opts.HTTPTimeout
}

// batchOptions: one attempt, as the batch's failures are retried one task
// at a time; a heartbeat per delivered task, so a dead worker is noticed
// within one task's timeout rather than the whole batch's.
func (m *mailbox) batchOptions(batch []trigger.DeliveryTask) workflow.ActivityOptions {
	var total, longest time.Duration
	for i := range batch {
		d := m.attemptTimeout(&batch[i]) + m.opts.TimeoutMargin
		total += d
		longest = max(longest, d)
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: total,
		HeartbeatTimeout:    longest,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             batchSummary(batch),
	}
}

func (m *mailbox) showBlocked() {
	if m.blocked == nil {
		workflow.SetCurrentDetails(m.ctx, "")
		return
	}
	workflow.SetCurrentDetails(m.ctx, fmt.Sprintf(
		"**Blocked** on event %s (%s): %s\n\nSignal `%s` with `{\"skip\": false}` to retry it or `{\"skip\": true}` to dead-letter it.",
		m.blocked.EventID, m.blocked.Reason, m.blocked.Detail, UnblockSignal))
}

func (m *mailbox) status() (Status, error) {
	s := Status{Pending: len(m.pending), Blocked: m.blocked, Failed: m.failed, Remembered: len(m.seen)}
	for i := range min(len(m.pending), 100) {
		s.PendingEventIDs = append(s.PendingEventIDs, m.pending[i].EventID)
	}
	return s, nil
}

// classify turns a Deliver activity's final error into a dead-letter
// reason and a human-readable detail.
func classify(err error) (reason, detail string) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		var f activities.Failure
		if appErr.HasDetails() && appErr.Details(&f) == nil && f.Type != "" {
			retryable := f.Retryable && !appErr.NonRetryable()
			return deadLetterReason(f.Type, retryable), failureDetail(&f)
		}
		nonRetryable := appErr.NonRetryable() || slices.Contains(activities.NonRetryableTypes(), appErr.Type())
		return deadLetterReason(appErr.Type(), !nonRetryable), appErr.Error()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return reasonExhausted, "activity " + te.Error()
	}
	return reasonExhausted, err.Error()
}

// failureDetail is the dead-letter detail of an attempt's failure: its
// summary and the start of what the receiver answered.
func failureDetail(f *activities.Failure) string {
	const maxBody = 512
	d := f.Message
	if f.Body != "" {
		body := f.Body
		if len(body) > maxBody {
			body = strings.ToValidUTF8(body[:maxBody], "") + "…"
		}
		d += "; response: " + body
	}
	return d
}

// estimateSize approximates the encoded size of tasks, to keep batches and
// continue-as-new inputs within Temporal's payload limits.
func estimateSize(ts []trigger.DeliveryTask) int {
	n := 0
	for i := range ts {
		n += taskSize(&ts[i])
	}
	return n
}

func taskSize(t *trigger.DeliveryTask) int {
	n := 512 + len(t.Before) + len(t.After) + len(t.URL) + len(t.DocKey) + len(t.Position)
	// A sum does not depend on iteration order.
	//workflowcheck:ignore
	for k, v := range t.Headers {
		n += len(k) + len(v) + 6
	}
	return n
}

func batchSummary(batch []trigger.DeliveryTask) string {
	if len(batch) == 1 {
		return "deliver " + batch[0].EventID
	}
	return fmt.Sprintf("deliver %d events %s…%s", len(batch), batch[0].EventID, batch[len(batch)-1].EventID)
}

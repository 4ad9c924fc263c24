package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// The delivery log is rebuilt from a key's workflow histories; nothing
// else stores it. What a history holds about an attempt:
//
//   - a first attempt made by the default local activity is a
//     MarkerRecorded event whose result (an activities.BatchResult) has
//     each task's status and latency and the failure, with the start of
//     the response, of the task the batch stopped at;
//   - retries are one triggerflow.Deliver activity: Temporal records its
//     final attempt (completed or failed, with the attempt number on the
//     ActivityTaskStarted event) and the failure of the attempt before it,
//     but not the attempts in between.

// Kinds of a delivery log entry.
const (
	entryReceived    = "received"      // a task signal from ingest
	entryDuplicate   = "duplicate"     // a task signal the workflow dropped as seen
	entryRedriven    = "redriven"      // a task signal of a dead letter redriven
	entryRedeliver   = "redeliver"     // an operator's redelivery
	entryAttempt     = "attempt"       // an HTTP attempt
	entryNotRecorded = "not-recorded"  // attempts Temporal kept no record of
	entryInProgress  = "in-progress"   // the attempt a running activity makes or waits for
	entryDeadLetter  = "dead-lettered" // the delivery failed for good
)

// Outcomes of an event's latest delivery.
const (
	outcomeDelivered    = "delivered"
	outcomeDeadLettered = "dead-lettered"
	outcomeBlocked      = "blocked"
	outcomeRetrying     = "retrying"
	outcomeFailed       = "failed"
	outcomeQueued       = "queued"
)

// logEntry is one line of an event's delivery log.
type logEntry struct {
	// Time is when the history recorded it: for an attempt, when its
	// outcome was recorded. Absent for an attempt whose failure a later
	// attempt carried (Temporal keeps no time for it).
	Time  *time.Time `json:"time,omitempty"`
	RunID string     `json:"runId"`
	Kind  string     `json:"kind"`
	// Delivery numbers the times the event was sent: 1 for the task from
	// ingest, then one more for each redrive or redelivery.
	Delivery int `json:"delivery"`
	// Attempt numbers the attempts of one delivery from 1; for a
	// not-recorded entry it is the first of AttemptsNotRecorded.
	Attempt             int    `json:"attempt,omitempty"`
	AttemptsNotRecorded int    `json:"attemptsNotRecorded,omitempty"`
	Status              int    `json:"status,omitempty"`
	LatencyMS           *int64 `json:"latencyMs,omitempty"`
	// FailureType is an attempt's failure type (activities.Type*), or
	// the dead-letter reason of a dead-lettered entry.
	FailureType string `json:"failureType,omitempty"`
	Message     string `json:"message,omitempty"`
	// Response is the start of the receiver's answer to a failed attempt.
	Response          string `json:"response,omitempty"`
	ResponseTruncated bool   `json:"responseTruncated,omitempty"`
	// Via is how the attempt ran: "local activity" (a first attempt),
	// "activity", or "batch activity".
	Via string `json:"via,omitempty"`
	// Actor, Reason and Request are a redelivery's: who asked, why, and
	// the request id its audit record has as After.
	Actor   string `json:"actor,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Request string `json:"request,omitempty"`

	final bool // a failure after which the workflow made no more attempts
}

// eventLog is the delivery log of one event.
type eventLog struct {
	EventID    string            `json:"eventId"`
	WorkflowID string            `json:"workflowId"`
	Tenant     string            `json:"tenant"`
	TriggerID  string            `json:"triggerId"`
	Collection string            `json:"collection"`
	DocKey     string            `json:"docKey"`
	Type       trigger.EventType `json:"type"`
	// Outcome is that of the latest delivery: delivered, dead-lettered,
	// blocked, retrying, failed (another attempt may follow), queued.
	Outcome string     `json:"outcome"`
	Entries []logEntry `json:"entries"`

	task     trigger.DeliveryTask // the latest task that carried the event
	delivery int
	attempts int // attempts of the current delivery so far
}

// scheduledActivity is an ActivityTaskScheduled event, until its outcome.
type scheduledActivity struct {
	name    string
	id      string
	tasks   []trigger.DeliveryTask
	started *historypb.ActivityTaskStartedEventAttributes
}

// logBuilder rebuilds delivery logs from a key's histories, oldest run
// first.
type logBuilder struct {
	workflowID string
	only       string // the event to keep, or "" for every event
	dc         converter.DataConverter

	events map[string]*eventLog
	order  []string

	// Per run.
	runID string
	seen  map[string]bool
	sched map[int64]*scheduledActivity
}

func newLogBuilder(workflowID, only string) *logBuilder {
	return &logBuilder{workflowID: workflowID, only: only, dc: converter.GetDefaultDataConverter(), events: map[string]*eventLog{}}
}

func (b *logBuilder) event(id string) *eventLog {
	if b.only != "" && id != b.only {
		return nil
	}
	e := b.events[id]
	if e == nil {
		e = &eventLog{EventID: id, WorkflowID: b.workflowID}
		b.events[id] = e
		b.order = append(b.order, id)
	}
	return e
}

func (b *logBuilder) add(e *eventLog, ev *historypb.HistoryEvent, en logEntry) {
	if ev != nil {
		t := ev.GetEventTime().AsTime()
		en.Time = &t
	}
	en.RunID = b.runID
	en.Delivery = e.delivery
	e.Entries = append(e.Entries, en)
}

// attempt adds en as the event's next attempt.
func (b *logBuilder) attempt(e *eventLog, ev *historypb.HistoryEvent, en logEntry) {
	e.attempts++
	en.Attempt = e.attempts
	b.add(e, ev, en)
}

// notRecorded adds the n attempts before the next that Temporal kept no
// record of.
func (b *logBuilder) notRecorded(e *eventLog, n int) {
	b.add(e, nil, logEntry{Kind: entryNotRecorded, Attempt: e.attempts + 1, AttemptsNotRecorded: n,
		Message: "Temporal keeps only an activity's last failure"})
	e.attempts += n
}

// run adds one run's history.
func (b *logBuilder) run(runID string, events []*historypb.HistoryEvent) {
	b.begin(runID)
	for _, ev := range events {
		b.apply(ev)
	}
}

// begin starts a run; apply then adds its events in order.
func (b *logBuilder) begin(runID string) {
	b.runID = runID
	b.seen = map[string]bool{}
	b.sched = map[int64]*scheduledActivity{}
}

func (b *logBuilder) apply(ev *historypb.HistoryEvent) {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
		// A run continued as new starts with the dedupe set of the
		// run before; a fresh run with an empty one.
		var p workflows.DeliveryParams
		if b.decode(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &p) == nil {
			for _, k := range p.Seen {
				b.seen[k] = true
			}
			for _, t := range p.Pending {
				if len(p.Seen) == 0 {
					// A run ingest started with its tasks
					// (workflows.StartInput) received them here.
					b.receive(ev, t)
				} else {
					b.knowTask(t)
				}
			}
		}
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
		b.signal(ev)
	case enumspb.EVENT_TYPE_MARKER_RECORDED:
		b.marker(ev)
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
		b.scheduled(ev)
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
		a := ev.GetActivityTaskStartedEventAttributes()
		if s := b.sched[a.GetScheduledEventId()]; s != nil {
			s.started = a
		}
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
		a := ev.GetActivityTaskCompletedEventAttributes()
		b.activityClosed(ev, a.GetScheduledEventId(), a.GetResult(), nil)
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
		a := ev.GetActivityTaskFailedEventAttributes()
		b.activityClosed(ev, a.GetScheduledEventId(), nil, a.GetFailure())
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
		a := ev.GetActivityTaskTimedOutEventAttributes()
		b.activityClosed(ev, a.GetScheduledEventId(), nil, a.GetFailure())
	}
}

func (b *logBuilder) decode(p *commonpb.Payloads, v any) error {
	if len(p.GetPayloads()) == 0 {
		return fmt.Errorf("no payload")
	}
	return b.dc.FromPayload(p.GetPayloads()[0], v)
}

func (b *logBuilder) signal(ev *historypb.HistoryEvent) {
	a := ev.GetWorkflowExecutionSignaledEventAttributes()
	switch a.GetSignalName() {
	case workflows.TaskSignal:
		var raw json.RawMessage
		if b.decode(a.GetInput(), &raw) != nil {
			return
		}
		parts, err := workflows.SplitTaskSignal(raw)
		if err != nil {
			return
		}
		for _, p := range parts {
			var t trigger.DeliveryTask
			if json.Unmarshal(p, &t) == nil {
				b.receive(ev, t)
			}
		}
	case workflows.RedeliverSignal:
		var r workflows.Redelivery
		if b.decode(a.GetInput(), &r) != nil || r.Task.EventID == "" {
			return
		}
		b.seen[r.Task.DedupeKey()] = true
		e := b.event(r.Task.EventID)
		if e == nil {
			return
		}
		e.task = r.Task
		e.delivery++
		e.attempts = 0
		b.add(e, ev, logEntry{Kind: entryRedeliver, Actor: r.Actor, Reason: r.Reason, Request: r.Request})
	}
}

// receive adds the arrival of task t, with ev, as a signal or a run's
// input carries it: a delivery of its event, or a duplicate the workflow
// dropped.
func (b *logBuilder) receive(ev *historypb.HistoryEvent, t trigger.DeliveryTask) {
	if t.EventID == "" {
		return
	}
	e := b.event(t.EventID)
	key := t.DedupeKey()
	dup := b.seen[key]
	b.seen[key] = true
	if e == nil {
		return
	}
	e.task = t
	if dup {
		b.add(e, ev, logEntry{Kind: entryDuplicate, Message: "dropped: the workflow had this task already"})
		return
	}
	e.delivery++
	e.attempts = 0
	en := logEntry{Kind: entryReceived}
	if t.Redrive != 0 {
		en.Kind, en.Message = entryRedriven, fmt.Sprintf("redriven from dead letter %d", t.Redrive)
	}
	b.add(e, ev, en)
}

// localActivityMarker is the part of the SDK's local activity marker data
// the log uses.
type localActivityMarker struct {
	ActivityType string
}

func (b *logBuilder) marker(ev *historypb.HistoryEvent) {
	a := ev.GetMarkerRecordedEventAttributes()
	if a.GetMarkerName() != "LocalActivity" { // the Go SDK's marker of a local activity's result
		return
	}
	var md localActivityMarker
	if b.decode(a.GetDetails()["data"], &md) != nil || md.ActivityType != activities.DeliverBatchName {
		return
	}
	if f := a.GetFailure(); f != nil {
		// The batch itself failed (the worker lost it, a timeout): the
		// summary names its first event, which is retried one by one.
		var summary string
		_ = b.dc.FromPayload(ev.GetUserMetadata().GetSummary(), &summary)
		if id := firstEventOfSummary(summary); id != "" {
			if e := b.event(id); e != nil {
				en := failureEntry(b.dc, f)
				en.Via, en.final = "local activity", false
				b.attempt(e, ev, en)
			}
		}
		return
	}
	var res activities.BatchResult
	if b.decode(a.GetDetails()["result"], &res) != nil {
		return
	}
	b.batchResult(ev, &res, "local activity")
}

// firstEventOfSummary returns the first event id of a batch's summary,
// "deliver <id>" or "deliver N events <first>…<last>".
func firstEventOfSummary(s string) string {
	rest, ok := strings.CutPrefix(s, "deliver ")
	if !ok {
		return ""
	}
	fields := strings.Fields(rest)
	switch {
	case len(fields) == 1:
		return fields[0]
	case len(fields) == 3 && fields[1] == "events":
		first, _, _ := strings.Cut(fields[2], "…")
		return first
	}
	return ""
}

func (b *logBuilder) batchResult(ev *historypb.HistoryEvent, res *activities.BatchResult, via string) {
	for _, r := range res.Results {
		if e := b.event(r.EventID); e != nil {
			lat := r.LatencyMS
			b.attempt(e, ev, logEntry{Kind: entryAttempt, Status: r.Status, LatencyMS: &lat, Via: via})
		}
	}
	if f := res.Failure; f != nil {
		if e := b.event(f.EventID); e != nil {
			en := failureEntryOf(f)
			en.Via = via
			b.attempt(e, ev, en)
		}
	}
}

func (b *logBuilder) scheduled(ev *historypb.HistoryEvent) {
	a := ev.GetActivityTaskScheduledEventAttributes()
	s := &scheduledActivity{name: a.GetActivityType().GetName(), id: a.GetActivityId()}
	switch s.name {
	case activities.DeliverName:
		var t trigger.DeliveryTask
		if b.decode(a.GetInput(), &t) != nil {
			return
		}
		s.tasks = []trigger.DeliveryTask{t}
	case activities.DeliverBatchName:
		if b.decode(a.GetInput(), &s.tasks) != nil {
			return
		}
	case activities.DeadLetterName:
		var rec deadletter.Record
		if b.decode(a.GetInput(), &rec) != nil {
			return
		}
		// An empty event id is a signal without a usable task.
		if rec.EventID == "" {
			return
		}
		if e := b.event(rec.EventID); e != nil {
			b.add(e, ev, logEntry{Kind: entryDeadLetter, FailureType: rec.Reason, Message: rec.Detail})
		}
		return
	default:
		return
	}
	for _, t := range s.tasks {
		b.knowTask(t)
	}
	b.sched[ev.GetEventId()] = s
}

// knowTask keeps a task carried into a run or given to an activity, for
// an event whose signal was in a run not read.
func (b *logBuilder) knowTask(t trigger.DeliveryTask) {
	if t.EventID == "" || (b.only != "" && t.EventID != b.only) {
		return
	}
	if e := b.events[t.EventID]; e != nil && e.task.EventID != "" {
		return
	}
	if e := b.event(t.EventID); e != nil {
		e.task = t
	}
}

// activityClosed handles a Deliver or DeliverBatch activity's outcome:
// result on success, failure otherwise.
func (b *logBuilder) activityClosed(ev *historypb.HistoryEvent, scheduledID int64, result *commonpb.Payloads, failure *failurepb.Failure) {
	s := b.sched[scheduledID]
	if s == nil || len(s.tasks) == 0 {
		return
	}
	delete(b.sched, scheduledID)
	if s.name == activities.DeliverBatchName {
		if failure == nil {
			var res activities.BatchResult
			if b.decode(result, &res) == nil {
				b.batchResult(ev, &res, "batch activity")
			}
			return
		}
		// The batch died: what it heartbeated was delivered; the task it
		// was at is retried one by one, as the rest are.
		done := 0
		if d := failure.GetTimeoutFailureInfo().GetLastHeartbeatDetails(); d != nil {
			_ = b.decode(d, &done)
		}
		if done >= 0 && done < len(s.tasks) {
			if e := b.event(s.tasks[done].EventID); e != nil {
				en := failureEntry(b.dc, failure)
				en.Via = "batch activity"
				b.attempt(e, ev, en)
			}
		}
		return
	}
	e := b.event(s.tasks[0].EventID)
	if e == nil {
		return
	}
	attempt := int(s.started.GetAttempt())
	if attempt < 1 {
		attempt = 1
	}
	b.priorAttempts(e, attempt, s.started.GetLastFailure())
	if failure == nil {
		var res activities.Result
		en := logEntry{Kind: entryAttempt, Via: "activity"}
		if b.decode(result, &res) == nil {
			lat := res.LatencyMS
			en.Status, en.LatencyMS = res.Status, &lat
		}
		b.attempt(e, ev, en)
		return
	}
	en := failureEntry(b.dc, failure)
	en.Via, en.final = "activity", true
	b.attempt(e, ev, en)
}

// priorAttempts adds the attempts of a Deliver activity before its
// attempt number attempt: the last one from lastFailure, those before it
// as not recorded.
func (b *logBuilder) priorAttempts(e *eventLog, attempt int, lastFailure *failurepb.Failure) {
	if attempt <= 1 {
		return
	}
	if n := attempt - 2; n > 0 {
		b.notRecorded(e, n)
	}
	en := logEntry{Kind: entryAttempt, Via: "activity", Message: "(no failure recorded)"}
	if lastFailure != nil {
		en = failureEntry(b.dc, lastFailure)
		en.Via = "activity"
	}
	b.attempt(e, nil, en)
}

// pending adds what a running run's activities are doing: the attempts
// the history does not hold yet.
func (b *logBuilder) pending(runID string, desc *workflowservice.DescribeWorkflowExecutionResponse) {
	b.runID = runID
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != activities.DeliverName {
			continue
		}
		var task *trigger.DeliveryTask
		for _, s := range b.sched {
			if s.id == pa.GetActivityId() && s.name == activities.DeliverName {
				task = &s.tasks[0]
			}
		}
		if task == nil {
			continue
		}
		e := b.event(task.EventID)
		if e == nil {
			continue
		}
		attempt := int(pa.GetAttempt())
		if attempt > 1 {
			if n := attempt - 2; n > 0 {
				b.notRecorded(e, n)
			}
			if f := pa.GetLastFailure(); f != nil {
				en := failureEntry(b.dc, f)
				en.Via = "activity"
				b.attempt(e, nil, en)
				if t := pa.GetLastAttemptCompleteTime(); t != nil {
					at := t.AsTime()
					e.Entries[len(e.Entries)-1].Time = &at
				}
			}
		}
		en := logEntry{Kind: entryInProgress, Attempt: e.attempts + 1, Via: "activity", Message: "running"}
		if next := pa.GetNextAttemptScheduleTime(); next != nil {
			en.Message = "next attempt at " + next.AsTime().UTC().Format(time.RFC3339)
		}
		b.add(e, nil, en)
	}
}

// failureEntry is an attempt that failed with f: the activities.Failure
// it carries as details, or what the Temporal failure says.
func failureEntry(dc converter.DataConverter, f *failurepb.Failure) logEntry {
	if app := f.GetApplicationFailureInfo(); app != nil {
		var af activities.Failure
		if d := app.GetDetails(); len(d.GetPayloads()) > 0 && dc.FromPayload(d.GetPayloads()[0], &af) == nil && af.Type != "" {
			return failureEntryOf(&af)
		}
		return logEntry{Kind: entryAttempt, FailureType: app.GetType(), Message: f.GetMessage()}
	}
	if to := f.GetTimeoutFailureInfo(); to != nil {
		typ := "ACTIVITY_TIMEOUT"
		if to.GetTimeoutType() != enumspb.TIMEOUT_TYPE_UNSPECIFIED {
			typ = "ACTIVITY_" + strings.TrimPrefix(to.GetTimeoutType().String(), "TIMEOUT_TYPE_") + "_TIMEOUT"
		}
		en := logEntry{Kind: entryAttempt, FailureType: typ, Message: f.GetMessage()}
		if c := f.GetCause(); c != nil {
			en.Message += ": " + c.GetMessage()
		}
		return en
	}
	return logEntry{Kind: entryAttempt, FailureType: "FAILURE", Message: f.GetMessage()}
}

func failureEntryOf(f *activities.Failure) logEntry {
	lat := f.LatencyMS
	return logEntry{
		Kind: entryAttempt, Status: f.Status, LatencyMS: &lat, FailureType: f.Type, Message: f.Message,
		Response: f.Body, ResponseTruncated: f.BodyTruncated, final: !f.Retryable,
	}
}

// result returns the logs in order of first appearance, with their
// outcome.
func (b *logBuilder) result() []eventLog {
	out := make([]eventLog, 0, len(b.order))
	for _, id := range b.order {
		e := *b.events[id]
		t := e.task
		e.Tenant, e.TriggerID, e.Collection, e.DocKey, e.Type = t.Tenant, t.TriggerID, t.Collection, t.DocKey, t.Type
		e.Outcome = outcome(&e)
		out = append(out, e)
	}
	return out
}

func outcome(e *eventLog) string { return outcomeOf(e.Entries, e.task.OnFailure) }

// outcomeOf is the outcome of the last delivery in entries.
func outcomeOf(entries []logEntry, onFailure trigger.FailureMode) string {
	for i := len(entries) - 1; i >= 0; i-- {
		en := entries[i]
		switch en.Kind {
		case entryDeadLetter:
			return outcomeDeadLettered
		case entryInProgress:
			return outcomeRetrying
		case entryAttempt:
			switch {
			case en.FailureType == "":
				return outcomeDelivered
			case en.final && onFailure == trigger.FailureBlock:
				return outcomeBlocked
			}
			return outcomeFailed
		case entryReceived, entryRedriven, entryRedeliver:
			return outcomeQueued
		}
	}
	return outcomeQueued
}

// latency formats an entry's latency for the table.
func (en *logEntry) latency() string {
	if en.LatencyMS == nil {
		return ""
	}
	return strconv.FormatInt(*en.LatencyMS, 10) + "ms"
}

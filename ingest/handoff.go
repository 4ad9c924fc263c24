package ingest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/workflows"
)

// runLane settles its lane's items a batch at a time, in order, with settle
// (hand-off or dead-letter). When the work context is cancelled it NAKs the
// unsettled batch and then the rest of the queue, in order.
func (in *Ingester) runLane(l *lane, lim batchLimit, settle func(context.Context, []*item) bool) {
	defer in.lanesWG.Done()
	for {
		batch, ok := l.next(in.work.Done(), lim)
		if !ok {
			break
		}
		settled := settle(in.work, batch)
		if !settled {
			for _, it := range batch {
				in.nak(it)
			}
		}
		l.done()
		if !settled {
			break
		}
	}
	for _, it := range l.retire() {
		in.nak(it)
	}
}

// handOff hands a batch of one key's tasks to the key's workflow and acks
// the messages once Temporal has them. A key handed off within
// Config.SignalWindow is signalled, starting its run if needed; any other
// is most likely cold, and starts a run with the tasks as its input, which
// Temporal refuses if the run is open after all: then they are signalled.
// Several tasks go together, in stream order (a JSON array in a signal): a
// busy key then costs Temporal one signal event and one call per batch
// rather than per task. A transient failure is retried in place, with
// backoff, while the keeper holds the messages' ack timers, so a key's
// later tasks never overtake them. It returns false, leaving the messages
// unsettled, only when ctx is cancelled.
func (in *Ingester) handOff(ctx context.Context, batch []*item) bool {
	if batch = in.dropDelivered(ctx, batch, false); len(batch) == 0 {
		return true
	}
	id := batch[0].key
	start := in.recent != nil && !in.recent.touch(id, time.Now())
	retry := in.retry()
	unknown := false // an earlier attempt may have reached Temporal
	for attempt := 1; ; attempt++ {
		if unknown {
			if batch = in.dropDelivered(ctx, batch, true); len(batch) == 0 {
				return true
			}
		}
		head, t := batch[0], batch[0].task
		err := in.send(ctx, batch, start)
		if err == nil {
			break
		}
		var open *serviceerror.WorkflowExecutionAlreadyStarted
		if start && errors.As(err, &open) {
			in.m.startRefused.WithLabelValues(head.labels.values()...).Inc()
			start = false
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		in.m.handoffErrors.WithLabelValues(head.labels.values(errorCode(err))...).Inc()
		for _, it := range batch {
			in.note("handoff-error", it)
		}
		attrs := []any{"workflowId", id, "eventId", t.EventID, "tasks", len(batch), "streamSeq", head.streamSeq, "attempt", attempt, "err", err}
		if permanent(err) {
			if len(batch) > 1 {
				// Something in the batch is refused (a payload too large,
				// most likely); one at a time, in order, finds it and
				// dead-letters only that one.
				in.log.Warn("ingest: temporal rejected a batch; handing its tasks off one by one", attrs...)
				for i := range batch {
					if !in.handOff(ctx, batch[i:i+1]) {
						for _, it := range batch[i:] {
							in.nak(it)
						}
						return true
					}
				}
				return true
			}
			in.log.Error("ingest: temporal rejected the task; dead-lettering it", attrs...)
			head.reason, head.detail = ReasonTemporalRejected, err.Error()
			in.enqueue(in.poison, head)
			return true
		}
		level := slog.LevelDebug
		if attempt == 1 || attempt%20 == 0 {
			level = slog.LevelWarn
		}
		in.log.Log(ctx, level, "ingest: hand-off failed; retrying in place", attrs...)
		if !retry.Sleep(ctx) {
			return false
		}
		unknown = unknown || outcomeUnknown(err)
	}
	if start {
		in.m.started.WithLabelValues(batch[0].labels.values()...).Add(float64(len(batch)))
	}
	for _, it := range batch {
		in.ack(it)
	}
	return true
}

// send makes one hand-off attempt: a start of the key's workflow with the
// batch as its input, which fails with WorkflowExecutionAlreadyStarted
// while a run is open, or a Signal-With-Start.
func (in *Ingester) send(ctx context.Context, batch []*item, start bool) error {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.HandoffTimeout)
	defer cancel()
	t, id := batch[0].task, batch[0].key
	opts := StartOptions(id, in.cfg.TaskQueue, t)
	if start {
		opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
		opts.WorkflowExecutionErrorWhenAlreadyStarted = true
		tasks := make([]json.RawMessage, len(batch))
		for i, it := range batch {
			tasks[i] = it.payload()
		}
		_, err := in.tc.ExecuteWorkflow(ctx, opts, workflows.DeliveryWorkflow, workflows.StartInput(t, tasks))
		return err
	}
	// The raw payloads are signalled rather than the decoded tasks so
	// fields this version does not know survive to a newer worker.
	_, err := in.tc.SignalWithStartWorkflow(ctx, id, workflows.TaskSignal, signalPayload(batch), opts,
		workflows.DeliveryWorkflow, workflows.StartParams(t))
	return err
}

// dropDelivered acks, without handing them off, the tasks of a batch that
// the key's closed run already delivered. A cold key's run closes as soon
// as its task is delivered (workflows.LifecycleCloseWhenCold), so a task
// handed off again after ingest crashed between hand-off and ack would
// start a new run and be delivered twice; the closed run's result lists
// what it saw. Only tasks that may have been handed off before are
// checked, so the common case costs nothing: redelivered ones, those a
// takeover replays (up to the dead holder's replay horizon), and with
// repeat every task, for a hand-off retried after an attempt whose outcome
// is unknown. An open run drops duplicates itself. A lookup that fails
// hands the batch off anyway: a duplicate is better than a loss.
func (in *Ingester) dropDelivered(ctx context.Context, batch []*item, repeat bool) []*item {
	horizon := in.replayHorizon.Load()
	if !repeat && !slices.ContainsFunc(batch, func(it *item) bool { return it.delivered > 1 || it.streamSeq <= horizon }) {
		return batch
	}
	seen, err := in.closedRunSeen(ctx, batch[0].key)
	if err != nil {
		level := slog.LevelWarn
		if repeat {
			level = slog.LevelDebug // the failed hand-off logs already
		}
		in.log.Log(ctx, level, "ingest: cannot read the closed run of a task handed off before; handing it off", "workflowId", batch[0].key, "err", err)
		return batch
	}
	kept := batch[:0:0]
	for _, it := range batch {
		if seen[it.task.DedupeKey()] {
			in.note("delivered-before", it)
			in.m.dropped.WithLabelValues(it.labels.values()...).Inc()
			in.settle(it)
			continue
		}
		kept = append(kept, it)
	}
	return kept
}

// closedRunSeen returns the dedupe keys the latest run of workflow id saw,
// if that run completed; nil when it runs (it dedupes itself) or never
// existed.
func (in *Ingester) closedRunSeen(ctx context.Context, id string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.HandoffTimeout)
	defer cancel()
	desc, err := in.tc.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		return nil, nil
	}
	var res workflows.DeliveryResult
	if err := in.tc.GetWorkflow(ctx, id, info.GetExecution().GetRunId()).Get(ctx, &res); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(res.Seen))
	for _, k := range res.Seen {
		seen[k] = true
	}
	return seen, nil
}

// signalPayload is the task signal for a batch: the one task itself, or
// the tasks as a JSON array (each payload decoded as a task, so each is a
// JSON object).
func signalPayload(batch []*item) json.RawMessage {
	if len(batch) == 1 {
		return json.RawMessage(batch[0].payload())
	}
	n := 1 + len(batch)
	for _, it := range batch {
		n += len(it.payload())
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '[')
	for i, it := range batch {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, it.payload()...)
	}
	return append(buf, ']')
}

// ack settles a handed-off message.
func (in *Ingester) ack(it *item) {
	in.m.signalled.WithLabelValues(it.labels.values()...).Inc()
	in.note("signalled", it)
	in.settle(it)
}

// settle acks a message whose task Temporal holds.
func (in *Ingester) settle(it *item) {
	t := it.task
	if in.beforeAck != nil && !in.beforeAck(t) {
		return
	}
	if err := it.msg.Ack(); err != nil {
		// Temporal has the task; JetStream will redeliver it and the
		// workflow drops the duplicate event id.
		in.log.Warn("ingest: ack failed after hand-off; expect a duplicate", "workflowId", it.key, "eventId", t.EventID, "err", err)
		return
	}
	it.acked = true
	in.m.acked.WithLabelValues(it.labels.values()...).Inc()
	in.note("acked", it)
	in.m.handoff.WithLabelValues(it.labels.values()...).Observe(time.Since(it.received).Seconds())
}

// deadLetter stores the message with its reason and then terminates it, so
// JetStream never redelivers it; until the record is stored it retries and
// the message stays unsettled.
func (in *Ingester) deadLetter(ctx context.Context, it *item) bool {
	rec := deadletter.Record{
		ID:      in.deadLetterID(it),
		Stage:   deadletter.StageIngest,
		Reason:  it.reason,
		Detail:  it.detail,
		Subject: it.msg.Subject(),
		Time:    time.Now().UTC(),
	}
	if ps, err := streams.ParseSubject(it.msg.Subject()); err == nil {
		rec.Tenant = ps.Tenant
	}
	if t := it.task; t != nil {
		rec.TriggerID, rec.Collection, rec.DocKey, rec.EventID = t.TriggerID, t.Collection, t.DocKey, t.EventID
		rec.Tenant = cmp.Or(rec.Tenant, t.Tenant)
		rec.Task = json.RawMessage(it.msg.Data())
	} else {
		rec.Payload = it.msg.Data()
	}
	retry := in.retry()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, in.cfg.HandoffTimeout)
		err := in.dl.Publish(actx, rec)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, nats.ErrMaxPayload) && (len(rec.Task) > 0 || len(rec.Payload) > 0) {
			// The record with the message inside is too big for NATS; keep
			// the diagnosis and point at the original, which the task stream
			// keeps until its MaxAge.
			rec.Detail += fmt.Sprintf(" (the %d-byte message is not copied: too large for a dead-letter record; it is %s sequence %d)",
				len(it.msg.Data()), in.cfg.Stream, it.streamSeq)
			rec.Task, rec.Payload = nil, nil
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt == 1 || attempt%20 == 0 {
			in.log.Warn("ingest: dead-lettering failed; retrying", "reason", it.reason, "streamSeq", it.streamSeq, "attempt", attempt, "err", err)
		}
		if !retry.Sleep(ctx) {
			return false
		}
	}
	if err := it.msg.TermWithReason(it.reason); err != nil {
		// Redelivered later, dead-lettered again under the same record ID,
		// which the dead-letter stream's duplicate window drops.
		in.log.Warn("ingest: terminating a dead-lettered message", "streamSeq", it.streamSeq, "err", err)
		return true
	}
	in.m.terminated.WithLabelValues(it.labels.values(it.reason)...).Inc()
	in.note("terminated", it)
	in.log.Warn("ingest: dead-lettered", "reason", it.reason, "detail", it.detail, "subject", truncate(it.msg.Subject()),
		"streamSeq", it.streamSeq, "eventId", rec.EventID)
	return true
}

// deadLetterID is stable across redeliveries of one message, so a message
// dead-lettered twice (a crash between record and Term) is stored once.
func (in *Ingester) deadLetterID(it *item) string {
	if it.streamSeq > 0 {
		return in.cfg.Stream + "-" + strconv.FormatUint(it.streamSeq, 10)
	}
	sum := sha256.Sum256(append([]byte(it.msg.Subject()+"\x00"), it.msg.Data()...))
	return in.cfg.Stream + "-" + hex.EncodeToString(sum[:16])
}

// nak hands a message back for redelivery and waits until the server has
// processed it, so a lane's NAKs reach the redelivery queue in lane order
// before the consumer resumes.
func (in *Ingester) nak(it *item) {
	if it.acked {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.HandoffTimeout)
	defer cancel()
	if _, err := in.js.Conn().RequestWithContext(ctx, it.msg.Reply(), []byte("-NAK")); err != nil {
		in.log.Warn("ingest: NAK failed; redelivered after ackWait", "streamSeq", it.streamSeq, "err", err)
		return
	}
	in.m.naked.WithLabelValues(it.labels.values()...).Inc()
	in.note("naked", it)
}

func (in *Ingester) note(step string, it *item) {
	if in.notify != nil {
		in.notify(step, it)
	}
}

// keep resets the ack timer of every message held longer than a quarter of
// AckWait, so messages waiting behind a slow or failing hand-off are not
// redelivered past their predecessors.
func (in *Ingester) keep() {
	defer close(in.keeperDone)
	every := in.cfg.AckWait / 4
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-in.keeperStop:
			return
		case now := <-tick.C:
			for _, l := range in.allLanes() {
				for _, it := range l.stale(now, every) {
					if err := it.msg.InProgress(); err != nil {
						in.log.Debug("ingest: extending ack wait", "streamSeq", it.streamSeq, "err", err)
					}
				}
			}
		}
	}
}

// permanent reports whether Temporal refused the request for something in
// the task itself, which no retry fixes. Refusals every task would get (an
// unregistered search attribute, a run at its signal limit) are retried:
// dead-lettering the whole stream for a deployment mistake or a busy
// workflow would be worse than waiting.
func permanent(err error) bool {
	var inv *serviceerror.InvalidArgument
	if !errors.As(err, &inv) {
		return false
	}
	msg := strings.ToLower(inv.Error())
	return !strings.Contains(msg, "search attribute") && !strings.Contains(msg, "signal events")
}

// outcomeUnknown reports whether a failed call may still have reached
// Temporal: it timed out or was cancelled while under way.
func outcomeUnknown(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch serviceerror.ToStatus(err).Code() {
	case codes.DeadlineExceeded, codes.Canceled, codes.Unknown:
		return true
	}
	return false
}

// errorCode is the gRPC code of a Temporal error, a bounded label value.
func errorCode(err error) string {
	if st := serviceerror.ToStatus(err); st != nil {
		return st.Code().String()
	}
	return "Unknown"
}

// retry spaces the attempts of one hand-off or dead-letter write, jittered
// so that the lanes one Temporal outage failed do not retry in lockstep.
func (in *Ingester) retry() backoff.Exponential {
	return backoff.Exponential{Initial: in.cfg.RetryInitial, Max: in.cfg.RetryMax, Jitter: true}
}

func waitUntil(ch <-chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// truncate keeps logs and errors readable when a key is huge.
func truncate(s string) string { return truncateUTF8(s, 128) }

package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/internal/lograte"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
)

// Errors of the publisher.
var (
	// ErrClosed is returned by Publish after Close, and passed to the done
	// callback of every task Close abandoned before its ack.
	ErrClosed = errors.New("publisher: closed")
	// ErrNilTask is returned by Publish for a nil task.
	ErrNilTask = errors.New("publisher: nil task")
	// ErrConnection is passed to done when the NATS connection was closed
	// or is draining, so no retry can ever succeed. It wraps the NATS error.
	ErrConnection = errors.New("publisher: NATS connection closed")
)

// Dead-letter reasons set by the publisher.
const (
	ReasonOversize       = "oversize"
	ReasonSubjectTooLong = "subject-too-long"
	ReasonInvalidSubject = "invalid-subject"
	ReasonInvalidTask    = "invalid-task"
)

// logInterval spaces repeated warnings about failing publishes: an outage
// fails every pending task, and one line per task would bury the cause.
const logInterval = 10 * time.Second

// errAckTimeout marks an attempt whose PubAck did not arrive in AckTimeout.
var errAckTimeout = errors.New("no PubAck within the ack timeout")

// Publisher puts delivery tasks on the JetStream task stream, asynchronously
// and in order per subject.
//
// # Delivery
//
// Publish returns once the task is accepted; done is then called exactly
// once, from a publisher goroutine: with nil when JetStream acknowledged the
// task (stored it, or already held it under the same event id), or when it
// was recorded on the dead-letter stream instead. A publish that fails or
// gets no ack in time (NATS down, stream unavailable, leader election) is
// retried with backoff for as long as it takes; it is never skipped and
// never reported to done. done gets an error only when retrying cannot
// help: ErrClosed when Close abandoned the task, ErrConnection when the
// NATS connection was closed for good. The caller must then not treat the
// task's change as processed (not checkpoint past it).
//
// # Order
//
// Tasks of one subject (one tenant, collection and docKey) are published
// strictly one after the other: the next is sent only after JetStream
// acknowledged the previous one, so a failed and retried task can never be
// overtaken by a later task of the same document, and stream order per
// subject is Publish order. Tasks of different subjects are pipelined up to
// MaxPending and their done callbacks run in any order. A hot document is
// therefore limited to one ack round trip per task; every other document
// proceeds meanwhile.
//
// Each message carries Nats-Msg-Id = the task's DedupeKey (its EventID unless redriven), which is deterministic, so a
// retry whose first attempt did land, or a republish after a crash, is
// dropped by the stream's duplicate window rather than stored twice.
type Publisher struct {
	js        jetstream.JetStream
	cfg       Config
	hashGuard bool
	log       *slog.Logger
	m         *metrics

	failWarn lograte.Limiter
	dlWarn   lograte.Limiter
	failing  atomic.Bool

	slots  chan struct{}       // one token per pending task
	images *semaphore.Weighted // image bytes awaiting upload
	ctx    context.Context
	cancel context.CancelFunc // closes the publisher
	wg     sync.WaitGroup     // per-subject runners and dead-letter writers

	mu      sync.Mutex
	closed  bool
	queues  map[string][]*item // by subject; [0] is being published
	pending int
	drained chan struct{} // closed when pending reaches zero
}

// item is one accepted task.
type item struct {
	task     *trigger.DeliveryTask
	done     func(error)
	accepted time.Time
	msg      *nats.Msg          // nil when the task goes to the dead-letter stream
	dl       *deadletter.Record // the dead-letter record, when there is one
	uploads  []upload           // images to store before msg is published
	budget   int64              // of images, held until the uploads are done

	tenant, collection, hashed string // metric labels
}

// New returns a publisher writing to js. Create js with
// Config.JetStreamOptions.
func New(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("publisher: JetStream is nil")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("publisher: register metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{
		js:        js,
		cfg:       cfg,
		hashGuard: *cfg.HashGuard,
		log:       cfg.Logger.With("component", "publisher", "stream", cfg.Stream),
		m:         m,
		failWarn:  lograte.Limiter{Interval: logInterval},
		dlWarn:    lograte.Limiter{Interval: logInterval},
		slots:     make(chan struct{}, cfg.MaxPending),
		images:    semaphore.NewWeighted(cfg.MaxPendingImageBytes),
		ctx:       ctx,
		cancel:    cancel,
		queues:    map[string][]*item{},
	}, nil
}

// Publish accepts task for publishing and returns; done (which may be nil)
// is called exactly once when the task is settled, as the Publisher
// documentation describes. Publish sets task.SubjectHashed and must not see
// task mutated afterwards. done may call Publish, but must not block for
// long: it runs on the goroutine that publishes the next task of the same
// subject.
//
// Publish blocks while MaxPending tasks are pending, or while
// MaxPendingImageBytes of document images wait to be stored: this is the
// backpressure the watcher needs to stop reading changes it cannot publish.
// If ctx ends or the publisher is closed first, Publish returns that error,
// the task was not accepted, and done is never called.
//
// Images over ImageThreshold are stored in the image bucket before the
// task is published, by the subject's runner, retried like a publish; the
// task carries references (see package images).
//
// Tasks that cannot go on the stream are recorded on the dead-letter
// stream and count as settled: "oversize" when the encoded task exceeds
// MaxPayload (the record then holds the task's metadata and size, not the
// task), "subject-too-long" when the docKey would need a hashed subject
// but HashGuard is off (or the tenant and collection alone are too long),
// "invalid-subject" when the tenant, collection or docKey cannot form a
// subject, and "invalid-task" when the task fails trigger.DeliveryTask
// validation.
func (p *Publisher) Publish(ctx context.Context, task *trigger.DeliveryTask, done func(error)) error {
	if task == nil {
		return ErrNilTask
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return ErrClosed
	}
	it := p.prepare(task, done)
	if err := p.reserveImages(ctx, it); err != nil {
		unclaim(it)
		<-p.slots
		return err
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		unclaim(it)
		p.releaseImages(it)
		<-p.slots
		return ErrClosed
	}
	p.pending++
	p.m.pending.Inc()
	if it.msg == nil {
		p.wg.Add(1)
		p.mu.Unlock()
		go p.runDeadLetter(it)
		return nil
	}
	// The subject's runner, if it has one, picks the task up after the
	// tasks queued before it; otherwise this task starts a runner.
	subject := it.msg.Subject
	q := p.queues[subject]
	p.queues[subject] = append(q, it)
	head := len(q) == 0
	if head {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if head {
		go p.run(subject, it)
	}
	return nil
}

// Flush waits until no task is pending (every accepted task's done has
// returned) or ctx ends. Use it before Close for a graceful drain.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	if p.pending == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.drained == nil {
		p.drained = make(chan struct{})
	}
	ch := p.drained
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting tasks, stops retrying, and calls done(ErrClosed)
// for every task not yet acknowledged; it returns once every done has
// returned. A task abandoned this way may still have reached the stream;
// republishing it later is deduplicated. Call Flush first to wait for
// acks. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Pending is the number of accepted tasks not yet settled.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending
}

// prepare builds the message of task, or the dead-letter record that
// replaces it.
func (p *Publisher) prepare(task *trigger.DeliveryTask, done func(error)) *item {
	it := &item{task: task, done: done, accepted: time.Now(), hashed: "false"}
	it.tenant, it.collection = "_invalid", "_invalid"
	if trigger.IsToken(task.Tenant) {
		it.tenant = p.cfg.TenantLabels.Label(task.Tenant)
	}
	if _, err := streams.CollectionTokens(task.Collection); err == nil {
		it.collection = task.MetricCollection()
	}
	if it.tenant == tenantlabel.Other {
		it.collection = tenantlabel.Other
	}

	subj, err := streams.BuildSubject(p.cfg.Stream, task.Tenant, task.Collection, task.DocKey)
	switch {
	case errors.Is(err, streams.ErrSubjectTooLong):
		it.dl = p.record(task, ReasonSubjectTooLong, err.Error(), true)
		return it
	case err != nil:
		it.dl = p.record(task, ReasonInvalidSubject, err.Error(), true)
		return it
	case subj.Hashed && !p.hashGuard:
		enc, _ := streams.EncodeDocKey(task.DocKey)
		it.dl = p.record(task, ReasonSubjectTooLong, fmt.Sprintf(
			"the subject with the base64url docKey (%d bytes encoded) exceeds %d bytes and the hash guard is off",
			len(enc), streams.MaxSubjectBytes), true)
		return it
	}
	task.SubjectHashed = subj.Hashed
	if subj.Hashed {
		it.hashed = "true"
	}
	if err := task.Validate(); err != nil {
		it.dl = p.record(task, ReasonInvalidTask, err.Error(), true)
		return it
	}
	it.uploads = p.claim(task)
	data, err := task.Encode()
	if err != nil {
		it.uploads = nil
		it.dl = p.record(task, ReasonInvalidTask, "encode: "+err.Error(), false)
		return it
	}
	if len(data) > p.cfg.MaxPayload {
		it.uploads = nil
		rec := p.record(task, ReasonOversize, fmt.Sprintf("encoded task is %d bytes, the limit is %d", len(data), p.cfg.MaxPayload), false)
		rec.Subject = subj.Name
		it.dl = rec
		return it
	}
	if subj.Hashed {
		p.m.hashed.WithLabelValues(it.tenant, it.collection).Inc()
	}
	it.msg = &nats.Msg{
		Subject: subj.Name,
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{msgID(task)}},
	}
	return it
}

// msgID is the task's JetStream message id: its dedupe key, which the
// same change republished keeps. A signed task adds the start of its
// signature, which is deterministic too (Ed25519), so a message forged
// under a known event id cannot take the id first and have JetStream drop
// the real task as a duplicate.
func msgID(task *trigger.DeliveryTask) string {
	if task.Auth == nil || task.Auth.Sig == "" {
		return task.DedupeKey()
	}
	return task.DedupeKey() + "." + task.Auth.Sig[:min(len(task.Auth.Sig), 22)]
}

// record builds the dead-letter record of task. withTask embeds the
// encoded task, so the record can be redriven, when it fits MaxPayload.
func (p *Publisher) record(task *trigger.DeliveryTask, reason, detail string, withTask bool) *deadletter.Record {
	rec := &deadletter.Record{
		ID:         task.EventID,
		Stage:      deadletter.StagePublish,
		Reason:     reason,
		Detail:     detail,
		Tenant:     task.Tenant,
		TriggerID:  task.TriggerID,
		Collection: task.Collection,
		DocKey:     task.DocKey,
		EventID:    task.EventID,
	}
	if withTask {
		if b, err := task.Encode(); err == nil && len(b) <= p.cfg.MaxPayload {
			rec.Task = b
		}
	}
	if rec.ID == "" {
		// A task without an event id still needs a stable dedupe id.
		rec.ID = "noid_" + trigger.NewEventID(task.Tenant, task.TriggerID, task.Collection, task.DocKey, task.Position)[len("evt_"):]
	}
	return rec
}

// run publishes the queue of one subject, head first, until it is empty.
func (p *Publisher) run(subject string, it *item) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for it != nil {
		err := p.publish(it, timer)
		if errors.Is(err, ErrClosed) {
			p.abandon(subject)
			return
		}
		it = p.finish(subject, it, err)
	}
}

// publish sends it until JetStream acknowledges it. It returns nil once
// the task is stored or dead-lettered, ErrClosed when the publisher closed
// first, or an ErrConnection error.
func (p *Publisher) publish(it *item, timer *time.Timer) error {
	if err := p.upload(it, timer); err != nil {
		return err
	}
	retry := p.retry()
	for attempt := 1; ; attempt++ {
		ack, err := p.attempt(it, timer)
		if err == nil {
			p.m.published.WithLabelValues(it.tenant, it.collection, it.hashed).Inc()
			if ack.Duplicate {
				p.m.duplicates.WithLabelValues(it.tenant, it.collection, it.hashed).Inc()
			}
			p.m.latency.WithLabelValues(it.tenant, it.collection, it.hashed).Observe(time.Since(it.accepted).Seconds())
			if attempt > 1 && p.failing.CompareAndSwap(true, false) {
				p.log.Info("publishing recovered", "attempts", attempt, "eventId", it.task.EventID)
			}
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		reason := failureReason(err)
		switch reason {
		case "oversize":
			// The server (or the stream) takes less than MaxPayload: no
			// retry can succeed, so the task goes where oversize tasks go.
			it.dl = p.record(it.task, ReasonOversize, "JetStream refused the task: "+err.Error(), false)
			it.dl.Subject = it.msg.Subject
			return p.deadLetter(it, timer)
		case "connection-closed":
			p.log.Error("NATS connection closed; task not published", "tenant", it.task.Tenant, "eventId", it.task.EventID, "error", err)
			return fmt.Errorf("%w: %w", ErrConnection, err)
		}
		p.m.failures.WithLabelValues(it.tenant, it.collection, it.hashed, reason).Inc()
		p.failing.Store(true)
		if suppressed, ok := p.failWarn.Allow(); ok {
			p.log.Warn("publish failed; retrying with backoff",
				"tenant", it.task.Tenant, "collection", it.task.Collection, "eventId", it.task.EventID,
				"attempt", attempt, "reason", reason, "error", err, "suppressedSinceLastLog", suppressed)
		}
		if !p.sleep(retry.Next(), timer) {
			return ErrClosed
		}
	}
}

// attempt publishes it once and waits for the PubAck.
func (p *Publisher) attempt(it *item, timer *time.Timer) (*jetstream.PubAck, error) {
	if nc := p.js.Conn(); nc != nil && nc.IsReconnecting() {
		// The client would queue the message in its reconnect buffer; every
		// retry of every pending task would queue another copy until the
		// buffer overflows. Wait out the outage with backoff instead.
		return nil, nats.ErrDisconnected
	}
	f, err := p.js.PublishMsgAsync(it.msg)
	if err != nil {
		return nil, err
	}
	timer.Reset(p.cfg.AckTimeout)
	defer timer.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-timer.C:
		return nil, errAckTimeout
	case <-p.ctx.Done():
		return nil, ErrClosed
	}
}

// finish removes it, the head of subject's queue, settles it with err, and
// returns the next task of the subject, if any.
func (p *Publisher) finish(subject string, it *item, err error) *item {
	p.mu.Lock()
	q := p.queues[subject]
	q[0] = nil
	q = q[1:]
	var next *item
	if len(q) == 0 {
		delete(p.queues, subject)
	} else {
		p.queues[subject] = q
		next = q[0]
	}
	p.mu.Unlock()
	p.settle(it, err)
	return next
}

// abandon settles every task of subject with ErrClosed.
func (p *Publisher) abandon(subject string) {
	p.mu.Lock()
	q := p.queues[subject]
	delete(p.queues, subject)
	p.mu.Unlock()
	for _, it := range q {
		p.releaseImages(it)
		p.settle(it, ErrClosed)
	}
}

// settle releases the task's slot and calls done. The slot goes first so
// that done may call Publish without deadlocking on a full window; pending
// drops only after done, so Flush returns after every done has returned.
func (p *Publisher) settle(it *item, err error) {
	<-p.slots
	p.m.pending.Dec()
	if it.done != nil {
		it.done(err)
	}
	p.mu.Lock()
	p.pending--
	if p.pending == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	p.mu.Unlock()
}

func (p *Publisher) runDeadLetter(it *item) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	p.settle(it, p.deadLetter(it, timer))
}

// deadLetter records it.dl, retrying like a publish. It returns nil once
// the record is stored.
func (p *Publisher) deadLetter(it *item, timer *time.Timer) error {
	rec := *it.dl
	retry := p.retry()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AckTimeout)
		err := p.cfg.DeadLetters.Publish(ctx, rec)
		cancel()
		if err == nil {
			p.m.deadLetters.WithLabelValues(it.tenant, it.collection, rec.Reason).Inc()
			if suppressed, ok := p.dlWarn.Allow(); ok {
				p.log.Warn("task dead-lettered instead of published",
					"tenant", rec.Tenant, "triggerId", rec.TriggerID, "collection", rec.Collection,
					"eventId", rec.EventID, "reason", rec.Reason, "detail", rec.Detail, "suppressedSinceLastLog", suppressed)
			}
			return nil
		}
		if p.ctx.Err() != nil {
			return ErrClosed
		}
		switch failureReason(err) {
		case "connection-closed":
			p.log.Error("NATS connection closed; task neither published nor dead-lettered", "tenant", rec.Tenant, "eventId", rec.EventID, "error", err)
			return fmt.Errorf("%w: %w", ErrConnection, err)
		case "oversize":
			if rec.Task != nil {
				// Keep the record, lose the redrivable copy.
				rec.Task = nil
				rec.Detail += " (task omitted: too large for the dead-letter stream)"
				continue
			}
		}
		p.m.failures.WithLabelValues(it.tenant, it.collection, it.hashed, "dead-letter").Inc()
		if suppressed, ok := p.failWarn.Allow(); ok {
			p.log.Warn("dead-letter publish failed; retrying with backoff",
				"tenant", rec.Tenant, "eventId", rec.EventID, "reason", rec.Reason, "attempt", attempt,
				"error", err, "suppressedSinceLastLog", suppressed)
		}
		if !p.sleep(retry.Next(), timer) {
			return ErrClosed
		}
	}
}

// sleep waits d, or returns false when the publisher closes first.
func (p *Publisher) sleep(d time.Duration, timer *time.Timer) bool {
	timer.Reset(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// failureReason classifies a publish error for metrics and handling. Only
// "oversize" and "connection-closed" are permanent; every other failure is
// retried.
func failureReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return "oversize"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return "connection-closed"
	case errors.Is(err, errAckTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrReconnectBufExceeded):
		return "disconnected"
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return "no-stream"
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return "stalled"
	case apiErr != nil:
		return "jetstream-error"
	}
	return "error"
}

// retry spaces the retries of one task, jittered so that the tasks one
// outage failed do not retry in lockstep.
func (p *Publisher) retry() backoff.Exponential {
	return backoff.Exponential{Initial: p.cfg.RetryInitial, Max: p.cfg.RetryMax, Jitter: true}
}

package ingest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// DeadLetterer records messages ingest gives up on. *deadletter.Publisher
// implements it; Publish must return nil only once the record is stored.
type DeadLetterer interface {
	Publish(ctx context.Context, rec deadletter.Record) error
}

// TemporalClient is the part of client.Client ingest uses.
type TemporalClient interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	CheckHealth(ctx context.Context, request *client.CheckHealthRequest) (*client.CheckHealthResponse, error)
}

// Dead-letter reasons ingest records.
const (
	ReasonInvalidTask      = "invalid-task"      // payload is not a valid DeliveryTask
	ReasonInvalidSubject   = "invalid-subject"   // subject is not <stream>.<tenant>.<collection>.<docKey>
	ReasonSubjectMismatch  = "subject-mismatch"  // subject is not the one the payload's key builds
	ReasonHashCollision    = "hash-collision"    // collision policy "fail"
	ReasonTemporalRejected = "temporal-rejected" // Temporal refused the task as invalid
	ReasonMaxDeliver       = "max-deliver"       // delivered more than Ingest.MaxDeliver times
)

// ErrShutdownTimeout is returned by Close when hand-offs did not stop within
// Ingest.ShutdownTimeout; what they held is redelivered after AckWait.
var ErrShutdownTimeout = errors.New("ingest: shutdown timed out")

// Option customises an Ingester.
type Option func(*Ingester)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(in *Ingester) { in.log = l } }

// WithRegisterer registers the metrics on r; the default is a private
// registry nobody scrapes.
func WithRegisterer(r prometheus.Registerer) Option { return func(in *Ingester) { in.reg = r } }

type state int

const (
	stateNew state = iota
	stateRunning
	stateClosing
	stateClosed
)

func (s state) String() string {
	return [...]string{"not started", "running", "shutting down", "closed"}[s]
}

// Ingester consumes delivery tasks from JetStream and hands each to the
// Temporal workflow of its (tenant, trigger, collection, docKey), acking
// the message only once Temporal has the signal. See the package
// documentation for ordering and shutdown guarantees.
type Ingester struct {
	cfg Config
	js  jetstream.JetStream
	tc  TemporalClient
	dl  DeadLetterer
	log *slog.Logger
	reg prometheus.Registerer
	m   *metrics

	// Test hooks. hashToken replaces publisher.HashToken when checking
	// hashed subjects, so tests can force collisions; beforeAck, when it
	// returns false, leaves a handed-off message neither acked nor handed
	// back, as a crash between hand-off and ack would.
	hashToken func(encodedDocKey string) string
	beforeAck func(*trigger.DeliveryTask) bool
	// notify, when set, is told of every step a message takes.
	notify func(step string, it *item)

	lanes  []*lane
	poison *lane // dead-letters, so poison never waits behind a key
	// routeMu serialises routing messages to lanes: the consume callback
	// and the flush of gathered redeliveries both route. collisions is
	// used only while routing.
	routeMu    sync.Mutex
	collisions *collisionCache
	// regathered holds a burst of redelivered messages until it ends;
	// regatherTimer flushes it after Config.RedeliveryWindow of quiet.
	// Both are guarded by routeMu.
	regathered    []*item
	regatherTimer *time.Timer

	work       context.Context // cancelled when hand-offs must stop
	cancelWork context.CancelFunc
	lanesWG    sync.WaitGroup
	keeperStop chan struct{}
	keeperDone chan struct{}
	fatal      chan error
	failed     atomic.Pointer[error] // the fatal error, for Ready
	pinID      atomic.Value          // string: our pin id, learned from messages
	watchStop  chan struct{}         // ends watchPin; nil when it does not run
	watchDone  chan struct{}
	livenessMu sync.Mutex
	liveness   *nats.Subscription // answers for pinID while we live

	mu       sync.Mutex
	state    state
	consumer jetstream.Consumer
	cc       jetstream.ConsumeContext
	closed   chan struct{}
	closeErr error
}

// New returns an Ingester for cfg (filled with WithDefaults and validated)
// that reads with js, hands off with tc and dead-letters with dl. It
// registers its metrics; nothing is consumed before Start.
func New(cfg Config, js jetstream.JetStream, tc TemporalClient, dl DeadLetterer, opts ...Option) (*Ingester, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if js == nil || tc == nil || dl == nil {
		return nil, errors.New("ingest: New needs a JetStream, a Temporal client and a dead-letterer")
	}
	in := &Ingester{
		cfg: cfg, js: js, tc: tc, dl: dl,
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		reg:        prometheus.NewRegistry(),
		collisions: newCollisionCache(cfg.CollisionCacheSize),
		keeperStop: make(chan struct{}),
		keeperDone: make(chan struct{}),
		fatal:      make(chan error, 1),
		closed:     make(chan struct{}),
	}
	for _, o := range opts {
		o(in)
	}
	m, err := newMetrics(in.reg)
	if err != nil {
		return nil, fmt.Errorf("ingest: register metrics: %w", err)
	}
	in.m = m
	for i := range cfg.Ingest.Lanes {
		in.lanes = append(in.lanes, newLane(m.laneDepth.WithLabelValues(laneLabel(i))))
	}
	in.poison = newLane(m.laneDepth.WithLabelValues("dead-letter"))
	in.work, in.cancelWork = context.WithCancel(context.Background())
	return in, nil
}

// Run starts the Ingester, consumes until ctx is done and then shuts down
// gracefully (see Close). It returns early with an error if the consumer is
// deleted under it.
func (in *Ingester) Run(ctx context.Context) error {
	if err := in.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return in.Close()
	case err := <-in.fatal:
		return errors.Join(err, in.Close())
	}
}

// Start creates or verifies the consumer (per NATS.Provisioning) and starts
// consuming. ctx bounds only the setup; stop with Close.
func (in *Ingester) Start(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != stateNew {
		return fmt.Errorf("ingest: Start called when %s", in.state)
	}
	consumer, err := ensureConsumer(ctx, in.js, in.cfg)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	batch := batchLimit{items: in.cfg.MaxSignalBatch, bytes: in.cfg.MaxSignalBytes}
	for _, l := range in.lanes {
		in.lanesWG.Add(1)
		go in.runLane(l, batch, in.handOff)
	}
	in.lanesWG.Add(1)
	go in.runLane(in.poison, batchLimit{items: 1}, func(ctx context.Context, its []*item) bool {
		return in.deadLetter(ctx, its[0])
	})
	go in.keep()

	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(in.cfg.Ingest.FetchBatch),
		jetstream.PullExpiry(in.cfg.pullExpiry()),
		jetstream.ConsumeErrHandler(in.onConsumeError),
	}
	if in.cfg.Sharing == SharingPinned {
		opts = append(opts, jetstream.PullPriorityGroup(pinnedGroup))
	}
	cc, err := consumer.Consume(in.onMessage, opts...)
	if err != nil {
		in.stopWorkers()
		in.state = stateClosed
		close(in.closed)
		return fmt.Errorf("ingest: consume %q: %w", in.cfg.NATS.Consumer, err)
	}
	in.consumer, in.cc, in.state = consumer, cc, stateRunning
	if in.cfg.takeover() {
		in.watchStop, in.watchDone = make(chan struct{}), make(chan struct{})
		go in.watchPin()
	}
	if !in.cfg.crashKeepsOrder() {
		in.log.Warn("ingest: pinnedTTL is less than twice ackWait; after a replica crashes, a key's tasks it held may reach Temporal after newer ones",
			"pinnedTTL", in.cfg.PinnedTTL, "ackWait", in.cfg.Ingest.AckWait)
	}
	in.log.Info("ingest started", "stream", in.cfg.NATS.Stream, "consumer", in.cfg.NATS.Consumer,
		"lanes", len(in.lanes), "sharing", in.cfg.Sharing, "taskQueue", in.cfg.Temporal.TaskQueue)
	return nil
}

// Close shuts down gracefully: it stops fetching, lets the lanes hand off
// what they hold for up to Ingest.DrainTimeout, then cancels the hand-offs
// still running and NAKs every message not handed off, lane by lane in
// stream order, so another replica receives them in order. It gives up
// after Ingest.ShutdownTimeout with ErrShutdownTimeout. Close is
// idempotent and safe to call concurrently.
func (in *Ingester) Close() error {
	in.mu.Lock()
	switch in.state {
	case stateNew:
		in.state = stateClosed
		close(in.closed)
		in.mu.Unlock()
		return nil
	case stateClosing, stateClosed:
		in.mu.Unlock()
		<-in.closed
		return in.closeErr
	}
	in.state = stateClosing
	in.mu.Unlock()

	start := time.Now()
	if in.watchStop != nil {
		// Closing replicas take nothing over.
		close(in.watchStop)
		<-in.watchDone
	}
	drainBy := start.Add(in.cfg.Ingest.DrainTimeout.D())
	giveUpBy := start.Add(in.cfg.Ingest.ShutdownTimeout.D())
	ctx, cancel := context.WithDeadline(context.Background(), giveUpBy)
	defer cancel()

	// A pinned replica pauses the consumer while it hands back what it
	// holds. Otherwise JetStream, finding no pull request it may serve
	// (this replica's are gone, the standby is not pinned yet), rotates
	// each NAKed message to the back of its redelivery queue, and the
	// standby would receive a key's tasks out of order. The pause expires
	// on its own shortly after ShutdownTimeout should this process die.
	pinned := in.cfg.Sharing == SharingPinned && in.holdsPin(ctx)
	paused := false
	if pinned {
		if _, err := in.js.PauseConsumer(ctx, in.cfg.NATS.Stream, in.cfg.NATS.Consumer, giveUpBy.Add(time.Second)); err != nil {
			in.log.Warn("ingest: pausing the consumer for the hand-over failed; the standby may see tasks out of order", "err", err)
		} else {
			paused = true
		}
	}

	// Drain hands the messages already buffered by the client to the
	// callback instead of dropping them, so they are handed off or NAKed
	// below rather than left for AckWait. Nothing is NAKed before the
	// subscription is gone, or the server could deliver it straight back.
	in.cc.Drain()
	if !waitUntil(in.cc.Closed(), giveUpBy) {
		in.log.Warn("ingest: consumer did not drain in time; messages it still buffers are redelivered after ackWait")
	}
	// The consumer is gone: nothing ends a burst of redeliveries any more.
	in.flushRegathered()
	for _, l := range in.allLanes() {
		l.close()
	}
	lanesDone := make(chan struct{})
	go func() { in.lanesWG.Wait(); close(lanesDone) }()
	var err error
	if !waitUntil(lanesDone, drainBy) {
		in.log.Info("ingest: drain timeout; handing back tasks not yet in Temporal", "drainTimeout", in.cfg.Ingest.DrainTimeout)
		in.cancelWork()
		if !waitUntil(lanesDone, giveUpBy) {
			in.log.Warn("ingest: shutdown timeout; unsettled tasks are redelivered after ackWait",
				"shutdownTimeout", in.cfg.Ingest.ShutdownTimeout)
			err = ErrShutdownTimeout
		}
	}
	in.cancelWork()
	close(in.keeperStop)
	<-in.keeperDone

	if pinned {
		in.unpin(ctx)
	}
	// Answering liveness probes until the pin is released keeps a standby
	// from taking over (and replaying) while this replica hands back.
	in.stopLiveness()
	if paused {
		if _, rerr := in.js.ResumeConsumer(ctx, in.cfg.NATS.Stream, in.cfg.NATS.Consumer); rerr != nil {
			in.log.Warn("ingest: resuming the consumer failed; it resumes by itself", "err", rerr, "at", giveUpBy.Add(time.Second))
		}
	}
	// Acks are fire-and-forget publishes; flush so they reach the server
	// before the caller closes the connection.
	if ferr := in.js.Conn().FlushWithContext(ctx); ferr != nil {
		in.log.Warn("ingest: flushing acks on shutdown", "err", ferr)
	}

	in.mu.Lock()
	in.state, in.closeErr = stateClosed, err
	in.mu.Unlock()
	close(in.closed)
	in.log.Info("ingest stopped", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// stopWorkers ends the lanes and the keeper when Start fails after
// starting them.
func (in *Ingester) stopWorkers() {
	for _, l := range in.allLanes() {
		l.close()
	}
	in.cancelWork()
	in.lanesWG.Wait()
	close(in.keeperStop)
	<-in.keeperDone
}

// holdsPin reports whether this replica is the one the pinned consumer
// currently delivers to; a standby must not pause or unpin it.
func (in *Ingester) holdsPin(ctx context.Context) bool {
	mine, _ := in.pinID.Load().(string)
	if mine == "" {
		return false
	}
	info, err := in.consumer.Info(ctx)
	if err != nil {
		in.log.Warn("ingest: reading consumer info on shutdown", "err", err)
		return false
	}
	for _, g := range info.PriorityGroups {
		if g.Group == pinnedGroup && g.PinnedClientID == mine {
			return true
		}
	}
	return false
}

// unpin releases the pinned group at once, so a standby takes over now
// rather than after PinnedTTL.
func (in *Ingester) unpin(ctx context.Context) {
	s, err := in.js.Stream(ctx, in.cfg.NATS.Stream)
	if err == nil {
		err = s.UnpinConsumer(ctx, in.cfg.NATS.Consumer, pinnedGroup)
	}
	if err != nil {
		in.log.Warn("ingest: unpinning; a standby takes over after pinnedTTL", "err", err, "pinnedTTL", in.cfg.PinnedTTL)
	}
}

// Ready reports whether the Ingester is running, its consumer still exists,
// its NATS connection is up and the Temporal frontend is healthy, for a
// readiness probe.
func (in *Ingester) Ready(ctx context.Context) error {
	in.mu.Lock()
	st := in.state
	in.mu.Unlock()
	if st != stateRunning {
		return fmt.Errorf("ingest is %s", st)
	}
	if err := in.failed.Load(); err != nil {
		return *err
	}
	if s := in.js.Conn().Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats connection is %s", s)
	}
	if _, err := in.tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("temporal health check: %w", err)
	}
	return nil
}

func (in *Ingester) allLanes() []*lane { return append(append([]*lane(nil), in.lanes...), in.poison) }

func (in *Ingester) onConsumeError(_ jetstream.ConsumeContext, err error) {
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
		in.log.Error("ingest: consumer is gone", "consumer", in.cfg.NATS.Consumer, "err", err)
		ferr := fmt.Errorf("ingest: consumer %q: %w", in.cfg.NATS.Consumer, err)
		in.failed.CompareAndSwap(nil, &ferr)
		select {
		case in.fatal <- ferr:
		default:
		}
	case errors.Is(err, jetstream.ErrPinIDMismatch):
		in.log.Debug("ingest: another replica holds the pinned consumer", "err", err)
	default:
		in.log.Warn("ingest: consuming", "err", err)
	}
}

// item is one received message on its way through a lane.
type item struct {
	msg       jetstream.Msg
	received  time.Time
	touched   time.Time // last ack-timer reset; guarded by the lane's mu
	delivered uint64    // JetStream's delivery count
	streamSeq uint64
	task      *trigger.DeliveryTask // nil if the payload did not decode
	// key is the task's workflow ID, set once the task is known to be
	// handed off; the lane batches the queued tasks of one key.
	key    string
	labels labels
	// reason is set when the message is dead-lettered instead of handed
	// off; detail explains it.
	reason, detail string
}

func (it *item) payload() []byte {
	if it.msg == nil {
		return nil
	}
	return it.msg.Data()
}

// onMessage runs on the consumer's delivery goroutine, one message at a
// time in delivery order: it classifies the message and queues it on its
// lane without blocking, so a slow key never holds up the others.
func (in *Ingester) onMessage(msg jetstream.Msg) {
	now := time.Now()
	it := &item{msg: msg, received: now, touched: now, labels: invalidLabels}
	if md, err := msg.Metadata(); err == nil {
		it.delivered, it.streamSeq = md.NumDelivered, md.Sequence.Stream
	}
	if pin := msg.Headers().Get("Nats-Pin-Id"); pin != "" {
		in.learnPin(pin)
	}
	in.classify(it)
	in.note("received", it)
	in.m.consumed.WithLabelValues(it.labels.values()...).Inc()
	if it.delivered > 1 {
		in.m.redelivered.WithLabelValues(it.labels.values()...).Inc()
	}
	if it.reason == "" && in.cfg.Ingest.MaxDeliver > 0 && it.delivered > uint64(in.cfg.Ingest.MaxDeliver) {
		it.reason = ReasonMaxDeliver
		it.detail = fmt.Sprintf("delivered %d times, more than ingest.maxDeliver (%d)", it.delivered, in.cfg.Ingest.MaxDeliver)
	}
	in.routeMu.Lock()
	defer in.routeMu.Unlock()
	if it.delivered > 1 && in.cfg.RedeliveryWindow > 0 {
		in.regather(it)
		return
	}
	in.flushRegatheredLocked()
	in.route(it)
}

// regather holds a redelivered message back until the burst it belongs to
// ends. JetStream serves redeliveries before new messages, but after a
// pinned replica dies it rotates its redelivery queue while the dead
// replica still holds the pin (each wake-up of its delivery loop moves the
// head to the tail), so the standby receives the dead replica's tasks
// ahead of newer ones yet out of order among themselves. Sorted by stream
// sequence they are back in each key's order. The burst ends with the
// first message delivered for the first time, or after RedeliveryWindow
// without a message.
func (in *Ingester) regather(it *item) {
	in.regathered = append(in.regathered, it)
	if in.regatherTimer == nil {
		in.regatherTimer = time.AfterFunc(in.cfg.RedeliveryWindow, in.flushRegathered)
	} else {
		in.regatherTimer.Reset(in.cfg.RedeliveryWindow)
	}
}

func (in *Ingester) flushRegathered() {
	in.routeMu.Lock()
	defer in.routeMu.Unlock()
	in.flushRegatheredLocked()
}

// flushRegatheredLocked routes the gathered redeliveries in stream order;
// routeMu must be held.
func (in *Ingester) flushRegatheredLocked() {
	if len(in.regathered) == 0 {
		return
	}
	if in.regatherTimer != nil {
		in.regatherTimer.Stop()
	}
	held := in.regathered
	in.regathered = nil
	slices.SortStableFunc(held, func(a, b *item) int { return cmp.Compare(a.streamSeq, b.streamSeq) })
	for _, it := range held {
		in.route(it)
	}
}

// route queues a classified message on its lane, or on the dead-letter
// lane if it is poison; routeMu must be held.
func (in *Ingester) route(it *item) {
	if it.reason != "" {
		in.enqueue(in.poison, it)
		return
	}
	if it.task.SubjectHashed && in.collisions.observe(it.msg.Subject(), it.task.DocKey) && in.collided(it) {
		in.enqueue(in.poison, it)
		return
	}
	t := it.task
	it.key = WorkflowID(t.Tenant, t.TriggerID, t.Collection, t.DocKey)
	in.enqueue(in.lanes[in.laneOf(it)], it)
}

// classify decodes the task and checks it against its subject, setting
// it.reason when the message is poison.
func (in *Ingester) classify(it *item) {
	task, err := trigger.DecodeTask(it.msg.Data())
	if err != nil {
		it.reason, it.detail = ReasonInvalidTask, err.Error()
		return
	}
	it.task = task
	if _, err := publisher.ParseSubject(it.msg.Subject()); err != nil {
		it.reason, it.detail = ReasonInvalidSubject, err.Error()
		return
	}
	if err := in.checkSubject(it.msg.Subject(), task); err != nil {
		it.reason, it.detail = ReasonSubjectMismatch, err.Error()
		return
	}
	it.labels = labels{task.Tenant, task.MetricCollection(), strconv.FormatBool(task.SubjectHashed)}
}

// checkSubject verifies that subject is the one the publisher builds from
// the task's own key. The subject's docKey token may be a hash, so the
// payload is the key's only source of truth; this check keeps a message
// filed under one key from carrying another's task.
func (in *Ingester) checkSubject(subject string, t *trigger.DeliveryTask) error {
	want, err := publisher.BuildSubject(in.cfg.NATS.Stream, t.Tenant, t.Collection, t.DocKey)
	if err != nil {
		return fmt.Errorf("the task's key builds no subject: %w", err)
	}
	if want.Hashed != t.SubjectHashed {
		return fmt.Errorf("task has subjectHashed %t, but its key builds a subject with hashed %t", t.SubjectHashed, want.Hashed)
	}
	name := want.Name
	if want.Hashed && in.hashToken != nil {
		enc, _ := publisher.EncodeDocKey(t.DocKey) // BuildSubject succeeded, so the key encodes
		name = name[:strings.LastIndexByte(name, '.')+1] + in.hashToken(enc)
	}
	if name != subject {
		return fmt.Errorf("subject is %q, but the task's key builds %q", truncate(subject), truncate(name))
	}
	return nil
}

// collided counts and logs a hashed subject carrying a second docKey and
// reports whether the policy dead-letters the message.
func (in *Ingester) collided(it *item) bool {
	t := it.task
	policy := in.cfg.Ingest.CollisionPolicy
	in.m.collisions.WithLabelValues(t.Tenant, t.MetricCollection(), string(policy)).Inc()
	in.note("collision", it)
	attrs := []any{"subject", it.msg.Subject(), "tenant", t.Tenant, "collection", t.Collection,
		"docKey", truncate(t.DocKey), "eventId", t.EventID, "policy", policy}
	switch policy {
	case config.CollisionFail:
		it.reason = ReasonHashCollision
		it.detail = "hashed subject " + truncate(it.msg.Subject()) + " already carries another docKey"
		in.log.Warn("ingest: hashed subject collision; dead-lettering the task", attrs...)
		return true
	case config.CollisionAlert:
		in.log.Warn("ingest: hashed subject collision; both keys share a lane", attrs...)
	default:
		in.log.Info("ingest: hashed subject collision; both keys share a lane", attrs...)
	}
	return false
}

// laneOf picks the lane from the task's (tenant, trigger, collection, key).
// For a hashed subject the key is the subject's hash token, so documents
// whose tokens collide share a lane and keep their stream order.
func (in *Ingester) laneOf(it *item) int {
	t := it.task
	key, kind := t.DocKey, "k"
	if t.SubjectHashed {
		s := it.msg.Subject()
		key, kind = s[strings.LastIndexByte(s, '.')+1:], "h"
	}
	h := fnv.New64a()
	var n [8]byte
	for _, p := range []string{t.Tenant, t.TriggerID, t.Collection, kind, key} {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return int(mix64(h.Sum64()) % uint64(len(in.lanes)))
}

// mix64 is MurmurHash3's finalizer: FNV's low bits alone spread keys that
// differ only near their end poorly over a few lanes.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (in *Ingester) enqueue(l *lane, it *item) {
	if !l.push(it) {
		// The lane has shut down; hand the message straight back.
		in.nak(it)
	}
}

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

// handOff signals a batch of one key's tasks to the key's workflow,
// starting it if needed, and acks the messages once Temporal has the
// signal. Several tasks go as one signal, a JSON array in stream order: a
// busy key then costs Temporal one signal event and one call per batch
// rather than per task. A transient failure is retried in place, with
// backoff, while the keeper holds the messages' ack timers, so a key's
// later tasks never overtake them. It returns false, leaving the messages
// unsettled, only when ctx is cancelled.
func (in *Ingester) handOff(ctx context.Context, batch []*item) bool {
	head := batch[0]
	t := head.task
	id := head.key
	opts := in.startOptions(id, t)
	params := workflows.DeliveryParams{Tenant: t.Tenant, TriggerID: t.TriggerID, Collection: t.Collection, DocKey: t.DocKey}
	// The raw payloads are signalled rather than the decoded tasks so
	// fields this version does not know survive to a newer worker.
	signal := signalPayload(batch)
	pause := in.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, in.cfg.HandoffTimeout)
		_, err := in.tc.SignalWithStartWorkflow(actx, id, workflows.TaskSignal, signal, opts, workflows.DeliveryWorkflow, params)
		cancel()
		if err == nil {
			break
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
		if !sleep(ctx, jitter(pause)) {
			return false
		}
		pause = min(2*pause, in.cfg.RetryMax)
	}
	for _, it := range batch {
		in.ack(it)
	}
	return true
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
	t := it.task
	in.m.signalled.WithLabelValues(it.labels.values()...).Inc()
	in.note("signalled", it)
	if in.beforeAck != nil && !in.beforeAck(t) {
		return
	}
	if err := it.msg.Ack(); err != nil {
		// Temporal has the task; JetStream will redeliver it and the
		// workflow drops the duplicate event id.
		in.log.Warn("ingest: ack failed after hand-off; expect a duplicate", "workflowId", it.key, "eventId", t.EventID, "err", err)
		return
	}
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
	if ps, err := publisher.ParseSubject(it.msg.Subject()); err == nil {
		rec.Tenant = ps.Tenant
	}
	if t := it.task; t != nil {
		rec.TriggerID, rec.Collection, rec.DocKey, rec.EventID = t.TriggerID, t.Collection, t.DocKey, t.EventID
		if rec.Tenant == "" {
			rec.Tenant = t.Tenant
		}
		rec.Task = json.RawMessage(it.msg.Data())
	} else {
		rec.Payload = it.msg.Data()
	}
	pause := in.cfg.RetryInitial
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
				len(it.msg.Data()), in.cfg.NATS.Stream, it.streamSeq)
			rec.Task, rec.Payload = nil, nil
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt == 1 || attempt%20 == 0 {
			in.log.Warn("ingest: dead-lettering failed; retrying", "reason", it.reason, "streamSeq", it.streamSeq, "attempt", attempt, "err", err)
		}
		if !sleep(ctx, jitter(pause)) {
			return false
		}
		pause = min(2*pause, in.cfg.RetryMax)
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
		return in.cfg.NATS.Stream + "-" + strconv.FormatUint(it.streamSeq, 10)
	}
	sum := sha256.Sum256(append([]byte(it.msg.Subject()+"\x00"), it.msg.Data()...))
	return in.cfg.NATS.Stream + "-" + hex.EncodeToString(sum[:16])
}

// nak hands a message back for redelivery and waits until the server has
// processed it, so a lane's NAKs reach the redelivery queue in lane order
// before the consumer resumes.
func (in *Ingester) nak(it *item) {
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
	every := in.cfg.Ingest.AckWait.D() / 4
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

// errorCode is the gRPC code of a Temporal error, a bounded label value.
func errorCode(err error) string {
	if st := serviceerror.ToStatus(err); st != nil {
		return st.Code().String()
	}
	return "Unknown"
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
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

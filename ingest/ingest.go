package ingest

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
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/trigger"
)

// TemporalClient is the part of client.Client ingest uses.
type TemporalClient interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
	SignalWithStartWorkflow(ctx context.Context, workflowID, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	CheckHealth(ctx context.Context, request *client.CheckHealthRequest) (*client.CheckHealthResponse, error)
	// DescribeWorkflowExecution and GetWorkflow read a closed run's result
	// when a task may have been handed off before (see dropDelivered).
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	GetWorkflow(ctx context.Context, workflowID string, runID string) client.WorkflowRun
}

// Dead-letter reasons ingest records.
const (
	ReasonInvalidTask      = "invalid-task"      // payload is not a valid DeliveryTask
	ReasonInvalidSubject   = "invalid-subject"   // subject is not <stream>.<tenant>.<collection>.<docKey>
	ReasonSubjectMismatch  = "subject-mismatch"  // subject is not the one the payload's key builds
	ReasonHashCollision    = "hash-collision"    // collision policy "fail"
	ReasonTemporalRejected = "temporal-rejected" // Temporal refused the task as invalid
	ReasonMaxDeliver       = "max-deliver"       // delivered more than Config.MaxDeliver times
	ReasonUnauthenticated  = "unauthenticated"   // the task's signature does not verify (Config.Verifier)
)

// ErrShutdownTimeout is returned by Close when hand-offs did not stop within
// Config.ShutdownTimeout; what they held is redelivered after AckWait.
var ErrShutdownTimeout = errors.New("ingest: shutdown timed out")

// Option customises an Ingester. The package exports none: its
// dependencies are fields of Config, and the options its tests use are
// test hooks.
type Option func(*Ingester)

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
	dl  deadletter.Sink
	log *slog.Logger
	m   *metrics

	// Test hooks. hashToken replaces streams.HashToken when checking
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
	// replayHorizon is the highest stream sequence a dead holder may have
	// handed off before a takeover replayed it (see dropDelivered).
	replayHorizon atomic.Uint64
	// recent guesses which keys may have an open run (Config.SignalWindow);
	// nil when every hand-off signals.
	recent     *recentKeys
	horizonSub *nats.Subscription

	mu       sync.Mutex
	state    state
	consumer jetstream.Consumer
	cc       jetstream.ConsumeContext
	closed   chan struct{}
	closeErr error
}

// New returns an Ingester for cfg (filled with WithDefaults and validated)
// that reads with js, hands off with tc and dead-letters to
// cfg.DeadLetters. It registers its metrics on cfg.Registerer; nothing is
// consumed before Start.
func New(cfg Config, js jetstream.JetStream, tc TemporalClient, opts ...Option) (*Ingester, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if js == nil || tc == nil || cfg.DeadLetters == nil {
		return nil, errors.New("ingest: New needs a JetStream, a Temporal client and Config.DeadLetters")
	}
	in := &Ingester{
		cfg: cfg, js: js, tc: tc, dl: cfg.DeadLetters, log: cfg.Logger,
		collisions: newCollisionCache(cfg.CollisionCacheSize),
		keeperStop: make(chan struct{}),
		keeperDone: make(chan struct{}),
		fatal:      make(chan error, 1),
		closed:     make(chan struct{}),
	}
	for _, o := range opts {
		o(in)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("ingest: register metrics: %w", err)
	}
	in.m = m
	for i := range cfg.Lanes {
		in.lanes = append(in.lanes, newLane(m.laneDepth.WithLabelValues(laneLabel(i))))
	}
	in.poison = newLane(m.laneDepth.WithLabelValues("dead-letter"))
	if cfg.SignalWindow > 0 {
		in.recent = newRecentKeys(cfg.SignalWindow, recentKeysMax)
	}
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

	if in.cfg.takeover() {
		// Before consuming: a takeover's replay must find its horizon.
		in.horizonSub = in.followReplayHorizon()
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(in.cfg.FetchBatch),
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
		return fmt.Errorf("ingest: consume %q: %w", in.cfg.Consumer, err)
	}
	in.consumer, in.cc, in.state = consumer, cc, stateRunning
	if in.cfg.takeover() {
		in.watchStop, in.watchDone = make(chan struct{}), make(chan struct{})
		go in.watchPin()
	}
	if !in.cfg.crashKeepsOrder() {
		in.log.Warn("ingest: pinnedTTL is less than twice ackWait; after a replica crashes, a key's tasks it held may reach Temporal after newer ones",
			"pinnedTTL", in.cfg.PinnedTTL, "ackWait", in.cfg.AckWait)
	}
	in.log.Info("ingest started", "stream", in.cfg.Stream, "consumer", in.cfg.Consumer,
		"lanes", len(in.lanes), "sharing", in.cfg.Sharing, "taskQueue", in.cfg.TaskQueue)
	return nil
}

// Close shuts down gracefully: it stops fetching, lets the lanes hand off
// what they hold for up to Config.DrainTimeout, then cancels the hand-offs
// still running and NAKs every message not handed off, lane by lane in
// stream order, so another replica receives them in order. It gives up
// after Config.ShutdownTimeout with ErrShutdownTimeout. Close is
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
	if in.horizonSub != nil {
		_ = in.horizonSub.Unsubscribe()
	}
	drainBy := start.Add(in.cfg.DrainTimeout)
	giveUpBy := start.Add(in.cfg.ShutdownTimeout)
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
		if _, err := in.js.PauseConsumer(ctx, in.cfg.Stream, in.cfg.Consumer, giveUpBy.Add(time.Second)); err != nil {
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
		in.log.Info("ingest: drain timeout; handing back tasks not yet in Temporal", "drainTimeout", in.cfg.DrainTimeout)
		in.cancelWork()
		if !waitUntil(lanesDone, giveUpBy) {
			in.log.Warn("ingest: shutdown timeout; unsettled tasks are redelivered after ackWait",
				"shutdownTimeout", in.cfg.ShutdownTimeout)
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
		if _, rerr := in.js.ResumeConsumer(ctx, in.cfg.Stream, in.cfg.Consumer); rerr != nil {
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
	s, err := in.js.Stream(ctx, in.cfg.Stream)
	if err == nil {
		err = s.UnpinConsumer(ctx, in.cfg.Consumer, pinnedGroup)
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
		in.log.Error("ingest: consumer is gone", "consumer", in.cfg.Consumer, "err", err)
		ferr := fmt.Errorf("ingest: consumer %q: %w", in.cfg.Consumer, err)
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

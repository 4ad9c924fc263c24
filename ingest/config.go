package ingest

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// Sharing says how several ingest processes share the durable consumer.
type Sharing string

// Sharing modes.
const (
	// SharingPinned makes the consumer a JetStream priority group with the
	// pinned_client policy: the server delivers to one ingest process at a
	// time and fails over to another when it stops pulling. Per-key order
	// then holds across replicas (see the package documentation for the
	// exact limits). Needs nats-server 2.11 or later.
	SharingPinned Sharing = "pinned"
	// SharingShared lets every replica pull from the consumer at once.
	// Throughput scales with replicas, but two replicas can hand off one
	// document's tasks out of order.
	SharingShared Sharing = "shared"
)

// DefaultConsumer is the durable consumer's default name.
const DefaultConsumer = "triggerflow-ingest"

// pinnedGroup is the priority group name of the pinned consumer; it is
// part of the consumer's configuration, so changing it is drift.
const pinnedGroup = "ingest"

// minPinnedTTL leaves room for pull requests, which JetStream clients
// cannot make expire sooner than after 1s, at PinnedTTL/3.
const minPinnedTTL = 3 * time.Second

// crashKeepsOrder reports whether PinnedTTL leaves the crashed replica's
// tasks time to come due before another replica is pinned (see PinnedTTL).
func (c Config) crashKeepsOrder() bool {
	return c.Sharing != SharingPinned || c.PinnedTTL >= 2*c.AckWait
}

// pullExpiry is how long one pull request waits on the server. A pinned
// replica must renew its requests well within PinnedTTL or it loses the
// pin while idle.
func (c Config) pullExpiry() time.Duration {
	if c.Sharing == SharingPinned {
		return min(30*time.Second, c.PinnedTTL/3)
	}
	return 30 * time.Second
}

// CollisionPolicy is what ingest does when one hashed subject token is seen
// with two different docKeys.
type CollisionPolicy string

// Collision policies.
const (
	// CollisionSerialize processes both keys in one lane, in stream order.
	CollisionSerialize CollisionPolicy = "serialize"
	// CollisionAlert does the same and also logs a warning per collision.
	CollisionAlert CollisionPolicy = "alert"
	// CollisionFail dead-letters the colliding task with its reason.
	CollisionFail CollisionPolicy = "fail"
)

// Config configures an Ingester. The binaries fill it from the ingest
// file; every field has a default that suits production.
type Config struct {
	// Stream is the task stream; tasks are read from "<Stream>.>".
	// Defaults to streams.DefaultStream.
	Stream string
	// Consumer is the durable consumer. Defaults to "triggerflow-ingest".
	Consumer string
	// Provisioning says whether ingest creates or only verifies its
	// consumer. Defaults to streams.ProvisionCreate.
	Provisioning streams.Provisioning
	// TaskQueue is the Temporal task queue workflows are started on.
	// Defaults to "triggerflow".
	TaskQueue string
	// Lanes is how many hand-offs run in parallel; a key's tasks always
	// share a lane. Defaults to 16.
	Lanes int
	// AckWait is how long JetStream waits for an ack before it redelivers;
	// ingest resets the timer of the tasks it holds. Defaults to 15s.
	AckWait time.Duration
	// MaxAckPending caps tasks delivered but not acked. Defaults to 1024.
	MaxAckPending int
	// MaxDeliver caps deliveries of one task before it is dead-lettered;
	// -1 means unlimited. Defaults to -1.
	MaxDeliver int
	// DrainTimeout is how long hand-offs may finish at shutdown before the
	// rest is handed back. Defaults to 5s.
	DrainTimeout time.Duration
	// ShutdownTimeout bounds the whole shutdown; at least DrainTimeout.
	// Defaults to 10s.
	ShutdownTimeout time.Duration
	// CollisionPolicy applies to hashed subjects seen with two docKeys.
	// Defaults to CollisionSerialize.
	CollisionPolicy CollisionPolicy
	// FetchBatch is how many tasks one pull requests; at most
	// MaxAckPending. Defaults to 64.
	FetchBatch int
	// TakeoverMaxReplay bounds a takeover from a dead pinned replica: past
	// this many stream messages between the ack floor and the last
	// delivered one the replica waits for PinnedTTL instead (see
	// Ingester.checkPin). -1 turns takeovers off. Defaults to 10000.
	TakeoverMaxReplay int

	// Sharing is "pinned" or "shared"; see the Sharing constants.
	// Defaults to "pinned".
	Sharing Sharing
	// PinnedTTL is how long JetStream keeps a pinned replica that stopped
	// pulling before it pins another: the failover time after a crash (a
	// graceful shutdown unpins at once). The pinned replica renews its pull
	// requests every PinnedTTL/3 (at most 30s). It must be at least 3s and
	// exceed ShutdownTimeout.
	//
	// At least twice AckWait keeps a key's order across a crash:
	// the crashed replica's last pull is at most PinnedTTL/3 old, so its
	// unacked tasks (their ack timers last reset at the crash) are due for
	// redelivery before the pin passes on, and JetStream serves
	// redeliveries before newer messages. Shorter fails over sooner but
	// may hand a key's held tasks to Temporal after newer ones. A task
	// already redelivered before has a longer ack deadline (the consumer's
	// backoff: 2× and 4× AckWait), so after a second fault in its lifetime
	// it may still arrive late. Defaults to the largest of 30s, twice
	// ShutdownTimeout and twice AckWait.
	PinnedTTL time.Duration
	// CollisionCacheSize bounds how many hashed subjects are remembered to
	// detect two docKeys sharing one hashed subject token. Detection is
	// best effort beyond it. Defaults to 65536 (a few MiB).
	CollisionCacheSize int
	// MaxSignalBatch is the most tasks of one key handed off in one signal:
	// the tasks of a key queued behind each other in a lane go together.
	// 1 turns batching off. Defaults to 100.
	MaxSignalBatch int
	// MaxSignalBytes bounds a batch's payload, well under Temporal's 2 MiB
	// payload limit (it warns from 512 KiB); a task larger than this goes
	// alone when it reaches the head of its lane. Defaults to 256 KiB.
	MaxSignalBytes int
	// RedeliveryWindow is how long a burst of redelivered messages is held
	// after its last message before it is handed off sorted by stream
	// sequence (a first-time delivery ends the burst at once). It repairs
	// the order of the tasks a crashed replica held; see Ingester.regather.
	// Negative turns it off. Defaults to 250ms.
	RedeliveryWindow time.Duration
	// SignalWindow is how long after handing off a key's task ingest
	// signals the key's run (Signal-With-Start) rather than starting a new
	// run with the task as its input. A key quiet for longer is most likely
	// cold, its last run closed: a start costs Temporal a history event and
	// a signal less. A wrong guess costs one start Temporal refuses, after
	// which the task is signalled. Negative always signals. Defaults to 1m,
	// the worker's default quietPeriod.
	SignalWindow time.Duration
	// HandoffTimeout bounds one hand-off attempt. Defaults to 10s.
	HandoffTimeout time.Duration
	// RetryInitial is the first pause after a failed hand-off; pauses
	// double up to RetryMax. Defaults to 100ms.
	RetryInitial time.Duration
	// RetryMax caps the pause between hand-off attempts. Defaults to 5s.
	RetryMax time.Duration
	// TakeoverInterval is how often a pinned replica that does not hold
	// the pin checks whether the holder is dead while tasks wait, and if
	// so takes over at once instead of after PinnedTTL (see
	// Ingester.checkPin; TakeoverMaxReplay -1 turns it off).
	// Negative also turns it off. Defaults to 1s.
	TakeoverInterval time.Duration

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// DeadLetters records the tasks ingest gives up on (the Reason
	// constants). Required: such a task is terminated only once it is
	// recorded.
	DeadLetters deadletter.Sink
	// Logger receives hand-off warnings and dead-letter notices; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Verifier, when set, authenticates every task before anything else
	// (a *tasksig.Verifier); a task that fails is dead-lettered with
	// ReasonUnauthenticated and never handed to Temporal. nil trusts
	// every task.
	Verifier TaskVerifier
}

// TaskVerifier authenticates a delivery task.
type TaskVerifier interface {
	Verify(t *trigger.DeliveryTask) error
}

// takeover reports whether a replica watches the pin holder.
func (c Config) takeover() bool {
	return c.Sharing == SharingPinned && c.TakeoverInterval > 0 && c.TakeoverMaxReplay >= 0
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Stream = cmp.Or(c.Stream, streams.DefaultStream)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Consumer = cmp.Or(c.Consumer, DefaultConsumer)
	c.Provisioning = cmp.Or(c.Provisioning, streams.ProvisionCreate)
	c.TaskQueue = cmp.Or(c.TaskQueue, workflows.DefaultTaskQueue)
	c.Lanes = cmp.Or(c.Lanes, 16)
	c.AckWait = cmp.Or(c.AckWait, 15*time.Second)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1024)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, -1)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 5*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.CollisionPolicy = cmp.Or(c.CollisionPolicy, CollisionSerialize)
	c.FetchBatch = cmp.Or(c.FetchBatch, 64)
	c.TakeoverMaxReplay = cmp.Or(c.TakeoverMaxReplay, 10000)
	c.Sharing = cmp.Or(c.Sharing, SharingPinned)
	if c.PinnedTTL == 0 {
		// Long enough for a crashed replica's tasks to come due, and for a
		// graceful shutdown to finish, before the pin can move.
		c.PinnedTTL = max(30*time.Second, 2*c.ShutdownTimeout, 2*c.AckWait)
	}
	c.CollisionCacheSize = cmp.Or(c.CollisionCacheSize, 65536)
	c.MaxSignalBatch = cmp.Or(c.MaxSignalBatch, 100)
	c.MaxSignalBytes = cmp.Or(c.MaxSignalBytes, 256<<10)
	c.RedeliveryWindow = cmp.Or(c.RedeliveryWindow, 250*time.Millisecond)
	c.SignalWindow = cmp.Or(c.SignalWindow, time.Minute)
	c.HandoffTimeout = cmp.Or(c.HandoffTimeout, 10*time.Second)
	c.RetryInitial = cmp.Or(c.RetryInitial, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.TakeoverInterval = cmp.Or(c.TakeoverInterval, time.Second)
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("ingest: invalid config")

// Validate reports every invalid field of c; call it on the result of
// WithDefaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !trigger.IsToken(c.Stream) {
		bad("stream %q is not a valid stream name", c.Stream)
	}
	if !trigger.IsToken(c.Consumer) {
		bad("consumer %q is not a valid consumer name", c.Consumer)
	}
	if c.Provisioning != streams.ProvisionCreate && c.Provisioning != streams.ProvisionVerify {
		bad("provisioning %q is not one of %s, %s", c.Provisioning, streams.ProvisionCreate, streams.ProvisionVerify)
	}
	if c.TaskQueue == "" {
		bad("taskQueue is required")
	}
	for _, n := range []struct {
		name   string
		v, min int
	}{{"lanes", c.Lanes, 1}, {"maxAckPending", c.MaxAckPending, 1}, {"fetchBatch", c.FetchBatch, 1},
		{"collisionCacheSize", c.CollisionCacheSize, 1}, {"maxSignalBatch", c.MaxSignalBatch, 1},
		{"maxSignalBytes", c.MaxSignalBytes, 1}, {"takeoverMaxReplay", c.TakeoverMaxReplay, -1}} {
		if n.v < n.min {
			bad("%s %d must be at least %d", n.name, n.v, n.min)
		}
	}
	if c.MaxDeliver != -1 && c.MaxDeliver < 1 {
		bad("maxDeliver %d must be -1 (unlimited) or at least 1", c.MaxDeliver)
	}
	if c.FetchBatch > c.MaxAckPending {
		bad("fetchBatch %d must not exceed maxAckPending (%d)", c.FetchBatch, c.MaxAckPending)
	}
	if c.ShutdownTimeout < c.DrainTimeout {
		bad("shutdownTimeout %s must be at least drainTimeout (%s)", c.ShutdownTimeout, c.DrainTimeout)
	}
	switch c.CollisionPolicy {
	case CollisionSerialize, CollisionAlert, CollisionFail:
	default:
		bad("collisionPolicy %q is not one of %s, %s, %s", c.CollisionPolicy, CollisionSerialize, CollisionAlert, CollisionFail)
	}
	switch c.Sharing {
	case SharingPinned:
		if c.PinnedTTL < minPinnedTTL || c.PinnedTTL <= c.ShutdownTimeout {
			bad("pinnedTTL %s must be at least %s and exceed shutdownTimeout (%s)",
				c.PinnedTTL, minPinnedTTL, c.ShutdownTimeout)
		}
	case SharingShared:
	default:
		bad("sharing %q is not one of %s, %s", c.Sharing, SharingPinned, SharingShared)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ackWait", c.AckWait}, {"drainTimeout", c.DrainTimeout}, {"shutdownTimeout", c.ShutdownTimeout},
		{"handoffTimeout", c.HandoffTimeout}, {"retryInitial", c.RetryInitial}, {"retryMax", c.RetryMax}} {
		if d.v <= 0 {
			bad("%s %s must be positive", d.name, d.v)
		}
	}
	if c.RetryMax < c.RetryInitial {
		bad("retryMax %s must be at least retryInitial (%s)", c.RetryMax, c.RetryInitial)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

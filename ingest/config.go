package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/triggerflow/triggerflow/config"
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

// pinnedGroup is the priority group name of the pinned consumer; it is
// part of the consumer's configuration, so changing it is drift.
const pinnedGroup = "ingest"

// minPinnedTTL leaves room for pull requests, which JetStream clients
// cannot make expire sooner than after 1s, at PinnedTTL/3.
const minPinnedTTL = 3 * time.Second

// crashKeepsOrder reports whether PinnedTTL leaves the crashed replica's
// tasks time to come due before another replica is pinned (see PinnedTTL).
func (c Config) crashKeepsOrder() bool {
	return c.Sharing != SharingPinned || c.PinnedTTL >= 2*c.Ingest.AckWait.D()
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

// Config configures an Ingester. The file-backed parts come from the
// ingest configuration file; the rest are knobs the file does not expose
// yet and whose defaults suit production.
type Config struct {
	// NATS names the stream (tasks are read from "<Stream>.>"), the
	// durable consumer and the provisioning mode.
	NATS config.NATS
	// Temporal gives the task queue workflows are started on.
	Temporal config.Temporal
	// Ingest holds lanes, ack and shutdown timing and the collision policy.
	Ingest config.Ingest

	// Sharing is "pinned" or "shared"; see the Sharing constants.
	// Defaults to "pinned".
	Sharing Sharing
	// PinnedTTL is how long JetStream keeps a pinned replica that stopped
	// pulling before it pins another: the failover time after a crash (a
	// graceful shutdown unpins at once). The pinned replica renews its pull
	// requests every PinnedTTL/3 (at most 30s). It must be at least 3s and
	// exceed Ingest.ShutdownTimeout.
	//
	// At least twice Ingest.AckWait keeps a key's order across a crash:
	// the crashed replica's last pull is at most PinnedTTL/3 old, so its
	// unacked tasks (their ack timers last reset at the crash) are due for
	// redelivery before the pin passes on, and JetStream serves
	// redeliveries before newer messages. Shorter fails over sooner but
	// may hand a key's held tasks to Temporal after newer ones. A task
	// already redelivered before has a longer ack deadline (the consumer's
	// backoff: 2× and 4× AckWait), so after a second fault in its lifetime
	// it may still arrive late. Defaults to Ingest.PinnedTTL, whose default
	// is the largest of 30s, twice Ingest.ShutdownTimeout and twice
	// Ingest.AckWait.
	PinnedTTL time.Duration
	// CollisionCacheSize bounds how many hashed subjects are remembered to
	// detect two docKeys sharing one hashed subject token. Detection is
	// best effort beyond it. Defaults to 65536 (a few MiB).
	CollisionCacheSize int
	// MaxSignalBatch is the most tasks of one key handed off in one signal:
	// the tasks of a key queued behind each other in a lane go together.
	// 1 turns batching off. Defaults to Ingest.MaxSignalBatch (100).
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
	// HandoffTimeout bounds one SignalWithStart attempt. Defaults to 10s.
	HandoffTimeout time.Duration
	// RetryInitial is the first pause after a failed hand-off; pauses
	// double up to RetryMax. Defaults to 100ms.
	RetryInitial time.Duration
	// RetryMax caps the pause between hand-off attempts. Defaults to 5s.
	RetryMax time.Duration
	// TakeoverInterval is how often a pinned replica that does not hold
	// the pin checks whether the holder is dead while tasks wait, and if
	// so takes over at once instead of after PinnedTTL (see
	// Ingester.checkPin; Ingest.TakeoverMaxReplay -1 turns it off).
	// Negative also turns it off. Defaults to 1s.
	TakeoverInterval time.Duration
}

// takeover reports whether a replica watches the pin holder.
func (c Config) takeover() bool {
	return c.Sharing == SharingPinned && c.TakeoverInterval > 0 && c.Ingest.TakeoverMaxReplay >= 0
}

// WithDefaults returns c with zero fields set to their defaults, including
// those of the embedded configuration sections.
func (c Config) WithDefaults() Config {
	c.NATS = c.NATS.WithDefaults()
	c.Temporal = c.Temporal.WithDefaults()
	c.Ingest = c.Ingest.WithDefaults()
	if c.Sharing == "" {
		c.Sharing = SharingPinned
	}
	if c.PinnedTTL == 0 {
		// The file's ingest.pinnedTTL, itself defaulted like this.
		c.PinnedTTL = c.Ingest.PinnedTTL.D()
	}
	if c.CollisionCacheSize == 0 {
		c.CollisionCacheSize = 65536
	}
	if c.MaxSignalBatch == 0 {
		c.MaxSignalBatch = c.Ingest.MaxSignalBatch
	}
	if c.MaxSignalBytes == 0 {
		c.MaxSignalBytes = 256 << 10
	}
	if c.RedeliveryWindow == 0 {
		c.RedeliveryWindow = 250 * time.Millisecond
	}
	if c.HandoffTimeout == 0 {
		c.HandoffTimeout = 10 * time.Second
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.TakeoverInterval == 0 {
		c.TakeoverInterval = time.Second
	}
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("ingest: invalid config")

// Validate reports every invalid field of c; call it on the result of
// WithDefaults.
func (c Config) Validate() error {
	var errs []error
	for _, err := range []error{c.NATS.Validate(), c.Temporal.Validate(), c.Ingest.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Sharing {
	case SharingPinned:
		if c.PinnedTTL < minPinnedTTL || c.PinnedTTL <= c.Ingest.ShutdownTimeout.D() {
			bad("pinnedTTL %s must be at least %s and exceed ingest.shutdownTimeout (%s)",
				c.PinnedTTL, minPinnedTTL, c.Ingest.ShutdownTimeout)
		}
	case SharingShared:
	default:
		bad("sharing %q is not one of %s, %s", c.Sharing, SharingPinned, SharingShared)
	}
	if c.CollisionCacheSize < 1 {
		bad("collisionCacheSize %d must be at least 1", c.CollisionCacheSize)
	}
	if c.MaxSignalBatch < 1 {
		bad("maxSignalBatch %d must be at least 1", c.MaxSignalBatch)
	}
	if c.MaxSignalBytes < 1 {
		bad("maxSignalBytes %d must be at least 1", c.MaxSignalBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"handoffTimeout", c.HandoffTimeout}, {"retryInitial", c.RetryInitial}, {"retryMax", c.RetryMax}} {
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

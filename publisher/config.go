package publisher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
)

// Config configures a Publisher. Zero fields take the documented defaults.
type Config struct {
	// Stream is the task stream; subjects are <Stream>.<tenant>.… and the
	// stream must capture <Stream>.> with a duplicate window. Defaults to
	// "TRIGGERS".
	Stream string
	// HashGuard keeps subjects within MaxSubjectBytes by hashing an overlong
	// docKey token (the task is then flagged subjectHashed). Off, such a
	// task is dead-lettered with reason "subject-too-long". Defaults to on;
	// it is a pointer so that off can be told from unset.
	HashGuard *bool
	// MaxPayload is the largest encoded task in bytes; a larger one is
	// dead-lettered with reason "oversize". It must not exceed the server's
	// max_payload. Defaults to 262144 (256 KiB).
	MaxPayload int
	// MaxPending bounds the tasks accepted but not yet acknowledged by
	// JetStream (or dead-lettered); Publish blocks while it is reached.
	// Defaults to 1024.
	MaxPending int
	// AckTimeout is how long one publish attempt waits for its PubAck
	// before it is retried. Defaults to 5s.
	AckTimeout time.Duration
	// RetryInitial is the wait before the first retry of a failed publish;
	// it doubles (with jitter) up to RetryMax. Default 100ms.
	RetryInitial time.Duration
	// RetryMax caps the wait between retries. Defaults to 5s.
	RetryMax time.Duration
	// ImageThreshold is the size in bytes above which a document image
	// is stored in the image bucket (Images) and the task carries a
	// reference instead (package images). Defaults to 4096.
	// StoreEveryImage stores every image; KeepImagesInline none, so tasks
	// carry their images up to MaxPayload.
	ImageThreshold int
	// MaxPendingImageBytes bounds the image bytes accepted but not yet
	// stored; Publish blocks while it is reached (an image larger than
	// the bound waits until nothing else is pending). Defaults to 64 MiB.
	MaxPendingImageBytes int64

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// DeadLetters receives oversize tasks and tasks without a valid
	// subject. Required: such a task must be recorded, not dropped.
	DeadLetters deadletter.Sink
	// Logger receives retry warnings and dead-letter notices; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the publisher's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Images stores the images over ImageThreshold (an *images.Store);
	// nil keeps every image inline.
	Images ImageStore
	// TenantLabels bounds the tenant label values of the metrics; a
	// tenant past its limit also folds its collections. nil names every
	// tenant.
	TenantLabels *tenantlabel.Guard
}

// Defaults.
const (
	DefaultStream       = "TRIGGERS"
	DefaultMaxPayload   = 256 << 10
	DefaultMaxPending   = 1024
	DefaultAckTimeout   = 5 * time.Second
	DefaultRetryInitial = 100 * time.Millisecond
	DefaultRetryMax     = 5 * time.Second

	DefaultImageThreshold       = 4 << 10
	DefaultMaxPendingImageBytes = 64 << 20
)

// ImageThreshold values besides a size.
const (
	// StoreEveryImage stores every non-empty image in the image bucket.
	StoreEveryImage = -1
	// KeepImagesInline stores no image: tasks carry them, up to MaxPayload.
	KeepImagesInline = -2
)

// ImageStore stores document images for the claim check.
type ImageStore interface {
	// Put stores an image in canonical form (images.Ref) under name,
	// replacing any object of that name.
	Put(ctx context.Context, name string, canonical []byte) error
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	if c.HashGuard == nil {
		c.HashGuard = new(true)
	}
	c.MaxPayload = cmp.Or(c.MaxPayload, DefaultMaxPayload)
	c.MaxPending = cmp.Or(c.MaxPending, DefaultMaxPending)
	c.AckTimeout = cmp.Or(c.AckTimeout, DefaultAckTimeout)
	c.RetryInitial = cmp.Or(c.RetryInitial, DefaultRetryInitial)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.ImageThreshold = cmp.Or(c.ImageThreshold, DefaultImageThreshold)
	c.MaxPendingImageBytes = cmp.Or(c.MaxPendingImageBytes, DefaultMaxPendingImageBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("publisher: invalid config")

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !trigger.IsToken(c.Stream) {
		bad("%w: %q", streams.ErrInvalidStream, c.Stream)
	}
	if c.MaxPayload < 1 {
		bad("MaxPayload is %d, must be positive", c.MaxPayload)
	}
	if c.MaxPending < 1 {
		bad("MaxPending is %d, must be positive", c.MaxPending)
	}
	if c.AckTimeout <= 0 {
		bad("AckTimeout is %s, must be positive", c.AckTimeout)
	}
	if c.RetryInitial <= 0 {
		bad("RetryInitial is %s, must be positive", c.RetryInitial)
	}
	if c.RetryMax < c.RetryInitial {
		bad("RetryMax (%s) is below RetryInitial (%s)", c.RetryMax, c.RetryInitial)
	}
	if c.ImageThreshold < KeepImagesInline {
		bad("ImageThreshold is %d: a size, StoreEveryImage (-1) or KeepImagesInline (-2)", c.ImageThreshold)
	}
	if c.MaxPendingImageBytes < 1 {
		bad("MaxPendingImageBytes is %d, must be positive", c.MaxPendingImageBytes)
	}
	if c.DeadLetters == nil {
		bad("DeadLetters is required: oversize and unroutable tasks must be recorded, not dropped")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// JetStreamOptions are the options the JetStream handed to New should be
// created with: the library's own ack timeout forgets a publish whose ack
// never comes (the publisher retries it after AckTimeout either way), and
// its async window must not be smaller than MaxPending, or publishes stall
// inside the library instead of in Publish.
func (c Config) JetStreamOptions() []jetstream.JetStreamOpt {
	c = c.WithDefaults()
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncTimeout(c.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(max(c.MaxPending, 4000)),
	}
}

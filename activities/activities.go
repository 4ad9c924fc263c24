// Package activities holds the Temporal activities of the delivery
// workflow: POSTing one or several delivery tasks as Standard Webhooks and
// recording deliveries that failed for good on the dead-letter stream.
//
// The HTTP client makes one request per activity attempt. It retries only a
// refused connection (the receiver never saw the request), so Temporal owns
// every retry of a request that reached the receiver and each one shows as
// an attempt in the workflow's history.
package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// Registered activity type names. Register the struct with
// activity.RegisterOptions{Name: Prefix} so the worker and the workflow agree
// on them; they are part of every recorded history.
const (
	Prefix           = "triggerflow."
	DeliverName      = Prefix + "Deliver"
	DeliverBatchName = Prefix + "DeliverBatch"
	DeadLetterName   = Prefix + "DeadLetter"
)

// DefaultMaxBodyBytes is Config.MaxBodyBytes's default: 5 MiB, which the
// common receivers (API gateways, serverless functions, reverse proxies
// with a raised limit) accept.
const DefaultMaxBodyBytes = 5 << 20

// SecretResolver returns the signing secrets a trigger's secretsRef names
// within a tenant; secrets.Manager implements it. Several secrets mean a
// rotation is in progress: every one signs the delivery, so receivers
// holding the old or the new secret accept it. An error is retried as a
// failed attempt, never treated as "unsigned".
type SecretResolver interface {
	Resolve(ctx context.Context, tenant, ref string) ([]signature.Secret, error)
}

// TokenSource returns the bearer token sent as Authorization for a tenant's
// deliveries; *authn.Issuer implements it. An empty token sends no
// Authorization header.
type TokenSource interface {
	Token(ctx context.Context, tenant string) (string, error)
}

// Config tunes delivery. The zero value of each field takes its default.
type Config struct {
	// Timeout bounds one attempt of a task that sets no timeout. Defaults
	// to 30s.
	Timeout time.Duration
	// MaxConnsPerHost caps connections to one receiver. Defaults to 64.
	MaxConnsPerHost int
	// MaxBodyBytes caps the request body; a task whose body is bigger
	// fails without retry (dead-letter reason "oversize"). An update's
	// body holds both images. Defaults to 5242880 (5 MiB).
	MaxBodyBytes int
	// MaxResponseBodyBytes is how much of a failed response's body the
	// failure details keep, so the Temporal UI shows what the receiver
	// said. Defaults to 4096.
	MaxResponseBodyBytes int
	// RetryableStatuses are the 4xx statuses retried like 5xx; any other
	// 4xx fails at once. nil means [408, 429]; an empty non-nil slice
	// retries no 4xx.
	RetryableStatuses []int
	// MaxRetryAfter caps a receiver's Retry-After, so a misconfigured
	// receiver cannot park a document for days. Defaults to 1h.
	MaxRetryAfter time.Duration
	// ConnectRetries is how often one attempt redials a receiver that
	// refused the connection, before the attempt fails. Such a request never
	// reached the receiver, so this cannot duplicate a delivery. Defaults
	// to 2; negative disables.
	ConnectRetries int
	// Egress decides which addresses may be dialed, checked at dial time
	// on every resolved address. The zero value permits public unicast
	// addresses only.
	Egress egress.Policy
	// UserAgent is sent with every request. Defaults to
	// "Triggerflow-Webhooks/1".
	UserAgent string
	// DefaultMaxAttempts is how many attempts a task gets when its trigger
	// sets no maxAttempts: the worker's retry default, which the workflow
	// applies (workflows.Options.Retry). The workflow decides whether a
	// batch's failed first attempt is retried; the activities use this
	// only to count it as a retry or as a task finished. Defaults to 5.
	DefaultMaxAttempts int

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped. The delivery collaborators
	// (secrets, tokens, the HTTP client) are Deps.

	// DeadLetters records deliveries that failed for good. Required: such
	// a delivery must be recorded, not dropped.
	DeadLetters deadletter.Sink
	// Logger receives attempt and dead-letter notes; nil discards.
	Logger *slog.Logger
	// Registerer receives the delivery metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
	c.MaxConnsPerHost = cmp.Or(c.MaxConnsPerHost, 64)
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, DefaultMaxBodyBytes)
	c.MaxResponseBodyBytes = cmp.Or(c.MaxResponseBodyBytes, 4096)
	if c.RetryableStatuses == nil {
		c.RetryableStatuses = []int{408, 429}
	}
	c.MaxRetryAfter = cmp.Or(c.MaxRetryAfter, time.Hour)
	c.ConnectRetries = cmp.Or(c.ConnectRetries, 2)
	c.UserAgent = cmp.Or(c.UserAgent, "Triggerflow-Webhooks/1")
	if c.DefaultMaxAttempts == 0 {
		c.DefaultMaxAttempts = trigger.DefaultRetryPolicy().MaxAttempts
	}
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("activities: invalid config")

// Validate reports every invalid field of c.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s must be positive", c.Timeout))
	}
	if c.MaxConnsPerHost < 1 {
		errs = append(errs, fmt.Errorf("maxConnsPerHost %d must be at least 1", c.MaxConnsPerHost))
	}
	if c.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("maxBodyBytes %d must be at least 1", c.MaxBodyBytes))
	}
	if c.MaxResponseBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("maxResponseBodyBytes %d must be at least 1", c.MaxResponseBodyBytes))
	}
	for _, s := range c.RetryableStatuses {
		if s < 400 || s > 499 {
			errs = append(errs, fmt.Errorf("retryable status %d is not a 4xx status", s))
		}
	}
	if c.MaxRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("maxRetryAfter %s must not be negative", c.MaxRetryAfter))
	}
	if c.DefaultMaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("defaultMaxAttempts %d must be at least 1", c.DefaultMaxAttempts))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Deps are the activities' delivery collaborators; the logger, registerer
// and dead-letter sink are fields of Config, as in every component.
type Deps struct {
	// Secrets resolves task.SecretsRef. Required for triggers that name a
	// secret; a task without a secretsRef is sent unsigned.
	Secrets SecretResolver
	// Tokens supplies the Authorization bearer token; nil sends none.
	Tokens TokenSource
	// Now defaults to time.Now; tests pin it to check timestamps.
	Now func() time.Time
	// HTTP customises the webhook client (TLS to receivers, dialing,
	// instrumentation) under the egress guard; see HTTPOptions for what
	// the caller answers for. The zero value is the client Config
	// describes.
	HTTP HTTPOptions
	// Verifier, when set, authenticates every task before anything is
	// done for it (a *tasksig.Verifier); a task that fails is not
	// delivered. nil trusts every task.
	Verifier TaskVerifier
	// Images fetches the document images a task references instead of
	// carrying them (an *images.Store), and releases them once delivered.
	// nil fails such a task as IMAGE_UNAVAILABLE, retried.
	Images ImageStore
}

// ImageStore holds the document images tasks reference.
type ImageStore interface {
	// Fetch returns the image, verified against ref's size and digest;
	// its errors wrap images.ErrMissing or images.ErrCorrupt when no
	// retry can help.
	Fetch(ctx context.Context, ref *trigger.ImageRef) ([]byte, error)
	// Release marks a delivered task's images for deletion.
	Release(refs ...*trigger.ImageRef)
}

// TaskVerifier authenticates a delivery task.
type TaskVerifier interface {
	Verify(t *trigger.DeliveryTask) error
}

// Activities delivers webhooks. Register it with
// worker.RegisterActivityWithOptions(acts, activity.RegisterOptions{Name:
// Prefix}); every exported method is an activity.
type Activities struct {
	cfg       Config
	retryable map[int]bool
	client    *retryablehttp.Client
	secrets   SecretResolver
	tokens    TokenSource
	verifier  TaskVerifier
	images    ImageStore
	dlq       deadletter.Sink
	log       *slog.Logger
	metrics   *metrics
	now       func() time.Time
	replayed  *replayed
}

// New validates cfg (after defaults) and returns the activities.
func New(cfg Config, deps Deps) (*Activities, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DeadLetters == nil {
		return nil, errors.New("activities: a dead-letter publisher (Config.DeadLetters) is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	client, err := newHTTPClient(cfg, deps.HTTP)
	if err != nil {
		return nil, err
	}
	retryable := make(map[int]bool, len(cfg.RetryableStatuses))
	for _, s := range cfg.RetryableStatuses {
		retryable[s] = true
	}
	return &Activities{
		cfg:       cfg,
		retryable: retryable,
		client:    client,
		secrets:   deps.Secrets,
		tokens:    deps.Tokens,
		verifier:  deps.Verifier,
		images:    deps.Images,
		dlq:       cfg.DeadLetters,
		log:       log,
		metrics:   m,
		now:       deps.Now,
		// Long enough for any workflow task to be refused and replayed;
		// bounded so a burst of cold keys cannot grow it without end.
		replayed: newReplayed(10*time.Minute, 100_000, deps.Now),
	}, nil
}

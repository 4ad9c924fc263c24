// Package streams holds the JetStream wire contract both sides share: the
// streams Triggerflow uses (the task stream, the dead-letter stream and the
// audit stream) and the subject codec, <stream>.<tenant>.<collection>.<docKey>
// with the docKey base64url without padding, or a SHA-256 hex prefix past
// MaxSubjectBytes (BuildSubject, ParseSubject).
//
// In "create" mode a missing stream is created and a drifted one is updated
// to the configuration; in "verify" mode (streams managed by
// infrastructure-as-code) nothing is changed and any missing stream or drift
// is an error naming each difference, so a process refuses to start against
// a stream it does not understand.
package streams

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/internal/backoff"
)

// ErrDrift is matched by errors.Is when a stream exists with a configuration
// other than ours in verify mode.
var ErrDrift = errors.New("stream configuration drift")

// ErrMissing is matched by errors.Is when a stream is absent in verify mode.
var ErrMissing = errors.New("stream missing")

// Provisioning says whether a process may create the streams and update
// drifted ones, or only verifies them.
type Provisioning string

// Provisioning modes.
const (
	// ProvisionCreate creates missing streams and updates drifted ones.
	ProvisionCreate Provisioning = "create"
	// ProvisionVerify only checks that they exist with matching settings
	// (streams managed by infrastructure-as-code).
	ProvisionVerify Provisioning = "verify"
)

// Config names the streams and says how they are provisioned. The
// binaries fill it from their file's nats section.
type Config struct {
	// Stream holds delivery tasks on "<Stream>.>".
	Stream string
	// DeadLetterStream holds dead-letter records on "<DeadLetterStream>.>".
	DeadLetterStream string
	// AuditStream holds audit records on "<AuditStream>.>".
	AuditStream string
	// Replicas is every stream's replication factor.
	Replicas int
	// MaxAge bounds how long an unconsumed task is kept.
	MaxAge time.Duration
	// DuplicateWindow is how long message ids are remembered to drop
	// republished tasks.
	DuplicateWindow time.Duration
	// ImageMaxAge bounds how long a document image stored for a task (see
	// ImageBucket) is kept; it must not be shorter than MaxAge. A task may
	// wait MaxAge on the stream and then retry, or stay blocked, in
	// Temporal: defaults to twice MaxAge.
	ImageMaxAge time.Duration
	// Provisioning is ProvisionCreate or ProvisionVerify.
	Provisioning Provisioning
}

// Defaults.
const (
	DefaultStream          = "TRIGGERS"
	DefaultReplicas        = 1
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
)

// WithDefaults returns c with zero fields set to their defaults: Stream
// "TRIGGERS", DeadLetterStream and AuditStream Stream + "_DLQ" and
// "_AUDIT", one replica, MaxAge 7 days, DuplicateWindow 2 minutes,
// ProvisionCreate.
func (c Config) WithDefaults() Config {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.DeadLetterStream = cmp.Or(c.DeadLetterStream, c.Stream+"_DLQ")
	c.AuditStream = cmp.Or(c.AuditStream, c.Stream+"_AUDIT")
	c.Replicas = cmp.Or(c.Replicas, DefaultReplicas)
	c.MaxAge = cmp.Or(c.MaxAge, DefaultMaxAge)
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, DefaultDuplicateWindow)
	c.ImageMaxAge = cmp.Or(c.ImageMaxAge, 2*c.MaxAge)
	c.Provisioning = cmp.Or(c.Provisioning, ProvisionCreate)
	return c
}

// Configs returns the wanted configuration of every stream for cfg, tasks
// stream first.
func Configs(cfg Config) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        cfg.Stream,
			Description: "Triggerflow delivery tasks",
			Subjects:    []string{cfg.Stream + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			Duplicates:  cfg.DuplicateWindow,
		},
		{
			// Dead letters are kept until an operator redrives or purges
			// them: a failed delivery must never age out unseen.
			Name:        cfg.DeadLetterStream,
			Description: "Triggerflow dead-lettered tasks and deliveries",
			Subjects:    []string{cfg.DeadLetterStream + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
		},
		{
			// Operator and start-up actions (checkpoint moves,
			// start-from-now, trigger reloads, redrives), not deliveries.
			// Diff ignores descriptions, so existing streams keep theirs.
			Name:        cfg.AuditStream,
			Description: "Triggerflow audit trail: operator and start-up actions",
			Subjects:    []string{cfg.AuditStream + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
		},
	}
}

// ImageBucket is the object store bucket holding the document images of
// the tasks on stream (a claim check: the task carries a reference).
func ImageBucket(stream string) string { return stream + "_IMAGES" }

// Buckets returns the wanted configuration of the image buckets: the task
// stream's, whose objects expire after ImageMaxAge, and the dead-letter
// stream's, which holds the images of dead letters until they are purged,
// as the dead letters themselves are kept.
func Buckets(cfg Config) []jetstream.ObjectStoreConfig {
	return []jetstream.ObjectStoreConfig{
		{
			Bucket:      ImageBucket(cfg.Stream),
			Description: "Triggerflow document images of delivery tasks",
			TTL:         cfg.ImageMaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Compression: true,
		},
		{
			Bucket:      ImageBucket(cfg.DeadLetterStream),
			Description: "Triggerflow document images of dead letters",
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Compression: true,
		},
	}
}

// Ensure creates or verifies every stream and image bucket according to
// cfg.Provisioning.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	var errs []error
	for _, want := range Configs(cfg) {
		if err := ensure(ctx, js, want, cfg.Provisioning); err != nil {
			errs = append(errs, err)
		}
	}
	for _, want := range Buckets(cfg) {
		if err := ensureBucket(ctx, js, want, cfg.Provisioning); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.ObjectStoreConfig, mode Provisioning) error {
	obs, err := js.ObjectStore(ctx, want.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) && mode == ProvisionVerify:
		return fmt.Errorf("%w: object store bucket %q does not exist (provisioning is verify: create it with ttl %s, or set nats.provisioning: create)", ErrMissing, want.Bucket, dur(want.TTL))
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if _, err := js.CreateObjectStore(ctx, want); err != nil {
			return fmt.Errorf("create object store bucket %q: %w", want.Bucket, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up object store bucket %q: %w", want.Bucket, err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		return fmt.Errorf("look up object store bucket %q: %w", want.Bucket, err)
	}
	var diffs []string
	if st.TTL() != want.TTL {
		diffs = append(diffs, fmt.Sprintf("ttl is %s, want %s", dur(st.TTL()), dur(want.TTL)))
	}
	if st.Replicas() != want.Replicas {
		diffs = append(diffs, fmt.Sprintf("replicas are %d, want %d", st.Replicas(), want.Replicas))
	}
	return reconcile(fmt.Sprintf("object store bucket %q", want.Bucket), diffs, mode, func() error {
		_, err := js.UpdateObjectStore(ctx, want)
		return err
	})
}

// reconcile settles what, whose settings differ from the wanted ones by
// diffs: nothing to do, ErrDrift in verify mode, else update.
func reconcile(what string, diffs []string, mode Provisioning, update func() error) error {
	if len(diffs) == 0 {
		return nil
	}
	if mode == ProvisionVerify {
		return fmt.Errorf("%w: %s: %s", ErrDrift, what, strings.Join(diffs, "; "))
	}
	if err := update(); err != nil {
		return fmt.Errorf("update drifted %s (%s): %w", what, strings.Join(diffs, "; "), err)
	}
	return nil
}

// EnsureWhenReachable is Ensure for a service starting up: while NATS
// cannot answer (a restart of both, a deploy) it retries with backoff
// until ctx ends, as the service would wait for any dependency, instead of
// failing the start. A definite answer (drift, a stream missing in verify
// mode, a JetStream API error) is returned at once. It returns ctx.Err()
// if ctx ends first.
func EnsureWhenReachable(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) error {
	retry := backoff.Exponential{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := Ensure(ctx, js, cfg)
		var api *jetstream.APIError
		switch {
		case err == nil, errors.Is(err, ErrDrift), errors.Is(err, ErrMissing), errors.As(err, &api):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		wait := retry.Next()
		log.Warn("streams not reachable; retrying", "error", err, "backoff", wait)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

func ensure(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, mode Provisioning) error {
	s, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if mode == ProvisionVerify {
			return fmt.Errorf("%w: stream %q does not exist (provisioning is verify: create it with subjects %v, or set nats.provisioning: create)", ErrMissing, want.Name, want.Subjects)
		}
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("create stream %q: %w", want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %q: %w", want.Name, err)
	}
	return reconcile(fmt.Sprintf("stream %q", want.Name), Diff(want, s.CachedInfo().Config), mode, func() error {
		_, err := js.UpdateStream(ctx, want)
		return err
	})
}

// Diff lists the settings Triggerflow relies on where have differs from want.
func Diff(want, have jetstream.StreamConfig) []string {
	var d []string
	if !slices.Equal(sorted(want.Subjects), sorted(have.Subjects)) {
		d = append(d, fmt.Sprintf("subjects are %v, want %v", have.Subjects, want.Subjects))
	}
	if want.Retention != have.Retention {
		d = append(d, fmt.Sprintf("retention is %s, want %s", have.Retention, want.Retention))
	}
	if want.Replicas != have.Replicas {
		d = append(d, fmt.Sprintf("replicas are %d, want %d", have.Replicas, want.Replicas))
	}
	if want.MaxAge != have.MaxAge {
		d = append(d, fmt.Sprintf("max age is %s, want %s", dur(have.MaxAge), dur(want.MaxAge)))
	}
	if want.Duplicates != have.Duplicates {
		d = append(d, fmt.Sprintf("duplicate window is %s, want %s", have.Duplicates, want.Duplicates))
	}
	if want.Storage != have.Storage {
		d = append(d, fmt.Sprintf("storage is %s, want %s", have.Storage, want.Storage))
	}
	return d
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func dur(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

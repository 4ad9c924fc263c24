// Package images keeps large document images out of delivery tasks: a
// claim check. The publisher stores an image over its threshold in the
// task stream's image bucket (a JetStream object store, see
// streams.ImageBucket) and the task carries a trigger.ImageRef in its
// place; ingest and Temporal only ever see the reference. The worker
// fetches the image at delivery, checks it against the reference's
// digest, which the task signature covers, and deletes it once the
// delivery succeeded. A dead letter keeps its own copy in the dead-letter
// stream's bucket, so it can be redriven for as long as it is kept.
package images

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
)

// Errors of a fetch. ErrMissing and ErrCorrupt are final: no retry brings
// the image back. Any other fetch error is transient.
var (
	// ErrMissing is an image whose object is gone: expired, deleted after
	// an earlier delivery of the same task, or never stored.
	ErrMissing = errors.New("document image missing from the image bucket")
	// ErrCorrupt is an object whose size or digest is not the reference's.
	ErrCorrupt = errors.New("document image does not match its digest")
	// ErrUnknownBucket is a reference naming a bucket other than the two
	// the store reads.
	ErrUnknownBucket = errors.New("document image reference names an unknown bucket")
)

// DeadLetterBucket is ImageRef.Bucket of an image copied for a dead letter.
// The task bucket's references leave Bucket empty.
const DeadLetterBucket = "dead-letters"

// Store reads and writes the image buckets of one task stream. It opens
// them on first use, so it can be made before streams.Ensure ran.
type Store struct {
	js     jetstream.JetStream
	names  [2]string // task bucket, dead-letter bucket
	log    *slog.Logger
	m      *metrics
	delay  time.Duration
	labels *tenantlabel.Guard

	openMu  sync.Mutex
	buckets [2]*bucket

	mu      sync.Mutex
	closed  bool
	pending map[string]*time.Timer // delayed deletions, by object
	wg      sync.WaitGroup
}

// Config configures a Store.
type Config struct {
	// Streams names the task and dead-letter streams, whose buckets the
	// store uses (streams.Ensure creates them).
	Streams streams.Config
	// ReleaseDelay is how long an image outlives the delivery that
	// consumed it, so that a delivery Temporal runs again (its result not
	// yet recorded: a worker crash, a refused workflow task) still finds
	// it. The pending deletions live in memory: a killed worker leaves
	// its images to the bucket's TTL. Defaults to 1m; negative deletes at
	// once.
	ReleaseDelay time.Duration
	// Logger receives deletion failures; nil discards.
	Logger *slog.Logger
	// Registerer receives the image metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// TenantLabels bounds the tenant label values of the metrics; nil
	// names every tenant.
	TenantLabels *tenantlabel.Guard
}

// DefaultReleaseDelay is Config.ReleaseDelay's default.
const DefaultReleaseDelay = time.Minute

const (
	taskBucket = iota
	deadBucket
)

// New returns the store of cfg's buckets.
func New(js jetstream.JetStream, cfg Config) (*Store, error) {
	if js == nil {
		return nil, errors.New("images: JetStream is nil")
	}
	sc := cfg.Streams.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.ReleaseDelay = cmp.Or(cfg.ReleaseDelay, DefaultReleaseDelay)
	s := &Store{
		js:      js,
		names:   [2]string{streams.ImageBucket(sc.Stream), streams.ImageBucket(sc.DeadLetterStream)},
		log:     cfg.Logger.With("component", "images"),
		delay:   cfg.ReleaseDelay,
		labels:  cfg.TenantLabels,
		pending: map[string]*time.Timer{},
	}
	var err error
	if s.m, err = newMetrics(cfg.Registerer, s); err != nil {
		return nil, err
	}
	return s, nil
}

// open returns bucket i, opening it on first use.
func (s *Store) open(ctx context.Context, i int) (*bucket, error) {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	if s.buckets[i] == nil {
		b, err := openBucket(ctx, s.js, s.names[i])
		if err != nil {
			return nil, err
		}
		s.buckets[i] = b
	}
	return s.buckets[i], nil
}

// Ref returns the reference an image stored under name would have, and
// the bytes to store: the image's canonical form. It does not store
// anything.
func Ref(name string, image []byte) (trigger.ImageRef, []byte) {
	canonical := trigger.CanonicalImage(image)
	return trigger.ImageRef{Object: name, Size: int64(len(canonical)), Digest: trigger.ImageDigest(canonical)}, canonical
}

// ObjectName is the name of a task's image in the task bucket; which is
// "before" or "after". It is deterministic, so a task published again
// after a crash overwrites its image instead of leaving a second one.
func ObjectName(t *trigger.DeliveryTask, which string) string {
	return t.Tenant + "/" + t.DedupeKey() + "/" + which
}

// ErrForeignRef is a reference that does not name an image of the task
// carrying it. The signature covers an image's digest only, so the worker
// binds the object to the task by name: a task can neither read nor, once
// delivered, delete another task's or tenant's objects.
var ErrForeignRef = errors.New("document image reference does not name this task's image")

// CheckRef reports whether ref, the task's which ("before" or "after")
// image, names an object of the task: its own in the task bucket, or a
// copy kept for one of its tenant's dead letters.
func CheckRef(t *trigger.DeliveryTask, which string, ref *trigger.ImageRef) error {
	ok := false
	switch ref.Bucket {
	case "":
		// Named when the task was published, before any redrive.
		ok = ref.Object == t.Tenant+"/"+t.EventID+"/"+which
	case DeadLetterBucket:
		ok = strings.HasPrefix(ref.Object, t.Tenant+"/") && strings.HasSuffix(ref.Object, "/"+which)
	}
	if !ok {
		return fmt.Errorf("%w: %s image %q in bucket %q", ErrForeignRef, which, ref.Object, ref.Bucket)
	}
	return nil
}

// Put stores canonical (from Ref) under name in the task bucket.
func (s *Store) Put(ctx context.Context, name string, canonical []byte) error {
	obs, err := s.open(ctx, taskBucket)
	if err != nil {
		return err
	}
	if _, err := obs.PutBytes(ctx, name, canonical); err != nil {
		return fmt.Errorf("images: store %q: %w", name, err)
	}
	s.m.stored.WithLabelValues(s.tenant(name)).Inc()
	return nil
}

// Fetch returns the image ref points at, after checking its size and
// digest. Errors wrap ErrMissing, ErrCorrupt or ErrUnknownBucket when no
// retry can help.
func (s *Store) Fetch(ctx context.Context, ref *trigger.ImageRef) ([]byte, error) {
	i, err := bucketOf(ref)
	if err != nil {
		return nil, err
	}
	obs, err := s.open(ctx, i)
	if err != nil {
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "unavailable").Inc()
		return nil, err
	}
	b, err := obs.GetBytes(ctx, ref.Object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "missing").Inc()
		return nil, fmt.Errorf("%w: %q", ErrMissing, ref.Object)
	case errors.Is(err, jetstream.ErrDigestMismatch):
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "corrupt").Inc()
		return nil, fmt.Errorf("%w: %q: %v", ErrCorrupt, ref.Object, err)
	case err != nil && s.gone(ctx, obs, ref.Object):
		// Deleted while it was read: the read fails on the missing
		// chunks with a timeout rather than "not found".
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "missing").Inc()
		return nil, fmt.Errorf("%w: %q (deleted while it was read)", ErrMissing, ref.Object)
	case err != nil:
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "unavailable").Inc()
		return nil, fmt.Errorf("images: fetch %q: %w", ref.Object, err)
	}
	if int64(len(b)) != ref.Size || trigger.ImageDigest(b) != ref.Digest {
		s.m.fetchFailed.WithLabelValues(s.tenant(ref.Object), "corrupt").Inc()
		return nil, fmt.Errorf("%w: %q is %d bytes with digest %s, the task says %d bytes with digest %s",
			ErrCorrupt, ref.Object, len(b), trigger.ImageDigest(b), ref.Size, ref.Digest)
	}
	s.m.fetched.WithLabelValues(s.tenant(ref.Object)).Inc()
	return b, nil
}

// tenant is the tenant label of an object: its name's first segment.
func (s *Store) tenant(name string) string {
	t, _, _ := strings.Cut(name, "/")
	return s.labels.Label(t)
}

// gone reports whether the object is known to be absent now.
func (s *Store) gone(ctx context.Context, obs jetstream.ObjectStore, name string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := obs.GetInfo(ctx, name)
	return errors.Is(err, jetstream.ErrObjectNotFound)
}

func bucketOf(ref *trigger.ImageRef) (int, error) {
	switch ref.Bucket {
	case "":
		return taskBucket, nil
	case DeadLetterBucket:
		return deadBucket, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownBucket, ref.Bucket)
}

// Release deletes the images of a delivered task after ReleaseDelay, in
// the background: the task bucket's, and a dead letter's copies, which
// only the redriven task still referenced (a redrive removes its dead
// letter). A deletion that fails is left to the task bucket's TTL, or to
// `dlq purge`.
func (s *Store) Release(refs ...*trigger.ImageRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ref := range refs {
		if ref == nil || s.closed {
			continue
		}
		i, err := bucketOf(ref)
		if err != nil {
			continue
		}
		key := s.names[i] + "/" + ref.Object
		if _, ok := s.pending[key]; ok {
			continue
		}
		name := ref.Object
		s.wg.Add(1)
		s.pending[key] = time.AfterFunc(max(s.delay, 0), func() {
			defer s.wg.Done()
			s.mu.Lock()
			delete(s.pending, key)
			s.mu.Unlock()
			s.delete(i, name)
		})
	}
}

func (s *Store) delete(bucket int, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := s.open(ctx, bucket)
	if err == nil {
		err = obs.remove(ctx, name)
	}
	switch {
	case err == nil:
		s.m.deleted.WithLabelValues(s.tenant(name)).Inc()
	case errors.Is(err, jetstream.ErrObjectNotFound):
	default:
		s.log.Warn("document image not deleted; the bucket's TTL will remove it", "object", name, "error", err)
	}
}

// Close deletes at once the images whose release was delayed, and waits
// for deletions under way. Release does nothing afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	var now []string
	for key, t := range s.pending {
		if t.Stop() {
			now = append(now, key)
			s.wg.Done()
		}
	}
	clear(s.pending)
	s.mu.Unlock()
	// A few seconds at most: a stop must not wait on thousands of
	// deletions (or on NATS being away); what is left expires with the
	// bucket's TTL.
	deadline := time.Now().Add(closeDeletions)
	for _, key := range now {
		if time.Now().After(deadline) {
			s.log.Warn("image deletions left to the bucket's TTL at close", "left", len(now))
			break
		}
		for i, b := range s.names {
			if name, ok := strings.CutPrefix(key, b+"/"); ok {
				s.delete(i, name)
			}
		}
	}
	s.wg.Wait()
	return nil
}

// closeDeletions bounds the deletions Close makes.
const closeDeletions = 5 * time.Second

// copyToDeadLetters copies ref's image into the dead-letter bucket under
// name and returns the copy's reference. A missing source is reported as
// ErrMissing.
func (s *Store) copyToDeadLetters(ctx context.Context, ref *trigger.ImageRef, name string) (*trigger.ImageRef, error) {
	if ref.Bucket == DeadLetterBucket {
		return ref, nil
	}
	b, err := s.Fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	obs, err := s.open(ctx, deadBucket)
	if err != nil {
		return nil, err
	}
	if _, err := obs.PutBytes(ctx, name, b); err != nil {
		return nil, fmt.Errorf("images: copy %q for a dead letter: %w", ref.Object, err)
	}
	c := *ref
	c.Object, c.Bucket = name, DeadLetterBucket
	return &c, nil
}

// StoredBytes is the size of each bucket, task bucket first.
func (s *Store) StoredBytes(ctx context.Context) (tasks, deadLetters uint64, err error) {
	var size [2]uint64
	for i := range s.names {
		obs, err := s.open(ctx, i)
		if err != nil {
			return 0, 0, err
		}
		st, err := obs.Status(ctx)
		if err != nil {
			return 0, 0, err
		}
		size[i] = st.Size()
	}
	return size[taskBucket], size[deadBucket], nil
}

type metrics struct {
	stored, fetched, deleted, fetchFailed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Store) (*metrics, error) {
	set := promreg.New(reg)
	m := &metrics{
		stored: set.CounterVec("triggerflow_images_stored_total",
			"Document images stored in the image bucket instead of inline in their task.", "tenant"),
		fetched: set.CounterVec("triggerflow_images_fetched_total",
			"Document images fetched and verified for a delivery.", "tenant"),
		deleted: set.CounterVec("triggerflow_images_deleted_total",
			"Document images deleted after their delivery succeeded, or once a dead letter holds a copy.", "tenant"),
		fetchFailed: set.CounterVec("triggerflow_images_fetch_failures_total",
			"Document image fetches that failed, by reason: missing, corrupt (both final) or unavailable (retried).", "tenant", "reason"),
	}
	set.Collector(&bucketBytes{s: s, desc: prometheus.NewDesc("triggerflow_images_bucket_bytes",
		"Bytes held by an image bucket: tasks (images awaiting delivery) or dead-letters (copies kept with dead letters).",
		[]string{"bucket"}, nil)})
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("images: register metrics: %w", err)
	}
	return m, nil
}

// bucketBytes asks JetStream for the buckets' sizes at scrape time.
type bucketBytes struct {
	s    *Store
	desc *prometheus.Desc
}

func (b *bucketBytes) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *bucketBytes) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	tasks, dead, err := b.s.StoredBytes(ctx)
	if err != nil {
		// A failed scrape of every metric would hide the rest; the
		// buckets may not exist yet, or NATS may be down (which /readyz
		// reports).
		b.s.log.Debug("image bucket sizes not read", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(tasks), "tasks")
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(dead), "dead-letters")
}

// isRefTask reports cheaply whether an encoded task may carry references.
func isRefTask(b []byte) bool {
	return bytes.Contains(b, []byte(`"beforeRef"`)) || bytes.Contains(b, []byte(`"afterRef"`))
}

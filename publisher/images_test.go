package publisher_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

// imageHarness is a harness whose publisher stores large images in the
// image bucket through a real images.Store (store), or through
// cfg.Images when adjust sets it (wrapping store).
type imageHarness struct {
	*harness
	store *images.Store
}

func newImageHarness(t *testing.T, adjust func(cfg *publisher.Config, store *images.Store)) *imageHarness {
	t.Helper()
	var store *images.Store
	h := buildHarness(t, nil, func(h *harness, cfg *publisher.Config) {
		var err error
		store, err = images.New(h.js, images.Config{Streams: h.nats.Streams(), ReleaseDelay: -1})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, store.Close()) }) // after the publisher's Close
		cfg.Images = store
		if adjust != nil {
			adjust(cfg, store)
		}
	})
	return &imageHarness{harness: h, store: store}
}

// doc is a JSON document of n bytes (n >= 34), with the spaces and
// HTML-sensitive characters canonicalisation removes and escapes.
func doc(n int) json.RawMessage {
	const prefix, suffix = `{ "status": "<paid>", "blob": "`, `" }`
	return json.RawMessage(prefix + strings.Repeat("d", n-len(prefix)-len(suffix)) + suffix)
}

// published returns the one task on the task stream.
func (h *imageHarness) published(t *testing.T) (*trigger.DeliveryTask, *jetstream.RawStreamMsg) {
	t.Helper()
	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, 1)
	got, err := trigger.DecodeTask(msgs[0].Data)
	require.NoError(t, err)
	return got, msgs[0]
}

// requireStored checks ref against the image it replaced, and that the
// object it names fetches back as the image's canonical form.
func (h *imageHarness) requireStored(t *testing.T, task *trigger.DeliveryTask, which string, ref *trigger.ImageRef, image json.RawMessage) {
	t.Helper()
	require.NotNil(t, ref, which)
	want, canonical := images.Ref(images.ObjectName(task, which), image)
	require.Equal(t, &want, ref, which)
	got, err := h.store.Fetch(t.Context(), ref)
	require.NoError(t, err, which)
	require.Equal(t, canonical, got, which)
}

func TestLargeImageIsStoredAndReferenced(t *testing.T) {
	t.Parallel()
	h := newImageHarness(t, nil)
	tk := task("doc-1", "0001")
	tk.Before = json.RawMessage(`{"status": "new"}`)
	tk.After = doc(64 << 10)
	orig := *tk
	h.publishAndWait(t, tk)

	got, msg := h.published(t)
	require.Nil(t, got.After, "the large image is not inline")
	h.requireStored(t, &orig, "after", got.AfterRef, orig.After)
	require.Equal(t, "acme/"+orig.EventID+"/after", got.AfterRef.Object)
	require.Empty(t, got.AfterRef.Bucket, "the task bucket")
	require.JSONEq(t, `{"status":"new"}`, string(got.Before), "the small image stays inline")
	require.Nil(t, got.BeforeRef)
	require.Less(t, len(msg.Data), 4<<10, "the message carries the reference, not the image")

	got.After, got.AfterRef = orig.After, nil
	got.Before = orig.Before
	require.Equal(t, &orig, got, "nothing else changed")
}

// The threshold is inclusive: an image of exactly ImageThreshold bytes
// stays inline, one byte more is stored.
func TestImageThresholdBoundary(t *testing.T) {
	t.Parallel()
	h := newImageHarness(t, func(cfg *publisher.Config, _ *images.Store) { cfg.ImageThreshold = 1000 })
	at, over := task("at", "0001"), task("over", "0002")
	at.After, over.After = doc(1000), doc(1001)
	require.Equal(t, 1000, len(at.After))
	require.Equal(t, 1001, len(over.After))
	atImage, overImage := at.After, over.After
	h.publishAndWait(t, at, over)

	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, 2)
	byKey := map[string]*trigger.DeliveryTask{}
	for _, m := range msgs {
		got, err := trigger.DecodeTask(m.Data)
		require.NoError(t, err)
		byKey[got.DocKey] = got
	}
	require.JSONEq(t, string(atImage), string(byKey["at"].After))
	require.Nil(t, byKey["at"].AfterRef)
	require.Nil(t, byKey["over"].After)
	h.requireStored(t, byKey["over"], "after", byKey["over"].AfterRef, overImage)
}

func TestStoreEveryImage(t *testing.T) {
	t.Parallel()
	h := newImageHarness(t, func(cfg *publisher.Config, _ *images.Store) { cfg.ImageThreshold = publisher.StoreEveryImage })
	tk := task("doc-1", "0001")
	tk.After = json.RawMessage(`{"n":1}`)
	tk.Type = trigger.EventCreate
	h.publishAndWait(t, tk)

	got, _ := h.published(t)
	require.Nil(t, got.After)
	h.requireStored(t, got, "after", got.AfterRef, json.RawMessage(`{"n":1}`))
	require.Nil(t, got.Before, "no before image: nothing to store")
	require.Nil(t, got.BeforeRef)
}

func TestKeepImagesInline(t *testing.T) {
	t.Parallel()
	h := newImageHarness(t, func(cfg *publisher.Config, _ *images.Store) { cfg.ImageThreshold = publisher.KeepImagesInline })
	tk := task("doc-1", "0001")
	tk.After = doc(64 << 10)
	image := tk.After
	h.publishAndWait(t, tk)

	got, _ := h.published(t)
	require.JSONEq(t, string(image), string(got.After))
	require.Nil(t, got.AfterRef)
	_, err := h.store.Fetch(t.Context(), &trigger.ImageRef{Object: images.ObjectName(got, "after"), Size: 1, Digest: strings.Repeat("A", 43)})
	require.ErrorIs(t, err, images.ErrMissing, "nothing stored")
}

// Without an image store every image stays inline, whatever its size.
func TestNoImageStoreKeepsImagesInline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tk := task("doc-1", "0001")
	tk.After = doc(64 << 10)
	image := tk.After
	h.publishAndWait(t, tk)
	msgs := h.messages(t, h.nats.Stream)
	require.Len(t, msgs, 1)
	got, err := trigger.DecodeTask(msgs[0].Data)
	require.NoError(t, err)
	require.JSONEq(t, string(image), string(got.After))
	require.Nil(t, got.AfterRef)
}

// The publisher moves images out of a task signed before Publish: the
// references carry the digests the signature covers, so it still
// verifies, as it does once the worker put the fetched images back.
func TestSignedTaskStillVerifiesWithReferences(t *testing.T) {
	t.Parallel()
	h := newImageHarness(t, nil)
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	signer, err := tasksig.NewSigner("w1", priv)
	require.NoError(t, err)
	verifier, err := tasksig.NewVerifier(map[string]ed25519.PublicKey{"w1": pub})
	require.NoError(t, err)

	tk := task("doc-1", "0001")
	tk.Before, tk.After = doc(32<<10), doc(64<<10)
	before, after := tk.Before, tk.After
	signer.Sign(tk)
	h.publishAndWait(t, tk)

	got, msg := h.published(t)
	require.Nil(t, got.Before)
	require.Nil(t, got.After)
	require.NotNil(t, got.BeforeRef)
	require.NotNil(t, got.AfterRef)
	require.NoError(t, verifier.Verify(got))
	require.True(t, strings.HasPrefix(msg.Header.Get(jetstream.MsgIDHeader), got.EventID+"."), "a signed task's message id carries its signature")

	// What the worker delivers: the fetched images in place of the references.
	full := *got
	b, err := h.store.Fetch(t.Context(), got.BeforeRef)
	require.NoError(t, err)
	full.Before = b
	b, err = h.store.Fetch(t.Context(), got.AfterRef)
	require.NoError(t, err)
	full.After = b
	full.BeforeRef, full.AfterRef = nil, nil
	require.NoError(t, verifier.Verify(&full))
	require.JSONEq(t, string(before), string(full.Before))
	require.JSONEq(t, string(after), string(full.After))

	// A reference to another image does not verify.
	forged := *got
	ref := *got.AfterRef
	ref.Digest = trigger.ImageDigest([]byte(`{"status":"refunded"}`))
	forged.AfterRef = &ref
	require.ErrorIs(t, verifier.Verify(&forged), tasksig.ErrUnauthenticated)
}

// flakyStore fails the first Put it is given, then stores through next.
type flakyStore struct {
	next   publisher.ImageStore
	mu     sync.Mutex
	failed bool
	names  []string
}

func (s *flakyStore) Put(ctx context.Context, name string, canonical []byte) error {
	s.mu.Lock()
	s.names = append(s.names, name)
	fail := !s.failed
	s.failed = true
	s.mu.Unlock()
	if fail {
		return errors.New("object store unavailable")
	}
	return s.next.Put(ctx, name, canonical)
}

// A failed upload is retried before the task is published: a task on the
// stream always finds its image.
func TestImageUploadIsRetriedBeforeThePublish(t *testing.T) {
	t.Parallel()
	flaky := &flakyStore{}
	h := newImageHarness(t, func(cfg *publisher.Config, store *images.Store) {
		flaky.next = store
		cfg.Images = flaky
	})
	tk := task("doc-1", "0001")
	tk.After = doc(8 << 10)
	image := tk.After
	h.publishAndWait(t, tk)

	got, _ := h.published(t)
	h.requireStored(t, got, "after", got.AfterRef, image)
	flaky.mu.Lock()
	require.Equal(t, []string{got.AfterRef.Object, got.AfterRef.Object}, flaky.names, "one failure, one retry")
	flaky.mu.Unlock()
	require.Equal(t, 1.0, testenv.Metric(t, h.reg, "triggerflow_publisher_publish_failures_total", prometheus.Labels{"reason": "image-store"}))
}

// gatedStore holds every Put until open is closed.
type gatedStore struct {
	next publisher.ImageStore
	open chan struct{}
}

func (s *gatedStore) Put(ctx context.Context, name string, canonical []byte) error {
	select {
	case <-s.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.next.Put(ctx, name, canonical)
}

// Publish blocks while MaxPendingImageBytes of images wait to be stored;
// an image larger than the bound takes all of it, and tasks without
// stored images are not held.
func TestPendingImageBytesAreBounded(t *testing.T) {
	t.Parallel()
	gate := &gatedStore{open: make(chan struct{})}
	h := newImageHarness(t, func(cfg *publisher.Config, store *images.Store) {
		gate.next = store
		cfg.Images = gate
		cfg.MaxPendingImageBytes = 10 << 10
	})
	ctx := context.Background()
	o := newOutcomes(3)

	big := task("big", "0001")
	big.After = doc(64 << 10) // over the bound: takes all of it
	require.NoError(t, h.pub.Publish(ctx, big, o.done(big.EventID)))

	small := task("small", "0002") // inline image: no budget needed
	require.NoError(t, h.pub.Publish(ctx, small, o.done(small.EventID)))
	<-o.n
	require.Equal(t, map[string][]error{small.EventID: {nil}}, o.snapshot(), "the task without a stored image is published")

	blocked := task("next", "0003")
	blocked.After = doc(8 << 10)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.pub.Publish(short, blocked, o.done(blocked.EventID)), context.DeadlineExceeded,
		"no budget while the large image waits to be stored")

	require.Equal(t, doc(8<<10), blocked.After, "a refused task keeps its image")
	require.Nil(t, blocked.AfterRef)

	close(gate.open)
	require.NoError(t, h.pub.Flush(ctx))
	require.NoError(t, h.pub.Publish(ctx, blocked, o.done(blocked.EventID)), "and can be published again")
	require.NoError(t, h.pub.Flush(ctx))
	calls := o.snapshot()
	require.Len(t, calls, 3)
	for id, errs := range calls {
		require.Equal(t, []error{nil}, errs, id)
	}
	require.Len(t, h.messages(t, h.nats.Stream), 3)
}

func TestImageConfigValidation(t *testing.T) {
	t.Parallel()
	base := publisher.Config{DeadLetters: deadletter.NewPublisher(nil, "DLQ")}.WithDefaults()
	require.NoError(t, base.Validate())
	require.Equal(t, publisher.DefaultImageThreshold, base.ImageThreshold)
	require.EqualValues(t, publisher.DefaultMaxPendingImageBytes, base.MaxPendingImageBytes)

	for _, ok := range []int{publisher.StoreEveryImage, publisher.KeepImagesInline, 1} {
		c := base
		c.ImageThreshold = ok
		require.NoError(t, c.Validate(), ok)
	}
	c := base
	c.ImageThreshold = -3
	require.ErrorContains(t, c.Validate(), "ImageThreshold")
	c = base
	c.MaxPendingImageBytes = -1
	require.ErrorContains(t, c.Validate(), "MaxPendingImageBytes")
}

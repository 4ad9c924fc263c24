package activities_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/tasksig"
	"github.com/triggerflow/triggerflow/trigger"
)

// fakeImages is an image store in memory. Fetch answers err when it is
// set, else the stored object or ErrMissing.
type fakeImages struct {
	mu       sync.Mutex
	objects  map[string][]byte // by bucket + "/" + object
	err      error
	fetched  []trigger.ImageRef
	released [][]*trigger.ImageRef
}

func newFakeImages() *fakeImages { return &fakeImages{objects: map[string][]byte{}} }

// claim moves an image into the store, returning its reference.
func (s *fakeImages) claim(name string, raw json.RawMessage) *trigger.ImageRef {
	ref, canonical := images.Ref(name, raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[ref.Bucket+"/"+ref.Object] = canonical
	return &ref
}

func (s *fakeImages) Fetch(_ context.Context, ref *trigger.ImageRef) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = append(s.fetched, *ref)
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.objects[ref.Bucket+"/"+ref.Object]
	if !ok {
		return nil, fmt.Errorf("%w: %q", images.ErrMissing, ref.Object)
	}
	return b, nil
}

func (s *fakeImages) Release(refs ...*trigger.ImageRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = append(s.released, refs)
}

func (s *fakeImages) fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fetched)
}

func (s *fakeImages) fetchedRefs() []trigger.ImageRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]trigger.ImageRef(nil), s.fetched...)
}

func (s *fakeImages) releases() [][]*trigger.ImageRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]*trigger.ImageRef(nil), s.released...)
}

// withRefs returns task with both images moved into store.
func withRefs(store *fakeImages, task trigger.DeliveryTask) trigger.DeliveryTask {
	task.BeforeRef = store.claim(images.ObjectName(&task, "before"), task.Before)
	task.AfterRef = store.claim(images.ObjectName(&task, "after"), task.After)
	task.Before, task.After = nil, nil
	return task
}

// largeImage is a document image of about n bytes, with the spaces and
// HTML-sensitive characters a JSON round trip would change.
func largeImage(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{ "total": 3, "note": "<b>", "blob": %q }`, strings.Repeat("z", n)))
}

func TestReferencedImagesAreFetchedIntoTheBody(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
	inline := f.task("evt_img1")
	inline.After = largeImage(100 << 10)
	task := withRefs(store, inline)

	res, err := f.deliver(t, task)
	require.NoError(t, err)
	require.Equal(t, 200, res.Status)

	reqs := f.rec.Requests()
	require.Len(t, reqs, 1)
	want, err := activities.Body(&inline)
	require.NoError(t, err)
	require.Equal(t, string(want), string(reqs[0].Body), "the body is the one of the task with its images inline")
	verifyStandardWebhook(t, reqs[0].Headers, reqs[0].Body, newSecret, oldSecret)
	var body activities.Envelope
	require.NoError(t, json.Unmarshal(reqs[0].Body, &body))
	require.JSONEq(t, `{"total":1}`, string(body.Data.Before))
	require.JSONEq(t, string(inline.After), string(body.Data.After))

	require.Equal(t, []trigger.ImageRef{*task.BeforeRef, *task.AfterRef}, store.fetchedRefs())
	require.Equal(t, [][]*trigger.ImageRef{{task.BeforeRef, task.AfterRef}}, store.releases(), "released once delivered")
}

// One image inline, one stored: only the stored one is fetched.
func TestMixedInlineAndReferencedImages(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
	inline := f.task("evt_img2")
	task := inline
	task.After, task.AfterRef = nil, store.claim("acme/evt_img2/after", inline.After)

	_, err := f.deliver(t, task)
	require.NoError(t, err)
	want, err := activities.Body(&inline)
	require.NoError(t, err)
	require.Equal(t, string(want), string(f.rec.Requests()[0].Body))
	require.Equal(t, 1, store.fetches())
	require.Equal(t, [][]*trigger.ImageRef{{nil, task.AfterRef}}, store.releases())
}

// An image that is gone or does not match its digest fails for good:
// nothing is sent, nothing released.
func TestMissingImageIsNotRetried(t *testing.T) {
	t.Parallel()
	for name, fetchErr := range map[string]error{
		"missing":        nil, // the store does not have it
		"corrupt":        fmt.Errorf("%w: digest differs", images.ErrCorrupt),
		"unknown bucket": fmt.Errorf("%w: %q", images.ErrUnknownBucket, "OTHER"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := newFakeImages()
			f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
			task := withRefs(store, f.task("evt_gone"))
			store.mu.Lock()
			if fetchErr == nil {
				clear(store.objects)
			}
			store.err = fetchErr
			store.mu.Unlock()

			_, err := f.deliver(t, task)
			appErr, fl := failure(t, err)
			require.Equal(t, activities.TypeImageMissing, appErr.Type())
			require.True(t, appErr.NonRetryable())
			require.Equal(t, activities.TypeImageMissing, fl.Type)
			require.False(t, fl.Retryable)
			require.Equal(t, "evt_gone", fl.EventID)
			require.Contains(t, activities.NonRetryableTypes(), activities.TypeImageMissing)
			require.Empty(t, f.rec.Requests(), "nothing sent")
			require.Empty(t, store.releases(), "nothing released")
		})
	}
}

// A fetch that fails for now, or a worker without an image store, is
// retried.
func TestUnavailableImageIsRetried(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	store.err = errors.New("nats: timeout")
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
	task := withRefs(store, f.task("evt_later"))
	_, err := f.deliver(t, task)
	appErr, fl := failure(t, err)
	require.Equal(t, activities.TypeImageUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.True(t, fl.Retryable)
	require.Contains(t, fl.Message, "nats: timeout")
	require.NotContains(t, activities.NonRetryableTypes(), activities.TypeImageUnavailable)
	require.Empty(t, f.rec.Requests())

	store.mu.Lock()
	store.err = nil
	store.mu.Unlock()
	_, err = f.deliver(t, task)
	require.NoError(t, err, "the retry finds the image")
	require.Len(t, f.rec.Requests(), 1)

	noStore := newFixture(t, activities.Config{}, activities.Deps{})
	_, err = noStore.deliver(t, withRefs(newFakeImages(), noStore.task("evt_nostore")))
	appErr, _ = failure(t, err)
	require.Equal(t, activities.TypeImageUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Empty(t, noStore.rec.Requests())
}

// The references' sizes alone can tell a body is too large, before
// anything is fetched; a body that only turns out too large once the
// images are in fails the same way.
func TestReferencedImagesOverMaxBodyBytes(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	f := newFixture(t, activities.Config{MaxBodyBytes: 4096}, activities.Deps{Images: store})

	big := f.task("evt_big")
	big.Before, big.After = largeImage(2100), largeImage(2100)
	_, err := f.deliver(t, withRefs(store, big))
	appErr, fl := failure(t, err)
	require.Equal(t, activities.TypeOversize, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Contains(t, fl.Message, "more than the 4096 allowed")
	require.Zero(t, store.fetches(), "nothing fetched")

	// 2 × 1900 bytes of images fit, the envelope around them does not.
	edge := f.task("evt_edge")
	edge.Before, edge.After = largeImage(1900), largeImage(1900)
	task := withRefs(store, edge)
	require.LessOrEqual(t, task.BeforeRef.Size+task.AfterRef.Size, int64(4096))
	_, err = f.deliver(t, task)
	appErr, _ = failure(t, err)
	require.Equal(t, activities.TypeOversize, appErr.Type())
	require.Equal(t, 2, store.fetches(), "fetched, then measured")

	require.Empty(t, f.rec.Requests())
	require.Empty(t, store.releases())
}

// Images are released after a successful delivery only: a failed attempt
// is retried, and needs them.
func TestImagesAreReleasedAfterSuccessOnly(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
	f.failFirst(503)
	task := withRefs(store, f.task("evt_rel"))

	_, err := f.deliver(t, task)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeHTTP5xx, appErr.Type())
	require.Empty(t, store.releases(), "not after a failed attempt")

	_, err = f.deliver(t, task)
	require.NoError(t, err)
	require.Equal(t, [][]*trigger.ImageRef{{task.BeforeRef, task.AfterRef}}, store.releases())
	reqs := f.rec.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, reqs[0].Body, reqs[1].Body, "every attempt sends the same body")

	// A task with its images inline releases nothing.
	_, err = f.deliver(t, f.task("evt_inline"))
	require.NoError(t, err)
	require.Len(t, store.releases(), 1)
}

// A batch releases the images of the tasks it delivered, not those of the
// task it stopped at.
func TestDeliverBatchReleasesDeliveredTasksImages(t *testing.T) {
	t.Parallel()
	store := newFakeImages()
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
	f.rec.Respond(func(r *testenv.Request) testenv.Response {
		if r.Headers.Get("webhook-id") == "evt_b2" {
			return testenv.Response{Status: 410}
		}
		return testenv.Response{}
	})
	t1, t2 := withRefs(store, f.task("evt_b1")), withRefs(store, f.task("evt_b2"))
	v, err := f.env.ExecuteActivity(activities.DeliverBatchName, []trigger.DeliveryTask{t1, t2})
	require.NoError(t, err)
	var res activities.BatchResult
	require.NoError(t, v.Get(&res))
	require.Equal(t, 1, res.Delivered)
	require.NotNil(t, res.Failure)
	require.Equal(t, activities.TypeHTTP4xx, res.Failure.Type)
	require.Equal(t, [][]*trigger.ImageRef{{t1.BeforeRef, t1.AfterRef}}, store.releases())
}

// A task whose signature does not verify gets nothing fetched: its
// references are anyone's. Signed with the images inline, it verifies
// with references, and is delivered.
func TestUnauthenticatedTaskFetchesNothing(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	verifier, err := tasksig.NewVerifier(map[string]ed25519.PublicKey{"w1": pub})
	require.NoError(t, err)
	signer, err := tasksig.NewSigner("w1", priv)
	require.NoError(t, err)
	store := newFakeImages()
	f := newFixture(t, activities.Config{}, activities.Deps{Images: store, Verifier: verifier})

	unsigned := withRefs(store, f.task("evt_unsigned"))
	_, err = f.deliver(t, unsigned)
	appErr, _ := failure(t, err)
	require.Equal(t, activities.TypeUnauthenticated, appErr.Type())
	require.Zero(t, store.fetches(), "nothing fetched")

	inline := f.task("evt_signed")
	signer.Sign(&inline)
	signed := withRefs(store, inline)
	forged := signed
	other := *signed.AfterRef
	other.Digest = trigger.ImageDigest([]byte(`{"total":1000}`))
	forged.AfterRef = &other
	_, err = f.deliver(t, forged)
	appErr, _ = failure(t, err)
	require.Equal(t, activities.TypeUnauthenticated, appErr.Type(), "a reference to another image breaks the signature")
	require.Zero(t, store.fetches(), "nothing fetched")
	require.Empty(t, f.rec.Requests())

	_, err = f.deliver(t, signed)
	require.NoError(t, err)
	require.Equal(t, 2, store.fetches())
	want, err := activities.Body(&inline)
	require.NoError(t, err)
	require.Equal(t, string(want), string(f.rec.Requests()[0].Body))
}

func TestDefaultMaxBodyBytes(t *testing.T) {
	t.Parallel()
	require.Equal(t, 5<<20, activities.Config{}.WithDefaults().MaxBodyBytes)
	require.Equal(t, activities.DefaultMaxBodyBytes, activities.Config{}.WithDefaults().MaxBodyBytes)
}

// The signature covers an image's digest, not its object name: a task
// whose reference names another task's or tenant's object fetches nothing
// (and so can never have that object deleted after a delivery).
func TestForeignImageReferenceIsRefused(t *testing.T) {
	t.Parallel()
	for name, ref := range map[string]trigger.ImageRef{
		"another task's image":              {Object: "acme/evt_other/after"},
		"another tenant's dead-letter copy": {Object: "globex/delivery/evt_mine/after", Bucket: images.DeadLetterBucket},
		"the wrong side":                    {Object: "acme/evt_mine/before"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := newFakeImages()
			f := newFixture(t, activities.Config{}, activities.Deps{Images: store})
			task := withRefs(store, f.task("evt_mine"))
			forged := *task.AfterRef
			forged.Object, forged.Bucket = ref.Object, ref.Bucket
			task.AfterRef = &forged

			_, err := f.deliver(t, task)
			appErr, fl := failure(t, err)
			require.Equal(t, activities.TypeImageMissing, appErr.Type())
			require.Contains(t, fl.Message, "does not name this task's image")
			for _, r := range store.fetchedRefs() {
				require.Equal(t, *task.BeforeRef, r, "only the task's own before image is fetched")
			}
			require.Empty(t, f.rec.Requests(), "nothing sent")
		})
	}
}

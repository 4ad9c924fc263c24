package images_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats.go v1.55.0: ObjectStore.Put publishes through a JetStream
		// context of its own whose reconnect listener goroutine can start
		// after Put's cleanup removed the listener; it then waits on a nil
		// channel for good. Rare, but seen in these tests.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
	)
}

// awaitTimeout bounds waits for deletions done in the background; they
// take milliseconds.
const awaitTimeout = 10 * time.Second

// fixture is a Store over the buckets streams.Ensure provisions on a fresh
// embedded NATS.
type fixture struct {
	js    jetstream.JetStream
	cfg   streams.Config
	reg   *prometheus.Registry
	store *images.Store
}

func newFixture(t *testing.T, releaseDelay time.Duration) *fixture {
	t.Helper()
	f := &fixture{cfg: streams.Config{}.WithDefaults(), reg: prometheus.NewRegistry()}
	f.js = testenv.NATS(t).JetStream(t, f.cfg)
	var err error
	f.store, err = images.New(f.js, images.Config{Streams: f.cfg, ReleaseDelay: releaseDelay, Registerer: f.reg})
	require.NoError(t, err)
	// Registered after the server's cleanup, so it runs first: pending
	// deletions finish while NATS is still up.
	t.Cleanup(func() { require.NoError(t, f.store.Close()) })
	return f
}

// image is a document image of about n bytes, written with the spaces and
// HTML-sensitive characters that canonicalisation removes and escapes.
func image(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{ "id": "o-1", "note": "<b>&</b>", "blob": %q }`, strings.Repeat("x", n)))
}

// put stores raw under name and returns its reference and canonical form.
func (f *fixture) put(t *testing.T, name string, raw json.RawMessage) (trigger.ImageRef, []byte) {
	t.Helper()
	ref, canonical := images.Ref(name, raw)
	require.NoError(t, f.store.Put(t.Context(), name, canonical))
	return ref, canonical
}

func (f *fixture) metric(t *testing.T, name string, labels prometheus.Labels) float64 {
	t.Helper()
	return testenv.Metric(t, f.reg, name, labels)
}

// awaitGone waits until the object name is gone from bucket. It asks
// for the object's info rather than fetching it: a fetch racing the
// deletion of its object waits for chunks that were purged.
func (f *fixture) awaitGone(t *testing.T, bucket, name string) {
	t.Helper()
	obs, err := f.js.ObjectStore(t.Context(), bucket)
	require.NoError(t, err)
	testenv.Eventually(t, awaitTimeout, "object "+name+" deleted from "+bucket, func() error {
		_, err := obs.GetInfo(t.Context(), name)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return errors.New("still stored")
	})
}

func (f *fixture) taskBucket() string { return streams.ImageBucket(f.cfg.Stream) }
func (f *fixture) deadBucket() string { return streams.ImageBucket(f.cfg.DeadLetterStream) }

func TestRefIsCanonical(t *testing.T) {
	t.Parallel()
	raw := json.RawMessage(`{ "a": 1,
		"b": "<i>" }`)
	ref, canonical := images.Ref("acme/evt_1/after", raw)
	require.Equal(t, `{"a":1,"b":"\u003ci\u003e"}`, string(canonical))
	require.Equal(t, trigger.CanonicalImage(raw), canonical)
	require.Equal(t, trigger.ImageRef{
		Object: "acme/evt_1/after", Size: int64(len(canonical)), Digest: trigger.ImageDigest(canonical),
	}, ref)
	require.Len(t, ref.Digest, 43)

	// The canonical form survives a JSON round trip: the digest does not
	// depend on how the image travelled.
	b, err := json.Marshal(struct{ Img json.RawMessage }{raw})
	require.NoError(t, err)
	var back struct{ Img json.RawMessage }
	require.NoError(t, json.Unmarshal(b, &back))
	again, _ := images.Ref("acme/evt_1/after", back.Img)
	require.Equal(t, ref, again)

	task := &trigger.DeliveryTask{Tenant: "acme", EventID: "evt_1"}
	require.Equal(t, "acme/evt_1/before", images.ObjectName(task, "before"))
	task.Redrive = 7
	require.Equal(t, "acme/evt_1#redrive-7/after", images.ObjectName(task, "after"), "a redrive is a task of its own")
}

func TestNewRefusesNilJetStream(t *testing.T) {
	t.Parallel()
	_, err := images.New(nil, images.Config{})
	require.Error(t, err)
}

func TestPutThenFetch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ref, canonical := f.put(t, "acme/evt_1/after", image(64<<10))

	got, err := f.store.Fetch(t.Context(), &ref)
	require.NoError(t, err)
	require.Equal(t, canonical, got)
	acme := prometheus.Labels{"tenant": "acme"}
	require.Equal(t, 1.0, f.metric(t, "triggerflow_images_stored_total", acme), "labelled with the object name's tenant")
	require.Equal(t, 1.0, f.metric(t, "triggerflow_images_fetched_total", acme))

	// Put replaces: a task published again after a crash overwrites its
	// image.
	ref2, canonical2 := f.put(t, "acme/evt_1/after", image(10))
	got, err = f.store.Fetch(t.Context(), &ref2)
	require.NoError(t, err)
	require.Equal(t, canonical2, got)
	_, err = f.store.Fetch(t.Context(), &ref)
	require.ErrorIs(t, err, images.ErrCorrupt, "the old reference no longer matches")
}

func TestFetchFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ref, _ := f.put(t, "acme/evt_1/after", image(100))

	missing := ref
	missing.Object = "acme/evt_never/after"
	_, err := f.store.Fetch(t.Context(), &missing)
	require.ErrorIs(t, err, images.ErrMissing)
	require.ErrorContains(t, err, "acme/evt_never/after")

	missingCopy := ref
	missingCopy.Bucket = images.DeadLetterBucket
	_, err = f.store.Fetch(t.Context(), &missingCopy)
	require.ErrorIs(t, err, images.ErrMissing, "the dead-letter bucket holds no copy")

	wrongDigest := ref
	wrongDigest.Digest = trigger.ImageDigest([]byte(`{"forged":true}`))
	_, err = f.store.Fetch(t.Context(), &wrongDigest)
	require.ErrorIs(t, err, images.ErrCorrupt)

	wrongSize := ref
	wrongSize.Size++
	_, err = f.store.Fetch(t.Context(), &wrongSize)
	require.ErrorIs(t, err, images.ErrCorrupt)

	unknown := ref
	unknown.Bucket = "OTHER_IMAGES"
	_, err = f.store.Fetch(t.Context(), &unknown)
	require.ErrorIs(t, err, images.ErrUnknownBucket)
	require.NotErrorIs(t, err, images.ErrMissing)

	for reason, want := range map[string]float64{"missing": 2, "corrupt": 2, "unavailable": 0} {
		require.Equal(t, want, f.metric(t, "triggerflow_images_fetch_failures_total", prometheus.Labels{"reason": reason}), reason)
	}
	require.Zero(t, f.metric(t, "triggerflow_images_fetched_total", nil))

	got, err := f.store.Fetch(t.Context(), &ref)
	require.NoError(t, err, "the failures left the object alone")
	require.NotEmpty(t, got)
}

// A store over buckets nobody provisioned fails transiently: neither
// ErrMissing nor ErrCorrupt, so the worker retries.
func TestFetchFromUnprovisionedBucketIsTransient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	reg := prometheus.NewRegistry()
	other, err := images.New(f.js, images.Config{Streams: streams.Config{Stream: "NOT_PROVISIONED"}, Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	ref, _ := images.Ref("acme/evt_1/after", image(10))
	_, err = other.Fetch(t.Context(), &ref)
	require.Error(t, err)
	require.NotErrorIs(t, err, images.ErrMissing)
	require.NotErrorIs(t, err, images.ErrCorrupt)
	require.NotErrorIs(t, err, images.ErrUnknownBucket)
	require.Equal(t, 1.0, testenv.Metric(t, reg, "triggerflow_images_fetch_failures_total", prometheus.Labels{"reason": "unavailable"}))

	// The bucket sizes cannot be read: the gauge leaves itself out rather
	// than fail the scrape of every other metric.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.NotEqual(t, "triggerflow_images_bucket_bytes", mf.GetName())
	}
}

func TestReleaseWithNegativeDelayDeletesAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	before, _ := f.put(t, "acme/evt_1/before", image(1000))
	after, _ := f.put(t, "acme/evt_1/after", image(2000))
	kept, _ := f.put(t, "acme/evt_2/after", image(10))
	foreign := kept
	foreign.Bucket = "OTHER_IMAGES"

	f.store.Release(&before, nil, &after, &foreign)
	f.awaitGone(t, f.taskBucket(), before.Object)
	f.awaitGone(t, f.taskBucket(), after.Object)
	testenv.Eventually(t, awaitTimeout, "two deletions counted", func() error {
		if n := f.metric(t, "triggerflow_images_deleted_total", nil); n != 2 {
			return fmt.Errorf("deleted_total is %v", n)
		}
		return nil
	})
	_, err := f.store.Fetch(t.Context(), &before)
	require.ErrorIs(t, err, images.ErrMissing)

	require.NoError(t, f.store.Close()) // waits for any deletion under way
	_, err = f.store.Fetch(t.Context(), &kept)
	require.NoError(t, err, "an image not released stays, and a reference to an unknown bucket deletes nothing")
	require.Equal(t, 2.0, f.metric(t, "triggerflow_images_deleted_total", nil))
}

func TestCloseDeletesDelayedReleases(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	released, _ := f.put(t, "acme/evt_1/after", image(1000))
	kept, _ := f.put(t, "acme/evt_2/after", image(1000))

	f.store.Release(&released)
	f.store.Release(&released) // a second release of the same object is one deletion
	_, err := f.store.Fetch(t.Context(), &released)
	require.NoError(t, err, "the release waits for its delay")

	require.NoError(t, f.store.Close())
	_, err = f.store.Fetch(t.Context(), &released)
	require.ErrorIs(t, err, images.ErrMissing, "Close deleted the delayed release before returning")
	require.Equal(t, 1.0, f.metric(t, "triggerflow_images_deleted_total", nil))
	_, err = f.store.Fetch(t.Context(), &kept)
	require.NoError(t, err, "an image not released survives Close")

	f.store.Release(&kept)
	require.NoError(t, f.store.Close(), "Close is idempotent")
	_, err = f.store.Fetch(t.Context(), &kept)
	require.NoError(t, err, "Release does nothing after Close")
}

func refTask(before, after *trigger.ImageRef) *trigger.DeliveryTask {
	return &trigger.DeliveryTask{
		V: trigger.TaskVersion, EventID: "evt_1", Tenant: "acme", TriggerID: "t1", Collection: "orders",
		DocKey: "o-1", Type: trigger.EventUpdate, Position: "42", CommitTime: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		URL: "https://hooks.example/t1", BeforeRef: before, AfterRef: after,
	}
}

func record(t *testing.T, stage deadletter.Stage, reason string, task *trigger.DeliveryTask) deadletter.Record {
	t.Helper()
	b, err := task.Encode()
	require.NoError(t, err)
	return deadletter.Record{ID: task.EventID, Stage: stage, Reason: reason, Detail: "410 Gone",
		Tenant: task.Tenant, TriggerID: task.TriggerID, EventID: task.EventID, Task: b}
}

// copyRef is the reference KeepForDeadLetters gives the copy of orig.
func copyRef(orig trigger.ImageRef, stage deadletter.Stage, id, which string) *trigger.ImageRef {
	return &trigger.ImageRef{Object: "acme/" + string(stage) + "/" + id + "/" + which, Bucket: images.DeadLetterBucket,
		Size: orig.Size, Digest: orig.Digest}
}

// A worker's dead letter keeps its own copies of the images its task
// references, which replace the originals; a redrive fetches the copies,
// and purging the record deletes them.
func TestKeepForDeadLettersAtDeliveryReplacesTheImages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ctx := t.Context()
	before, beforeImg := f.put(t, "acme/evt_1/before", image(3000))
	after, afterImg := f.put(t, "acme/evt_1/after", image(5000))
	task := refTask(&before, &after)
	task.Auth = &trigger.TaskAuth{KeyID: "k1", Sig: "unchanged"}

	sink := f.store.KeepForDeadLetters(deadletter.NewPublisher(f.js, f.cfg.DeadLetterStream))
	require.NoError(t, sink.Publish(ctx, record(t, deadletter.StageDelivery, "http-4xx", task)))

	entries, err := deadletter.List(ctx, f.js, f.cfg.DeadLetterStream, "", 0)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	rec := entries[0].Record
	require.Equal(t, "410 Gone", rec.Detail, "nothing to note")
	got, err := trigger.DecodeTask(rec.Task)
	require.NoError(t, err)
	beforeCopy, afterCopy := copyRef(before, deadletter.StageDelivery, "evt_1", "before"), copyRef(after, deadletter.StageDelivery, "evt_1", "after")
	require.Equal(t, beforeCopy, got.BeforeRef)
	require.Equal(t, afterCopy, got.AfterRef)
	require.Equal(t, task.Auth, got.Auth, "the signature still covers the task: the digests did not change")
	got.BeforeRef, got.AfterRef = task.BeforeRef, task.AfterRef
	require.Equal(t, task, got, "only the references changed")

	// The worker gave up on the task: the copies replace the originals.
	f.awaitGone(t, f.taskBucket(), before.Object)
	f.awaitGone(t, f.taskBucket(), after.Object)
	b, err := f.store.Fetch(ctx, beforeCopy)
	require.NoError(t, err)
	require.Equal(t, beforeImg, b)
	b, err = f.store.Fetch(ctx, afterCopy)
	require.NoError(t, err)
	require.Equal(t, afterImg, b)

	n, err := images.DeletePurged(ctx, f.js, f.cfg.DeadLetterStream, []deadletter.Record{rec})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, err = f.store.Fetch(ctx, beforeCopy)
	require.ErrorIs(t, err, images.ErrMissing)
	_, err = f.store.Fetch(ctx, afterCopy)
	require.ErrorIs(t, err, images.ErrMissing)
}

// Other stages copy too, but leave the originals (the task may still be
// on its way); a task dead-lettered again keeps referencing the copies it
// has; a task whose signature failed gets nothing copied or deleted.
func TestKeepForDeadLettersLeavesWhatItDoesNotReplace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ctx := t.Context()
	after, _ := f.put(t, "acme/evt_1/after", image(500))
	sink := &testenv.Records[deadletter.Record]{}
	keep := f.store.KeepForDeadLetters(sink)

	require.NoError(t, keep.Publish(ctx, record(t, deadletter.StageIngest, "workflow-start-failed", refTask(nil, &after))))
	got, err := trigger.DecodeTask(sink.All()[0].Task)
	require.NoError(t, err)
	afterCopy := copyRef(after, deadletter.StageIngest, "evt_1", "after")
	require.Equal(t, afterCopy, got.AfterRef)

	// Redriven, then dead-lettered by the worker again.
	again := record(t, deadletter.StageDelivery, "http-4xx", got)
	require.NoError(t, keep.Publish(ctx, again))
	require.Equal(t, again, sink.All()[1], "the copies are referenced as they are")

	// Unauthenticated: the references are anyone's.
	forged := refTask(nil, &after)
	forged.EventID = "evt_forged"
	unauth := record(t, deadletter.StageDelivery, "unauthenticated", forged)
	require.NoError(t, keep.Publish(ctx, unauth))
	require.Equal(t, unauth, sink.All()[2], "passed on untouched")

	require.NoError(t, f.store.Close()) // waits for any deletion under way
	_, err = f.store.Fetch(ctx, &after)
	require.NoError(t, err, "the original stays")
	_, err = f.store.Fetch(ctx, afterCopy)
	require.NoError(t, err, "the copy stays")
	_, err = f.store.Fetch(ctx, copyRef(after, deadletter.StageDelivery, "evt_forged", "after"))
	require.ErrorIs(t, err, images.ErrMissing, "nothing copied for the unauthenticated task")
}

// A redrive that was delivered releases the dead letter's copies, which
// nothing references any more (the redrive removed the record).
func TestReleaseDeletesDeadLetterCopies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	after, _ := f.put(t, "acme/evt_1/after", image(500))
	require.NoError(t, f.store.KeepForDeadLetters(&testenv.Records[deadletter.Record]{}).Publish(t.Context(),
		record(t, deadletter.StageIngest, "workflow-start-failed", refTask(nil, &after))))
	afterCopy := copyRef(after, deadletter.StageIngest, "evt_1", "after")

	f.store.Release(afterCopy)
	f.awaitGone(t, f.deadBucket(), afterCopy.Object)
	require.NoError(t, f.store.Close())
	_, err := f.store.Fetch(t.Context(), &after)
	require.NoError(t, err, "only the copy was released")
}

// The next sink's failure is the publish's failure, and the originals stay
// for the retry.
func TestKeepForDeadLettersKeepsOriginalsWhenThePublishFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	after, _ := f.put(t, "acme/evt_1/after", image(500))
	sink := &testenv.Records[deadletter.Record]{Err: errors.New("dead-letter stream unavailable")}
	err := f.store.KeepForDeadLetters(sink).Publish(t.Context(), record(t, deadletter.StageDelivery, "http-4xx", refTask(nil, &after)))
	require.ErrorIs(t, err, sink.Err)
	require.NoError(t, f.store.Close()) // waits for any deletion under way
	_, err = f.store.Fetch(t.Context(), &after)
	require.NoError(t, err)
}

func TestDeletePurgedIgnoresRecordsWithoutCopies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ref, _ := f.put(t, "acme/evt_1/after", image(100))
	inline := refTask(nil, nil)
	inline.After = json.RawMessage(`{"n":1}`)
	recs := []deadletter.Record{
		record(t, deadletter.StageIngest, "x", refTask(nil, &ref)), // the task bucket's: not the purge's to delete
		record(t, deadletter.StageIngest, "x", inline),
		{ID: "x", Stage: deadletter.StageIngest, Reason: "undecodable", Payload: []byte("garbage")},
		{ID: "y", Stage: deadletter.StageIngest, Reason: "invalid-task", Task: json.RawMessage(`{"afterRef": 5}`)},
	}
	n, err := images.DeletePurged(t.Context(), f.js, f.cfg.DeadLetterStream, recs)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = f.store.Fetch(t.Context(), &ref)
	require.NoError(t, err, "the task bucket's image stays")
}

// A dead letter whose image is already gone is still recorded, with a
// note; a record without references passes through untouched.
func TestKeepForDeadLettersNotesMissingImages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	ctx := t.Context()
	after, _ := f.put(t, "acme/evt_1/after", image(100))
	gone, _ := images.Ref("acme/evt_1/before", image(200)) // never stored
	task := refTask(&gone, &after)

	sink := &testenv.Records[deadletter.Record]{}
	keep := f.store.KeepForDeadLetters(sink)
	require.NoError(t, keep.Publish(ctx, record(t, deadletter.StageIngest, "x", task)))
	recs := sink.All()
	require.Len(t, recs, 1)
	require.True(t, strings.HasPrefix(recs[0].Detail, "410 Gone"), recs[0].Detail)
	require.Contains(t, recs[0].Detail, "the before image is no longer stored")
	require.Contains(t, recs[0].Detail, "acme/evt_1/before")
	require.NotContains(t, recs[0].Detail, "the after image")
	got, err := trigger.DecodeTask(recs[0].Task)
	require.NoError(t, err)
	require.Equal(t, &gone, got.BeforeRef, "the missing image keeps its reference")
	require.Equal(t, copyRef(after, deadletter.StageIngest, "evt_1", "after"), got.AfterRef, "the stored one is copied")

	inline := refTask(nil, nil)
	inline.After = json.RawMessage(`{"n":1}`)
	plain := record(t, deadletter.StageIngest, "x", inline)
	require.NoError(t, keep.Publish(ctx, plain))
	undecodable := deadletter.Record{ID: "x", Stage: deadletter.StageIngest, Reason: "undecodable", Payload: []byte("garbage")}
	require.NoError(t, keep.Publish(ctx, undecodable))
	recs = sink.All()
	require.Len(t, recs, 3)
	require.Equal(t, plain, recs[1])
	require.Equal(t, undecodable, recs[2])
}

// A copy that fails for now (the image bucket cannot be reached) fails the
// publish, which the dead-lettering stage retries, rather than recording a
// dead letter that could never be redriven.
func TestKeepForDeadLettersFailsWhenImagesAreUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	other, err := images.New(f.js, images.Config{Streams: streams.Config{Stream: "NOT_PROVISIONED"}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	ref, _ := images.Ref("acme/evt_1/after", image(100))

	sink := &testenv.Records[deadletter.Record]{}
	err = other.KeepForDeadLetters(sink).Publish(t.Context(), record(t, deadletter.StageDelivery, "http-4xx", refTask(nil, &ref)))
	require.Error(t, err)
	require.NotErrorIs(t, err, images.ErrMissing)
	require.Empty(t, sink.All(), "nothing recorded")
}

func TestBucketBytesMetric(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	bucketBytes := func(bucket string) float64 {
		return f.metric(t, "triggerflow_images_bucket_bytes", prometheus.Labels{"bucket": bucket})
	}
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "triggerflow_images_bucket_bytes" {
			found = true
			require.Len(t, mf.GetMetric(), 2, "one series per bucket")
		}
	}
	require.True(t, found, "the bucket sizes are collected")
	require.Zero(t, bucketBytes("tasks"))
	require.Zero(t, bucketBytes("dead-letters"))

	after, _ := f.put(t, "acme/evt_1/after", image(64<<10))
	require.Positive(t, bucketBytes("tasks"))
	require.Zero(t, bucketBytes("dead-letters"))

	require.NoError(t, f.store.KeepForDeadLetters(&testenv.Records[deadletter.Record]{}).Publish(t.Context(),
		record(t, deadletter.StageIngest, "x", refTask(nil, &after))))
	require.Positive(t, bucketBytes("dead-letters"))

	// The sizes are the server's (after its compression, which runs in
	// the background), so only their presence is compared.
	tasks, dead, err := f.store.StoredBytes(t.Context())
	require.NoError(t, err)
	require.Positive(t, tasks)
	require.Positive(t, dead)
}

// A deleted image leaves nothing behind: the bucket returns to zero bytes.
func TestDeletionLeavesNoMarker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	before, _ := f.put(t, "acme/evt_1/before", image(1000))
	after, _ := f.put(t, "acme/evt_1/after", image(1000))
	f.store.Release(&before, &after)
	require.NoError(t, f.store.Close()) // waits for the deletions
	tasks, _, err := f.store.StoredBytes(t.Context())
	require.NoError(t, err)
	require.Zero(t, tasks)
	_, err = f.store.Fetch(t.Context(), &after)
	require.ErrorIs(t, err, images.ErrMissing)
}

// Deleting an object that is already deleted (a release of an image a
// purge or an earlier release took) does not count as a deletion.
func TestDeletingTwiceCountsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	after, _ := f.put(t, "acme/evt_1/after", image(100))
	require.NoError(t, f.store.KeepForDeadLetters(&testenv.Records[deadletter.Record]{}).Publish(t.Context(),
		record(t, deadletter.StageIngest, "x", refTask(nil, &after))))
	rec := record(t, deadletter.StageIngest, "x", refTask(nil, copyRef(after, deadletter.StageIngest, "evt_1", "after")))

	n, err := images.DeletePurged(t.Context(), f.js, f.cfg.DeadLetterStream, []deadletter.Record{rec})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = images.DeletePurged(t.Context(), f.js, f.cfg.DeadLetterStream, []deadletter.Record{rec})
	require.NoError(t, err)
	require.Zero(t, n, "already deleted")

	f.store.Release(&after)
	require.NoError(t, f.store.Close())
	second, err := images.New(f.js, images.Config{Streams: f.cfg, ReleaseDelay: time.Hour, Registerer: f.reg})
	require.NoError(t, err)
	second.Release(&after)
	require.NoError(t, second.Close())
	require.Equal(t, 1.0, f.metric(t, "triggerflow_images_deleted_total", nil))
}

// Several stores share one registry (one per factory in a process), as
// every component's metrics do.
func TestStoresShareARegistry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, -1)
	second, err := images.New(f.js, images.Config{Streams: f.cfg, Registerer: f.reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, second.Close()) })
	f.put(t, "acme/evt_1/after", image(10))
	require.NoError(t, second.Put(t.Context(), "acme/evt_2/after", []byte(`{}`)))
	require.Equal(t, 2.0, f.metric(t, "triggerflow_images_stored_total", nil))
}

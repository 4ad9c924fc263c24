package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// KeepForDeadLetters wraps sink so that a dead letter whose task
// references stored images keeps its own copies, in the dead-letter
// bucket, which is kept like the dead letters themselves: the task
// bucket's images expire with the task stream's retention, a dead letter
// waits for an operator. The record's task then references the copies
// (ImageRef.Bucket "dead-letters"), which a redrive delivers from. A copy
// that cannot be made for good (the image is gone) is noted in the
// record's detail; one that fails for now fails the publish, which every
// dead-lettering stage retries.
func (s *Store) KeepForDeadLetters(sink deadletter.Sink) deadletter.Sink {
	return &keepImages{s: s, next: sink}
}

type keepImages struct {
	s    *Store
	next deadletter.Sink
}

// reasonUnauthenticated is the dead-letter reason of a task whose
// signature did not verify: anyone could have written its references, so
// nothing is copied or deleted for it.
const reasonUnauthenticated = "unauthenticated"

func (k *keepImages) Publish(ctx context.Context, rec deadletter.Record) error {
	if len(rec.Task) == 0 || !isRefTask(rec.Task) || rec.Reason == reasonUnauthenticated {
		return k.next.Publish(ctx, rec)
	}
	var t trigger.DeliveryTask
	if err := json.Unmarshal(rec.Task, &t); err != nil {
		return k.next.Publish(ctx, rec)
	}
	var copied []*trigger.ImageRef // task-bucket images now held by the copies
	for _, img := range []struct {
		which string
		ref   **trigger.ImageRef
	}{{"before", &t.BeforeRef}, {"after", &t.AfterRef}} {
		if *img.ref == nil {
			continue
		}
		orig := *img.ref
		c, err := k.s.copyToDeadLetters(ctx, orig, t.Tenant+"/"+string(rec.Stage)+"/"+rec.ID+"/"+img.which)
		switch {
		case errors.Is(err, ErrMissing), errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnknownBucket):
			rec.Detail += " (the " + img.which + " image is no longer stored: " + err.Error() + "; a redrive fails)"
		case err != nil:
			return err
		default:
			*img.ref = c
			if orig.Bucket == "" {
				copied = append(copied, orig)
			}
		}
	}
	b, err := t.Encode()
	if err != nil {
		return k.next.Publish(ctx, rec)
	}
	rec.Task = b
	if err := k.next.Publish(ctx, rec); err != nil {
		return err
	}
	if rec.Stage == deadletter.StageDelivery {
		// The worker verified the task and gave up on it: the dead
		// letter's copies replace its images. Other stages leave them
		// to the bucket's TTL, in case the task is still on its way.
		k.s.Release(copied...)
	}
	return nil
}

// DeletePurged deletes the dead-letter copies of the images that purged
// records referenced, from the bucket of deadLetterStream. It returns how
// many it deleted.
func DeletePurged(ctx context.Context, js jetstream.JetStream, deadLetterStream string, recs []deadletter.Record) (int, error) {
	var refs []*trigger.ImageRef
	for _, rec := range recs {
		refs = append(refs, deadLetterRefs(rec)...)
	}
	if len(refs) == 0 {
		return 0, nil
	}
	obs, err := openBucket(ctx, js, streams.ImageBucket(deadLetterStream))
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, ref := range refs {
		err := obs.remove(ctx, ref.Object)
		switch {
		case err == nil:
			n++
		case !errors.Is(err, jetstream.ErrObjectNotFound):
			errs = append(errs, fmt.Errorf("images: delete %q: %w", ref.Object, err))
		}
	}
	return n, errors.Join(errs...)
}

// deadLetterRefs returns the dead-letter copies a record's task
// references.
func deadLetterRefs(rec deadletter.Record) []*trigger.ImageRef {
	if len(rec.Task) == 0 || !isRefTask(rec.Task) {
		return nil
	}
	var t trigger.DeliveryTask
	if json.Unmarshal(rec.Task, &t) != nil {
		return nil
	}
	var refs []*trigger.ImageRef
	for _, r := range []*trigger.ImageRef{t.BeforeRef, t.AfterRef} {
		if r != nil && r.Bucket == DeadLetterBucket {
			refs = append(refs, r)
		}
	}
	return refs
}

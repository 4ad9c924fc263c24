package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/trigger"
)

// upload is one image to store before its task is published, and where
// it came from, so that a task Publish refuses gets its image back.
type upload struct {
	name string
	data []byte
	raw  *[]byte
	orig []byte
	ref  **trigger.ImageRef
}

// uploadTimeout bounds one attempt to store an image: an object of
// several MiB is many chunks, each acknowledged.
const uploadTimeout = 30 * time.Second

// claim moves task's images over the threshold out of the task: each is
// replaced by a reference to the object it will be stored as, and
// returned for upload. The digest is the one the task's signature
// covers, so a signed task stays valid.
func (p *Publisher) claim(task *trigger.DeliveryTask) []upload {
	if p.cfg.Images == nil || p.cfg.ImageThreshold == KeepImagesInline {
		return nil
	}
	var ups []upload
	for _, img := range []struct {
		which string
		raw   *[]byte
		ref   **trigger.ImageRef
	}{{"before", (*[]byte)(&task.Before), &task.BeforeRef}, {"after", (*[]byte)(&task.After), &task.AfterRef}} {
		if len(*img.raw) == 0 || len(*img.raw) <= p.cfg.ImageThreshold {
			continue
		}
		name := images.ObjectName(task, img.which)
		ref, canonical := images.Ref(name, *img.raw)
		ups = append(ups, upload{name: name, data: canonical, raw: img.raw, orig: *img.raw, ref: img.ref})
		*img.raw, *img.ref = nil, &ref
	}
	return ups
}

// unclaim puts the images of it back into its task, which Publish refused.
func unclaim(it *item) {
	for _, u := range it.uploads {
		*u.raw, *u.ref = u.orig, nil
	}
}

// reserveImages waits until the images of it fit the pending image budget.
func (p *Publisher) reserveImages(ctx context.Context, it *item) error {
	var n int64
	for _, u := range it.uploads {
		n += int64(len(u.data))
	}
	if n == 0 {
		return nil
	}
	// An image larger than the whole budget takes all of it.
	n = min(n, p.cfg.MaxPendingImageBytes)
	if err := p.images.Acquire(ctx, n); err != nil {
		return err
	}
	it.budget = n
	return nil
}

func (p *Publisher) releaseImages(it *item) {
	if it.budget > 0 {
		p.images.Release(it.budget)
		it.budget = 0
	}
	it.uploads = nil
}

// upload stores the images of it, retrying like a publish, before its task may
// be published: a task on the stream always finds its images.
func (p *Publisher) upload(it *item, timer *time.Timer) error {
	defer p.releaseImages(it)
	for i := range it.uploads {
		it.uploads[i].orig = nil // the task is accepted: keep no second copy
	}
	retry := p.retry()
	for attempt := 1; len(it.uploads) > 0; attempt++ {
		u := it.uploads[0]
		ctx, cancel := context.WithTimeout(p.ctx, uploadTimeout)
		err := p.cfg.Images.Put(ctx, u.name, u.data)
		cancel()
		if err == nil {
			it.uploads = it.uploads[1:]
			continue
		}
		if p.ctx.Err() != nil {
			return ErrClosed
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Error("NATS connection closed; document image not stored", "tenant", it.task.Tenant, "eventId", it.task.EventID, "error", err)
			return fmt.Errorf("%w: %w", ErrConnection, err)
		}
		p.m.failures.WithLabelValues(it.tenant, it.collection, it.hashed, "image-store").Inc()
		p.failing.Store(true)
		if suppressed, ok := p.failWarn.Allow(); ok {
			p.log.Warn("storing a document image failed; retrying with backoff",
				"tenant", it.task.Tenant, "collection", it.task.Collection, "eventId", it.task.EventID,
				"object", u.name, "bytes", len(u.data), "attempt", attempt, "error", err, "suppressedSinceLastLog", suppressed)
		}
		if !p.sleep(retry.Next(), timer) {
			return ErrClosed
		}
	}
	return nil
}

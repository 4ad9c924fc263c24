package images

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// bucket is an object store and the stream that holds it, which removal
// purges.
type bucket struct {
	jetstream.ObjectStore
	stream jetstream.Stream
	name   string
}

func openBucket(ctx context.Context, js jetstream.JetStream, name string) (*bucket, error) {
	obs, err := js.ObjectStore(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("images: open bucket %q: %w", name, err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+name)
	if err != nil {
		return nil, fmt.Errorf("images: look up the stream of bucket %q: %w", name, err)
	}
	return &bucket{ObjectStore: obs, stream: stream, name: name}, nil
}

// remove deletes the object name and leaves nothing behind.
// ObjectStore.Delete keeps a "deleted" marker on the object's meta
// subject until the bucket's TTL; every image has a name of its own, so
// those markers would pile up, two per delivered update, each on a
// subject of its own. It returns jetstream.ErrObjectNotFound for an
// object that is not there.
func (b *bucket) remove(ctx context.Context, name string) error {
	info, err := b.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil {
		return err
	}
	// Chunks first: a failure between the two purges leaves a meta
	// without chunks, which a later removal finds and clears, rather than
	// chunks no meta points at any more.
	if info.NUID != "" {
		if err := b.stream.Purge(ctx, jetstream.WithPurgeSubject("$O."+b.name+".C."+info.NUID)); err != nil {
			return fmt.Errorf("purge the chunks of %q: %w", name, err)
		}
	}
	meta := "$O." + b.name + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
	if err := b.stream.Purge(ctx, jetstream.WithPurgeSubject(meta)); err != nil {
		return fmt.Errorf("purge the meta of %q: %w", name, err)
	}
	if info.Deleted {
		// Only a marker was left: nothing to count.
		return jetstream.ErrObjectNotFound
	}
	return nil
}

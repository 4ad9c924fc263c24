package images

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// remove deletes the object name from bucket and leaves nothing behind.
// ObjectStore.Delete keeps a "deleted" marker on the object's meta
// subject until the bucket's TTL; every image has a name of its own, so
// those markers would pile up, two per delivered update, each on a
// subject of its own. It returns
// jetstream.ErrObjectNotFound for an object that is not there.
func remove(ctx context.Context, js jetstream.JetStream, obs jetstream.ObjectStore, bucket, name string) error {
	info, err := obs.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return fmt.Errorf("look up the stream of bucket %q: %w", bucket, err)
	}
	// Chunks first: a failure between the two purges leaves a meta
	// without chunks, which a later removal finds and clears, rather than
	// chunks no meta points at any more.
	if info.NUID != "" {
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject("$O."+bucket+".C."+info.NUID)); err != nil {
			return fmt.Errorf("purge the chunks of %q: %w", name, err)
		}
	}
	meta := "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(meta)); err != nil {
		return fmt.Errorf("purge the meta of %q: %w", name, err)
	}
	if info.Deleted {
		// Only a marker was left: nothing to count.
		return jetstream.ErrObjectNotFound
	}
	return nil
}

package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Read calls fn for up to limit messages of stream matching filter (0: all
// that are there now), oldest first, with an ephemeral ordered consumer:
// reading leaves no consumer behind and acknowledges nothing.
func Read(ctx context.Context, js jetstream.JetStream, stream, filter string, limit int, fn func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	remaining := int(info.NumPending)
	if limit > 0 && remaining > limit {
		remaining = limit
	}
	for remaining > 0 {
		batch, err := cons.Fetch(remaining, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := fn(m); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if n == 0 {
			break
		}
		remaining -= n
	}
	return nil
}

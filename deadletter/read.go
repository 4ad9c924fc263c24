package deadletter

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is a stored record and its sequence number in the dead-letter
// stream, which identifies it for show and redrive.
type Entry struct {
	Seq    uint64
	Record Record
}

// List returns up to limit records of the stream (0: all), oldest first,
// optionally of one tenant.
func List(ctx context.Context, js jetstream.JetStream, stream, tenant string, limit int) ([]Entry, error) {
	filter := stream + ".>"
	if tenant != "" {
		filter = Subject(stream, tenant, "*")
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("deadletter: read %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("deadletter: read %s: %w", stream, err)
	}
	remaining := int(info.NumPending)
	if limit > 0 && remaining > limit {
		remaining = limit
	}
	out := make([]Entry, 0, remaining)
	for remaining > 0 {
		batch, err := cons.Fetch(remaining, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("deadletter: read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			rec, err := Decode(m.Data())
			if err != nil {
				return nil, fmt.Errorf("record %d: %w", meta.Sequence.Stream, err)
			}
			out = append(out, Entry{Seq: meta.Sequence.Stream, Record: rec})
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("deadletter: read %s: %w", stream, err)
		}
		if n == 0 {
			break
		}
		remaining -= n
	}
	return out, nil
}

// Get returns the record stored at seq.
func Get(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) (Record, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: %s: %w", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: record %d: %w", seq, err)
	}
	return Decode(m.Data)
}

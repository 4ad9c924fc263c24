package deadletter

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
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
	var out []Entry
	err := streams.Read(ctx, js, stream, filter, limit, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		rec, err := Decode(m.Data())
		if err != nil {
			return fmt.Errorf("record %d: %w", meta.Sequence.Stream, err)
		}
		out = append(out, Entry{Seq: meta.Sequence.Stream, Record: rec})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deadletter: %w", err)
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

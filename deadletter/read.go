package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
)

// Entry is a stored record and its sequence number in the dead-letter
// stream, which identifies it for show, redrive and purge.
type Entry struct {
	Seq    uint64
	Record Record
}

// ErrNoRecord is returned for a sequence number the stream does not hold:
// never written, or already redriven or purged.
var ErrNoRecord = errors.New("deadletter: no such record")

// Filter selects records; the zero Filter selects every record.
type Filter struct {
	// Tenant is the record's tenant. "_" selects the records filed under
	// "_": those whose tenant is empty or not subject-safe.
	Tenant string
	// TriggerID and Reason are compared exactly.
	TriggerID string
	Reason    string
	// Since selects records made at or after it.
	Since time.Time
}

// IsZero reports whether f selects every record.
func (f Filter) IsZero() bool { return f == Filter{} }

// Match reports whether f selects r.
func (f Filter) Match(r Record) bool {
	switch {
	case f.Tenant != "" && r.Tenant != f.Tenant && !(f.Tenant == "_" && !trigger.IsToken(r.Tenant)):
		return false
	case f.TriggerID != "" && r.TriggerID != f.TriggerID:
		return false
	case f.Reason != "" && r.Reason != f.Reason:
		return false
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	}
	return true
}

// String lists the set conditions as the CLI names them,
// "tenant=acme reason-code=http-4xx", or "all".
func (f Filter) String() string {
	var parts []string
	for _, kv := range [][2]string{{"tenant", f.Tenant}, {"trigger", f.TriggerID}, {"reason-code", f.Reason}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

// List returns up to limit records of the stream (0: all), oldest first,
// optionally of one tenant.
func List(ctx context.Context, js jetstream.JetStream, stream, tenant string, limit int) ([]Entry, error) {
	return Find(ctx, js, stream, Filter{Tenant: tenant}, limit)
}

// errEnough stops a read once limit records matched.
var errEnough = errors.New("enough")

// Find returns up to limit records f selects (0: all), oldest first. The
// tenant narrows what is read; the other conditions are checked on each
// record.
func Find(ctx context.Context, js jetstream.JetStream, stream string, f Filter, limit int) ([]Entry, error) {
	filter := stream + ".>"
	if f.Tenant != "" {
		filter = Subject(stream, f.Tenant, "*")
	}
	// Without conditions beyond the subject, the read itself can stop at
	// limit; otherwise every record may have to be read to find limit.
	readLimit := 0
	if (Filter{Tenant: f.Tenant}) == f && (f.Tenant == "" || trigger.IsToken(f.Tenant)) {
		readLimit = limit
	}
	var out []Entry
	err := streams.Read(ctx, js, stream, filter, readLimit, func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		rec, err := Decode(m.Data())
		if err != nil {
			return fmt.Errorf("record %d: %w", meta.Sequence.Stream, err)
		}
		if !f.Match(rec) {
			return nil
		}
		out = append(out, Entry{Seq: meta.Sequence.Stream, Record: rec})
		if limit > 0 && len(out) >= limit {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
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
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Record{}, fmt.Errorf("%w: %s holds no record %d (redriven or purged already, or never written)", ErrNoRecord, stream, seq)
	}
	if err != nil {
		return Record{}, fmt.Errorf("deadletter: record %d: %w", seq, err)
	}
	return Decode(m.Data)
}

// Remove deletes the records at seqs, in order, and returns how many it
// removed before an error.
func Remove(ctx context.Context, js jetstream.JetStream, stream string, seqs []uint64) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("deadletter: %s: %w", stream, err)
	}
	for i, seq := range seqs {
		err := s.DeleteMsg(ctx, seq)
		if err == nil {
			continue
		}
		// The server answers a delete of a missing message with a generic
		// "deletion unsuccessful"; asking for the message tells the cases
		// apart.
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return i, fmt.Errorf("%w: %s holds no record %d (redriven or purged meanwhile?)", ErrNoRecord, stream, seq)
		}
		return i, fmt.Errorf("deadletter: remove record %d: %w", seq, err)
	}
	return len(seqs), nil
}

// PurgeThrough removes every record up to and including seq in one stream
// purge; records written after seq stay.
func PurgeThrough(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("deadletter: %s: %w", stream, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(seq+1)); err != nil {
		return fmt.Errorf("deadletter: purge %s through %d: %w", stream, seq, err)
	}
	return nil
}

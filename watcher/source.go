package watcher

import (
	"context"
	"encoding/json"
	"time"

	"github.com/triggerflow/triggerflow/trigger"
)

// Change is one committed document change as a Source reports it.
type Change struct {
	Tenant     string
	Collection string
	DocKey     string
	Type       trigger.EventType
	// Before is the document before the change; nil for a create, or when
	// the source cannot provide it (a PostgreSQL table without REPLICA
	// IDENTITY FULL).
	Before json.RawMessage
	// After is the document after the change; nil for a delete.
	After json.RawMessage
	// Position is the change's resume token: watching from it yields the
	// changes strictly after this one.
	Position string
	// CommitTime is when the change's transaction committed.
	CommitTime time.Time
	// Problem is set, instead of failing the stream, when the source read
	// the change but could not decode it (say a row whose data is not
	// JSON). The watcher dead-letters such a change with this reason and
	// moves on, so one bad row neither blocks nor vanishes.
	Problem string
}

// Source is a document change stream, the storage.Watch of the design.
//
// Positions of one source are totally ordered by byte-wise string
// comparison (sources zero-pad their numbers), so the watcher can compare
// checkpoints without knowing the source.
type Source interface {
	// Watch calls emit for each change committed after position after (""
	// means from the oldest change the source still holds), in commit
	// order, until ctx is done (returning ctx.Err()), emit returns an error
	// (returned as is), or the source fails. emit may block to apply
	// backpressure.
	Watch(ctx context.Context, after string, emit func(Change) error) error
	// Head returns the position of the newest committed change, or "" when
	// there is none; start-from-now begins there.
	Head(ctx context.Context) (string, error)
	// Confirm tells the source that every change up to and including pos
	// is checkpointed, so it may release what lies behind it (prune its
	// change log, advance a replication slot). The watcher never confirms
	// past its saved checkpoint.
	Confirm(ctx context.Context, pos string) error
	// Checkpoints returns the checkpoint store kept in the source's own
	// database, so a checkpoint commits where the data lives.
	Checkpoints() CheckpointStore
	// Close releases the source's connections.
	Close() error
}

// CheckpointStore persists resume positions under string keys such as
// "sys/checkpoints/trigger_evaluator/acme".
type CheckpointStore interface {
	// Load returns the saved position and whether one exists.
	Load(ctx context.Context, key string) (pos string, found bool, err error)
	// Save stores pos under key, replacing any earlier value.
	Save(ctx context.Context, key, pos string) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

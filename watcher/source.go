package watcher

import (
	"context"
	"encoding/json"
	"errors"
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
	// changes strictly after this one. It is in the source's canonical
	// form (see Source.ParsePosition).
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
// Positions of one source in canonical form are totally ordered by
// byte-wise string comparison (sources zero-pad their numbers), so the
// watcher can compare checkpoints without knowing the source. A source may
// accept other spellings (a number without its padding); every position
// that comes from outside, such as configuration, an operator or a stored
// checkpoint, goes through ParsePosition before it is compared.
type Source interface {
	// ParsePosition returns the canonical form of pos, "" staying "" (the
	// oldest change the source holds). A position the source cannot read
	// is refused with an error that wraps ErrInvalidPosition and names
	// the expected format. It does not consult the database: a
	// well-formed position may still lie past the newest change, which
	// Watch refuses.
	ParsePosition(pos string) (string, error)
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

// TenantConfirmer is implemented by a source that keeps history per tenant
// (the SQLite change log) and serves several tenants. A watcher confirms
// through it, naming the tenants it serves, so that another watcher's
// tenants keep their history. Other sources get Confirm.
type TenantConfirmer interface {
	ConfirmTenants(ctx context.Context, pos string, tenants []string) error
}

// CheckpointStore persists resume positions under string keys such as
// "sys/checkpoints/trigger_evaluator/acme".
type CheckpointStore interface {
	// Load returns the saved position and whether one exists.
	Load(ctx context.Context, key string) (pos string, found bool, err error)
	// List returns every saved position whose key starts with prefix.
	List(ctx context.Context, prefix string) (map[string]string, error)
	// Save stores pos under key, replacing any earlier value.
	Save(ctx context.Context, key, pos string) error
	// SaveAll stores every key's position in one transaction: a watcher
	// serving a thousand tenants saves a thousand keys at once.
	SaveAll(ctx context.Context, positions map[string]string) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// ErrInvalidPosition is wrapped by the errors of positions a source cannot
// read or will not start from. It has no "watcher:" prefix because sources
// wrap it in their own errors.
var ErrInvalidPosition = errors.New("invalid position")

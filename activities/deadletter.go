package activities

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/deadletter"
)

// TypeInvalidRecord is the failure type of a dead-letter record the
// publisher rejects as incomplete; retrying it cannot help.
const TypeInvalidRecord = "INVALID_DEAD_LETTER"

// DeadLetter records a delivery that failed for good. Publish errors are
// retryable: the workflow keeps the key waiting until the record is stored,
// because moving on would drop the event unrecorded.
func (a *Activities) DeadLetter(ctx context.Context, rec deadletter.Record) error {
	if err := a.dlq.Publish(ctx, rec); err != nil {
		if errors.Is(err, deadletter.ErrInvalidRecord) {
			return temporal.NewNonRetryableApplicationError(err.Error(), TypeInvalidRecord, nil)
		}
		return err
	}
	a.metrics.deadLetters.WithLabelValues(rec.Tenant, recordCollection(rec), rec.Reason).Inc()
	a.log.LogAttrs(ctx, slog.LevelWarn, "delivery dead-lettered",
		slog.String("tenant", rec.Tenant), slog.String("triggerId", rec.TriggerID),
		slog.String("collection", rec.Collection), slog.String("eventId", rec.EventID),
		slog.String("reason", rec.Reason), slog.String("detail", rec.Detail))
	return nil
}

// recordCollection is the collection label of a dead letter: the pattern of
// the trigger in the record's task (dead letters are rare, so decoding it
// costs nothing that matters), else the collection.
func recordCollection(rec deadletter.Record) string {
	var t struct {
		CollectionPattern string `json:"collectionPattern"`
	}
	if len(rec.Task) > 0 && json.Unmarshal(rec.Task, &t) == nil && t.CollectionPattern != "" {
		return t.CollectionPattern
	}
	return rec.Collection
}

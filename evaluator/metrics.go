package evaluator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

// unwatched is the collection label of events that no trigger's pattern
// matches.
const unwatched = "_unwatched"

type metrics struct {
	events      *prometheus.CounterVec // tenant, collection
	matches     *prometheus.CounterVec // tenant, collection, trigger
	errors      *prometheus.CounterVec // tenant, collection, trigger
	invalidDocs *prometheus.CounterVec // tenant, collection
}

// newMetrics registers the evaluator's collectors on reg. The collection
// label is always a trigger's collection pattern (or "_unwatched"), never a
// concrete collection path, so its values are bounded by the trigger set
// even when paths embed document ids ("chats/42/members").
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		events: r.CounterVec("triggerflow_evaluation_events_total",
			"Changes evaluated, by the collection pattern of the first trigger watching the collection (_unwatched when none does).",
			"tenant", "collection"),
		matches: r.CounterVec("triggerflow_evaluation_matches_total",
			"Changes a trigger matched: collection, event type and condition all held.",
			"tenant", "collection", "trigger"),
		errors: r.CounterVec("triggerflow_evaluation_errors_total",
			"Condition evaluations that failed at run time (missing field, type mismatch, cost limit); each counts as no match.",
			"tenant", "collection", "trigger"),
		invalidDocs: r.CounterVec("triggerflow_evaluation_invalid_documents_total",
			"Document images that are not a JSON object; conditions see them as an empty document.",
			"tenant", "collection"),
	}
	return m, r.Err()
}

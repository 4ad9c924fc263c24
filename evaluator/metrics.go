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
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_evaluation_events_total",
			Help: "Changes evaluated, by the collection pattern of the first trigger watching the collection (_unwatched when none does).",
		}, []string{"tenant", "collection"}),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_evaluation_matches_total",
			Help: "Changes a trigger matched: collection, event type and condition all held.",
		}, []string{"tenant", "collection", "trigger"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_evaluation_errors_total",
			Help: "Condition evaluations that failed at run time (missing field, type mismatch, cost limit); each counts as no match.",
		}, []string{"tenant", "collection", "trigger"}),
		invalidDocs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_evaluation_invalid_documents_total",
			Help: "Document images that are not a JSON object; conditions see them as an empty document.",
		}, []string{"tenant", "collection"}),
	}
	var err error
	if m.events, err = promreg.Register(reg, m.events); err != nil {
		return nil, err
	}
	if m.matches, err = promreg.Register(reg, m.matches); err != nil {
		return nil, err
	}
	if m.errors, err = promreg.Register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.invalidDocs, err = promreg.Register(reg, m.invalidDocs); err != nil {
		return nil, err
	}
	return m, nil
}

package pgsource

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

type metrics struct {
	reconnects   *prometheus.CounterVec
	events       *prometheus.CounterVec
	problems     *prometheus.CounterVec
	unattributed *prometheus.CounterVec
}

// newMetrics registers on reg, sharing the collectors when another Source
// (another tenant) registered them already.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_pgsource_reconnects_total",
			Help: "Replication connections re-established after a failure.",
		}, []string{"tenant"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_pgsource_events_total",
			Help: "Row changes decoded and emitted, problems included.",
		}, []string{"tenant", "collection"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_pgsource_decode_problems_total",
			Help: "Changes emitted as problems: undecodable rows, tables without a key, truncates.",
		}, []string{"tenant", "collection"}),
		unattributed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_pgsource_unattributed_deletes_total",
			Help: "Deletes not reported because the old row lacks the tenant column (no REPLICA IDENTITY FULL).",
		}, []string{"tenant", "collection"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.reconnects, &m.events, &m.problems, &m.unattributed} {
		var err error
		if *c, err = promreg.Register(reg, *c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

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

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		reconnects: r.CounterVec("triggerflow_pgsource_reconnects_total",
			"Replication connections re-established after a failure.",
			"tenant"),
		events: r.CounterVec("triggerflow_pgsource_events_total",
			"Row changes decoded and emitted, problems included.",
			"tenant", "collection"),
		problems: r.CounterVec("triggerflow_pgsource_decode_problems_total",
			"Changes emitted as problems: undecodable rows, tables without a key, truncates.",
			"tenant", "collection"),
		unattributed: r.CounterVec("triggerflow_pgsource_unattributed_deletes_total",
			"Deletes not reported because the old row lacks the tenant column (no REPLICA IDENTITY FULL).",
			"tenant", "collection"),
	}
	return m, r.Err()
}

package pgsource

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

// metrics are labelled with the source's tenant in single-tenant mode. In
// multi-tenant mode events and problems carry the row's tenant (through
// Config.TenantLabels); reconnects and unattributed changes belong to no
// tenant and carry "".
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
			"Row changes not reported because their tenant is unknown: deletes whose old row lacks the tenant column (no REPLICA IDENTITY FULL); in multi-tenant mode also rows whose tenant column is NULL or empty, and truncates.",
			"tenant", "collection"),
	}
	return m, r.Err()
}

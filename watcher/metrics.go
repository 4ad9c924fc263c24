package watcher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
	"github.com/triggerflow/triggerflow/tenantlabel"
)

type metrics struct {
	read             *prometheus.CounterVec
	skipped          *prometheus.CounterVec
	lag              *prometheus.GaugeVec
	sourceErrors     *prometheus.CounterVec
	checkpointSaves  *prometheus.CounterVec
	checkpointErrors *prometheus.CounterVec
	resets           *prometheus.CounterVec
	startFromNow     *prometheus.CounterVec
	// tenant is the label value of a tenant under the cardinality guard.
	tenant func(string) string
}

func newMetrics(reg prometheus.Registerer, guard *tenantlabel.Guard) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		tenant: guard.Label,
		read: r.CounterVec("triggerflow_watcher_events_read_total",
			"Changes read from the source and handed to the evaluator.",
			"tenant"),
		skipped: r.CounterVec("triggerflow_watcher_events_skipped_total",
			"Changes skipped by the tenant scope or include/exclude filters.",
			"tenant"),
		lag: r.GaugeVec("triggerflow_watcher_lag_seconds",
			"Time between the last read change's commit and its reading.",
			"tenant"),
		sourceErrors: r.CounterVec("triggerflow_watcher_source_errors_total",
			"Source failures that made the watcher reconnect.",
			"tenant"),
		checkpointSaves: r.CounterVec("triggerflow_checkpoint_saves_total",
			"Checkpoint saves.",
			"tenant"),
		checkpointErrors: r.CounterVec("triggerflow_checkpoint_save_errors_total",
			"Failed checkpoint saves (retried).",
			"tenant"),
		resets: r.CounterVec("triggerflow_checkpoint_resets_total",
			"Checkpoints replaced by an operator resume token or re-seeded after a filter change.",
			"tenant", "kind"),
		startFromNow: r.CounterVec("triggerflow_checkpoint_start_from_now_total",
			"Times a tenant without a checkpoint started from the source head.",
			"tenant"),
	}
	return m, r.Err()
}

package watcher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_watcher_events_read_total",
			Help: "Changes read from the source and handed to the evaluator.",
		}, []string{"tenant"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_watcher_events_skipped_total",
			Help: "Changes skipped by the tenant scope or include/exclude filters.",
		}, []string{"tenant"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "triggerflow_watcher_lag_seconds",
			Help: "Time between the last read change's commit and its reading.",
		}, []string{"tenant"}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_watcher_source_errors_total",
			Help: "Source failures that made the watcher reconnect.",
		}, []string{"tenant"}),
		checkpointSaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_checkpoint_saves_total",
			Help: "Checkpoint saves.",
		}, []string{"tenant"}),
		checkpointErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_checkpoint_save_errors_total",
			Help: "Failed checkpoint saves (retried).",
		}, []string{"tenant"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_checkpoint_resets_total",
			Help: "Checkpoints replaced by an operator resume token or re-seeded after a filter change.",
		}, []string{"tenant", "kind"}),
		startFromNow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_checkpoint_start_from_now_total",
			Help: "Times a tenant without a checkpoint started from the source head.",
		}, []string{"tenant"}),
	}
	if reg == nil {
		return m, nil
	}
	// Watchers of several tenants may share one registry: the second one
	// adopts the vectors the first registered (their tenant labels differ).
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		c, err = promreg.Register(reg, c)
		return c
	}
	m.read = reg1(m.read).(*prometheus.CounterVec)
	m.skipped = reg1(m.skipped).(*prometheus.CounterVec)
	m.lag = reg1(m.lag).(*prometheus.GaugeVec)
	m.sourceErrors = reg1(m.sourceErrors).(*prometheus.CounterVec)
	m.checkpointSaves = reg1(m.checkpointSaves).(*prometheus.CounterVec)
	m.checkpointErrors = reg1(m.checkpointErrors).(*prometheus.CounterVec)
	m.resets = reg1(m.resets).(*prometheus.CounterVec)
	m.startFromNow = reg1(m.startFromNow).(*prometheus.CounterVec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

package watcher

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	// reuses the vectors the first registered (their tenant labels differ).
	var err error
	register := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		if rerr := reg.Register(c); rerr != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(rerr, &are) {
				return are.ExistingCollector
			}
			err = rerr
		}
		return c
	}
	m.read = register(m.read).(*prometheus.CounterVec)
	m.skipped = register(m.skipped).(*prometheus.CounterVec)
	m.lag = register(m.lag).(*prometheus.GaugeVec)
	m.sourceErrors = register(m.sourceErrors).(*prometheus.CounterVec)
	m.checkpointSaves = register(m.checkpointSaves).(*prometheus.CounterVec)
	m.checkpointErrors = register(m.checkpointErrors).(*prometheus.CounterVec)
	m.resets = register(m.resets).(*prometheus.CounterVec)
	m.startFromNow = register(m.startFromNow).(*prometheus.CounterVec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

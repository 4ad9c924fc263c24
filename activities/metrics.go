package activities

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

type metrics struct {
	attempts    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	tasks       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lag         *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec
}

// Every attempt ends as exactly one of: a retry (a failure another attempt
// follows), or a task finished (delivered, or failed for good). So
// attempts = retries + tasks, by tenant.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_webhook_attempts_total",
			Help: "Webhook POST attempts by outcome: success or the failure type (HTTP_4XX, HTTP_5XX, NETWORK, …).",
		}, []string{"tenant", "collection", "subject_hashed", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_webhook_retries_total",
			Help: "Failed webhook attempts that another attempt of the same task follows, by the failure type that caused the retry.",
		}, []string{"tenant", "outcome"}),
		// Counted once per task rather than per attempt, so that its
		// subject_hashed split is the hash path's share of the tasks, which
		// retries would otherwise skew.
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_delivery_tasks_total",
			Help: "Delivery tasks the worker finished: delivered, or failed for good. subject_hashed=\"true\" over all is the hash path's share.",
		}, []string{"tenant", "collection", "subject_hashed"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "triggerflow_webhook_attempt_duration_seconds",
			Help:    "Time from sending a webhook POST to reading its response, for attempts that got one.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"tenant", "collection"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "triggerflow_delivery_lag_seconds",
			Help:    "Time from a change's commit to its successful delivery.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 18),
		}, []string{"tenant", "collection", "subject_hashed"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_delivery_dead_letters_total",
			Help: "Deliveries that failed for good and were recorded on the dead-letter stream, by reason.",
		}, []string{"tenant", "collection", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.attempts, err = promreg.Register(reg, m.attempts); err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.tasks, err = promreg.Register(reg, m.tasks); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.lag, err = promreg.Register(reg, m.lag); err != nil {
		return nil, err
	}
	if m.deadLetters, err = promreg.Register(reg, m.deadLetters); err != nil {
		return nil, err
	}
	return m, nil
}

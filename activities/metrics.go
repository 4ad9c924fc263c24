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
	replayed    *prometheus.CounterVec
}

// Every attempt ends as exactly one of: a retry (a failure another attempt
// follows), or a task finished (delivered, or failed for good). So
// attempts = retries + tasks, by tenant.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		attempts: r.CounterVec("triggerflow_webhook_attempts_total",
			"Webhook POST attempts by outcome: success or the failure type (HTTP_4XX, HTTP_5XX, NETWORK, …).",
			"tenant", "collection", "subject_hashed", "outcome"),
		retries: r.CounterVec("triggerflow_webhook_retries_total",
			"Failed webhook attempts that another attempt of the same task follows, by the failure type that caused the retry.",
			"tenant", "outcome"),
		// Counted once per task rather than per attempt, so that its
		// subject_hashed split is the hash path's share of the tasks, which
		// retries would otherwise skew.
		tasks: r.CounterVec("triggerflow_delivery_tasks_total",
			"Delivery tasks the worker finished: delivered, or failed for good. subject_hashed=\"true\" over all is the hash path's share.",
			"tenant", "collection", "subject_hashed"),
		duration: r.HistogramVec("triggerflow_webhook_attempt_duration_seconds",
			"Time from sending a webhook POST to reading its response, for attempts that got one.",
			prometheus.ExponentialBuckets(0.005, 2, 14),
			"tenant", "collection"),
		lag: r.HistogramVec("triggerflow_delivery_lag_seconds",
			"Time from a change's commit to its successful delivery.",
			prometheus.ExponentialBuckets(0.01, 2, 18),
			"tenant", "collection", "subject_hashed"),
		deadLetters: r.CounterVec("triggerflow_delivery_dead_letters_total",
			"Deliveries that failed for good and were recorded on the dead-letter stream, by reason.",
			"tenant", "collection", "reason"),
		replayed: r.CounterVec("triggerflow_webhook_local_replays_total",
			"Local delivery activities Temporal ran again after their workflow task was refused, answered from the worker's memory instead of posting again.",
			"tenant"),
	}
	return m, r.Err()
}

package publisher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

type metrics struct {
	published   *prometheus.CounterVec // tenant, collection, subject_hashed
	duplicates  *prometheus.CounterVec // tenant, collection, subject_hashed
	failures    *prometheus.CounterVec // tenant, collection, subject_hashed, reason
	hashed      *prometheus.CounterVec // tenant, collection
	deadLetters *prometheus.CounterVec // tenant, collection, reason
	latency     *prometheus.HistogramVec
	pending     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		published: r.CounterVec("triggerflow_publisher_published_total",
			"Delivery tasks JetStream acknowledged (stored, or already stored and dropped as duplicates).",
			"tenant", "collection", "subject_hashed"),
		duplicates: r.CounterVec("triggerflow_publisher_duplicates_total",
			"Acknowledged tasks the stream had already stored under the same event id (a republish after a crash or a retry).",
			"tenant", "collection", "subject_hashed"),
		failures: r.CounterVec("triggerflow_publisher_publish_failures_total",
			"Publish attempts that failed or got no ack in time; each is retried, never skipped.",
			"tenant", "collection", "subject_hashed", "reason"),
		hashed: r.CounterVec("triggerflow_publisher_hashed_subjects_total",
			"Tasks whose docKey subject token was replaced by a hash to keep the subject within 1024 bytes.",
			"tenant", "collection"),
		deadLetters: r.CounterVec("triggerflow_publisher_dead_lettered_total",
			"Tasks recorded on the dead-letter stream instead of the task stream, by reason.",
			"tenant", "collection", "reason"),
		latency: r.HistogramVec("triggerflow_publisher_publish_duration_seconds",
			"Time from Publish accepting a task to its JetStream ack, including waiting behind earlier tasks of the same subject and retries.",
			// 250µs … ~65s: local acks are sub-millisecond, an outage
			// rides retries for seconds to minutes.
			prometheus.ExponentialBuckets(0.00025, 4, 10),
			"tenant", "collection", "subject_hashed"),
		pending: r.Gauge("triggerflow_publisher_pending",
			"Tasks accepted by Publish and not yet acknowledged or dead-lettered."),
	}
	return m, r.Err()
}

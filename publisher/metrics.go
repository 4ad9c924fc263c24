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
	base := []string{"tenant", "collection", "subject_hashed"}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_publisher_published_total",
			Help: "Delivery tasks JetStream acknowledged (stored, or already stored and dropped as duplicates).",
		}, base),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_publisher_duplicates_total",
			Help: "Acknowledged tasks the stream had already stored under the same event id (a republish after a crash or a retry).",
		}, base),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_publisher_publish_failures_total",
			Help: "Publish attempts that failed or got no ack in time; each is retried, never skipped.",
		}, append(base, "reason")),
		hashed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_publisher_hashed_subjects_total",
			Help: "Tasks whose docKey subject token was replaced by a hash to keep the subject within 1024 bytes.",
		}, []string{"tenant", "collection"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triggerflow_publisher_dead_lettered_total",
			Help: "Tasks recorded on the dead-letter stream instead of the task stream, by reason.",
		}, []string{"tenant", "collection", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "triggerflow_publisher_publish_duration_seconds",
			Help: "Time from Publish accepting a task to its JetStream ack, including waiting behind earlier tasks of the same subject and retries.",
			// 250µs … ~65s: local acks are sub-millisecond, an outage
			// rides retries for seconds to minutes.
			Buckets: prometheus.ExponentialBuckets(0.00025, 4, 10),
		}, base),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "triggerflow_publisher_pending",
			Help: "Tasks accepted by Publish and not yet acknowledged or dead-lettered.",
		}),
	}
	var err error
	if m.published, err = promreg.Register(reg, m.published); err != nil {
		return nil, err
	}
	if m.duplicates, err = promreg.Register(reg, m.duplicates); err != nil {
		return nil, err
	}
	if m.failures, err = promreg.Register(reg, m.failures); err != nil {
		return nil, err
	}
	if m.hashed, err = promreg.Register(reg, m.hashed); err != nil {
		return nil, err
	}
	if m.deadLetters, err = promreg.Register(reg, m.deadLetters); err != nil {
		return nil, err
	}
	if m.latency, err = promreg.Register(reg, m.latency); err != nil {
		return nil, err
	}
	if m.pending, err = promreg.Register(reg, m.pending); err != nil {
		return nil, err
	}
	return m, nil
}

package ingest

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

// Label values used when a message has no trustworthy tenant or
// collection: its payload did not decode or did not match its subject, so
// anything it claims could be arbitrary and must not become a label.
const invalidLabel = "_invalid"

// metrics are ingest's Prometheus series. Task labels are tenant,
// collection and subject_hashed, taken only from tasks whose payload
// decoded and matched their subject, so their cardinality is that of the
// configured triggers. The share of hashed subjects is
//
//	sum(rate(triggerflow_ingest_consumed_total{subject_hashed="true"}[5m]))
//	  / sum(rate(triggerflow_ingest_consumed_total[5m]))
type metrics struct {
	consumed      *prometheus.CounterVec
	redelivered   *prometheus.CounterVec
	signalled     *prometheus.CounterVec
	started       *prometheus.CounterVec
	startRefused  *prometheus.CounterVec
	acked         *prometheus.CounterVec
	naked         *prometheus.CounterVec
	terminated    *prometheus.CounterVec // + reason
	handoffErrors *prometheus.CounterVec // + code
	collisions    *prometheus.CounterVec // + policy
	handoff       *prometheus.HistogramVec
	laneDepth     *prometheus.GaugeVec   // lane
	takeovers     *prometheus.CounterVec // outcome
	dropped       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	task := func(extra ...string) []string {
		return append([]string{"tenant", "collection", "subject_hashed"}, extra...)
	}
	r := promreg.New(reg)
	m := &metrics{
		consumed: r.CounterVec("triggerflow_ingest_consumed_total",
			"Messages received from the task stream, redeliveries included.", task()...),
		redelivered: r.CounterVec("triggerflow_ingest_redelivered_total",
			"Messages received that JetStream had delivered before.", task()...),
		signalled: r.CounterVec("triggerflow_ingest_signalled_total",
			"Tasks Temporal accepted: signalled (Signal-With-Start), or as a new run's input.", task()...),
		started: r.CounterVec("triggerflow_ingest_started_total",
			"Tasks Temporal accepted as a new run's input (a key quiet longer than the signal window); counted in signalled_total too.", task()...),
		startRefused: r.CounterVec("triggerflow_ingest_start_refused_total",
			"Starts Temporal refused because the key's run was open; their tasks were signalled instead.", task()...),
		acked: r.CounterVec("triggerflow_ingest_acked_total",
			"Messages acked after their task reached Temporal.", task()...),
		naked: r.CounterVec("triggerflow_ingest_naked_total",
			"Messages handed back to JetStream (shutdown) for redelivery.", task()...),
		terminated: r.CounterVec("triggerflow_ingest_terminated_total",
			"Messages dead-lettered and terminated, by reason.", task("reason")...),
		handoffErrors: r.CounterVec("triggerflow_ingest_handoff_errors_total",
			"Failed hand-off attempts, by gRPC code; transient ones are retried in place.", task("code")...),
		collisions: r.CounterVec("triggerflow_ingest_collisions_total",
			"Hashed subjects seen with a docKey other than the one last seen on them.",
			"tenant", "collection", "policy"),
		handoff: r.HistogramVec("triggerflow_ingest_handoff_seconds",
			"Time from receiving a message to acking it, queueing and retries included.",
			prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~2.5min
			task()...),
		laneDepth: r.GaugeVec("triggerflow_ingest_lane_depth",
			"Messages held by a lane, the one being handed off included; lane \"dead-letter\" holds poison.",
			"lane"),
		dropped: r.CounterVec("triggerflow_ingest_delivered_before_total",
			"Tasks handed to ingest again (redelivered, or replayed by a takeover) that the key's closed run had already delivered: acked without a hand-off.", task()...),
		takeovers: r.CounterVec("triggerflow_ingest_takeovers_total",
			"Checks of the pinned replica by a replica not holding the pin while tasks wait, by outcome: taken, holder-alive, holder-unproven, replay-too-long, failed.",
			"outcome"),
	}
	return m, r.Err()
}

// labels are an item's task label values.
type labels struct{ tenant, collection, hashed string }

func (l labels) values(extra ...string) []string {
	return append([]string{l.tenant, l.collection, l.hashed}, extra...)
}

var invalidLabels = labels{invalidLabel, invalidLabel, "false"}

func laneLabel(i int) string { return strconv.Itoa(i) }

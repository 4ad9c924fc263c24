package ingest

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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
	acked         *prometheus.CounterVec
	naked         *prometheus.CounterVec
	terminated    *prometheus.CounterVec // + reason
	handoffErrors *prometheus.CounterVec // + code
	collisions    *prometheus.CounterVec // + policy
	handoff       *prometheus.HistogramVec
	laneDepth     *prometheus.GaugeVec   // lane
	takeovers     *prometheus.CounterVec // outcome
}

var taskLabels = []string{"tenant", "collection", "subject_hashed"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "triggerflow", Subsystem: "ingest", Name: name, Help: help,
		}, append(append([]string(nil), taskLabels...), extra...))
	}
	m := &metrics{
		consumed:    counter("consumed_total", "Messages received from the task stream, redeliveries included."),
		redelivered: counter("redelivered_total", "Messages received that JetStream had delivered before."),
		signalled:   counter("signalled_total", "Tasks Temporal accepted with SignalWithStartWorkflow."),
		acked:       counter("acked_total", "Messages acked after their task reached Temporal."),
		naked:       counter("naked_total", "Messages handed back to JetStream (shutdown) for redelivery."),
		terminated: counter("terminated_total",
			"Messages dead-lettered and terminated, by reason.", "reason"),
		handoffErrors: counter("handoff_errors_total",
			"Failed SignalWithStartWorkflow attempts, by gRPC code; transient ones are retried in place.", "code"),
		collisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "triggerflow", Subsystem: "ingest", Name: "collisions_total",
			Help: "Hashed subjects seen with a docKey other than the one last seen on them.",
		}, []string{"tenant", "collection", "policy"}),
		handoff: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "triggerflow", Subsystem: "ingest", Name: "handoff_seconds",
			Help:    "Time from receiving a message to acking it, queueing and retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~2.5min
		}, taskLabels),
		laneDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "triggerflow", Subsystem: "ingest", Name: "lane_depth",
			Help: "Messages held by a lane, the one being handed off included; lane \"dead-letter\" holds poison.",
		}, []string{"lane"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "triggerflow", Subsystem: "ingest", Name: "takeovers_total",
			Help: "Checks of the pinned replica by a replica not holding the pin while tasks wait, by outcome: taken, holder-alive, holder-unproven, replay-too-long, failed.",
		}, []string{"outcome"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{
		m.consumed, m.redelivered, m.signalled, m.acked, m.naked, m.terminated,
		m.handoffErrors, m.collisions, m.handoff, m.laneDepth, m.takeovers,
	} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}

// labels are an item's task label values.
type labels struct{ tenant, collection, hashed string }

func (l labels) values(extra ...string) []string {
	return append([]string{l.tenant, l.collection, l.hashed}, extra...)
}

var invalidLabels = labels{invalidLabel, invalidLabel, "false"}

func laneLabel(i int) string { return strconv.Itoa(i) }

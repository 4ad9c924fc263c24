// Package promreg is how every component registers its Prometheus
// collectors, so that two rules hold everywhere.
//
// A nil Registerer registers nothing: the collectors still count, and
// nobody scrapes them. Tests and embedders that do not serve /metrics need
// not make a registry.
//
// Several instances of a component (one per tenant engine, or the three
// services of the dev process) can share one registry and count into the
// same series: a collector identical to one already registered is not an
// error, the registered one is adopted and the instances tell their series
// apart by label values (the tenant).
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg, or returns the identical collector already
// registered there.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Set builds a component's collectors and registers each as it is built,
// keeping the first error, so that a constructor lists its metrics as one
// literal and checks Err once. Names are the full metric names, as
// docs/metrics.md and the dashboards spell them.
type Set struct {
	reg prometheus.Registerer
	err error
}

// New returns a Set that registers on reg.
func New(reg prometheus.Registerer) *Set { return &Set{reg: reg} }

// Err is the first registration error. The collectors built after it are
// not registered, so a component must not start when Err is not nil.
func (s *Set) Err() error { return s.err }

// CounterVec is a counter partitioned by labels.
func (s *Set) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return add(s, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

// GaugeVec is a gauge partitioned by labels.
func (s *Set) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return add(s, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

// HistogramVec is a histogram with the given bucket upper bounds,
// partitioned by labels.
func (s *Set) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return add(s, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

// Gauge is a gauge without labels.
func (s *Set) Gauge(name, help string) prometheus.Gauge {
	return add(s, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

// Counter is a counter without labels.
func (s *Set) Counter(name, help string) prometheus.Counter {
	return add(s, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// Collector registers a collector built elsewhere (one computed at scrape
// time).
func (s *Set) Collector(c prometheus.Collector) { add(s, c) }

func add[C prometheus.Collector](s *Set, c C) C {
	if s.err == nil {
		c, s.err = Register(s.reg, c)
	}
	return c
}

package promreg_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/promreg"
)

func TestRegisterAdoptsTheExistingCollector(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "triggerflow_x_total", Help: "x"}
	a, err := promreg.Register(reg, prometheus.NewCounterVec(opts, []string{"tenant"}))
	require.NoError(t, err)
	b, err := promreg.Register(reg, prometheus.NewCounterVec(opts, []string{"tenant"}))
	require.NoError(t, err)
	require.Same(t, a, b)

	_, err = promreg.Register(reg, prometheus.NewCounterVec(opts, []string{"other"}))
	require.Error(t, err, "a different shape under the same name is still an error")

	c, err := promreg.Register[*prometheus.CounterVec](nil, prometheus.NewCounterVec(opts, []string{"tenant"}))
	require.NoError(t, err)
	require.NotNil(t, c)
}

func TestSetSharesARegistryAndKeepsTheFirstError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	build := func(reg prometheus.Registerer) (*prometheus.CounterVec, *prometheus.HistogramVec, prometheus.Gauge, error) {
		s := promreg.New(reg)
		c := s.CounterVec("triggerflow_x_total", "x", "tenant")
		h := s.HistogramVec("triggerflow_x_seconds", "x", []float64{1, 2}, "tenant")
		g := s.Gauge("triggerflow_x", "x")
		return c, h, g, s.Err()
	}
	c1, h1, g1, err := build(reg)
	require.NoError(t, err)
	c2, h2, g2, err := build(reg)
	require.NoError(t, err, "a second instance adopts the first one's collectors")
	require.Same(t, c1, c2)
	require.Same(t, h1, h2)
	require.Same(t, g1, g2)

	_, _, _, err = build(nil)
	require.NoError(t, err, "nil registers nothing")

	s := promreg.New(reg)
	s.GaugeVec("triggerflow_x_total", "x", "tenant")
	require.Error(t, s.Err(), "a different shape under the same name")
	s.GaugeVec("triggerflow_y", "y", "tenant")
	require.Error(t, s.Err())
	require.NoError(t, reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "triggerflow_y", Help: "y"})),
		"nothing is registered after the first error")
}

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

package testenv_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	calls := 0
	testenv.Eventually(t, time.Minute, "the third call", func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	require.Equal(t, 3, calls, "no call after the condition held")
}

// TestEventuallyReportsTheLastError: on timeout the test ends, naming what
// it waited for and how far the condition got.
func TestEventuallyReportsTheLastError(t *testing.T) {
	t.Parallel()
	calls := 0
	o := runHelper(func(tb testing.TB) {
		testenv.Eventually(tb, 50*time.Millisecond, "the replica", func() error {
			calls++
			return fmt.Errorf("%d tasks held", calls)
		})
	})
	require.False(t, o.returned, "the test ends on timeout")
	require.Len(t, o.fatals, 1)
	require.Contains(t, o.fatals[0], "the replica")
	require.Contains(t, o.fatals[0], fmt.Sprintf(": %d tasks held", calls), "the last error, not an earlier one")
	require.Greater(t, calls, 1, "polled until the deadline")
}

// TestEventuallyChecksAtLeastOnce: even with no time to wait, a condition
// that already holds passes and one that does not fails at once.
func TestEventuallyChecksAtLeastOnce(t *testing.T) {
	t.Parallel()
	calls := 0
	testenv.Eventually(t, 0, "a held condition", func() error { calls++; return nil })
	require.Equal(t, 1, calls)

	o := runHelper(func(tb testing.TB) {
		testenv.Eventually(tb, 0, "an unheld condition", func() error { calls++; return errors.New("no") })
	})
	require.Equal(t, 2, calls)
	require.Len(t, o.fatals, 1)
}

// metricsRegistry holds one metric of each kind, labelled like the
// services' metrics.
func metricsRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "attempts_total", Help: "h"}, []string{"tenant", "outcome"})
	attempts.WithLabelValues("acme", "success").Add(3)
	attempts.WithLabelValues("acme", "HTTP_5XX").Add(2)
	attempts.WithLabelValues("other", "success").Add(7)
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pending", Help: "h", ConstLabels: prometheus.Labels{"tenant": "acme"}})
	pending.Set(4)
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "latency_seconds", Help: "h"}, []string{"tenant"})
	latency.WithLabelValues("acme").Observe(0.1)
	latency.WithLabelValues("acme").Observe(0.2)
	sizes := prometheus.NewSummary(prometheus.SummaryOpts{Name: "size_bytes", Help: "h"})
	sizes.Observe(10)
	never := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "never_total", Help: "h"}, []string{"tenant"})
	reg.MustRegister(attempts, pending, latency, sizes, never)
	return reg
}

var metricCases = []struct {
	name   string
	labels prometheus.Labels
	want   float64
}{
	{"attempts_total", prometheus.Labels{"tenant": "acme", "outcome": "success"}, 3},
	{"attempts_total", prometheus.Labels{"tenant": "acme"}, 5},
	{"attempts_total", prometheus.Labels{"outcome": "success"}, 10},
	{"attempts_total", nil, 12},
	{"attempts_total", prometheus.Labels{"tenant": "nobody"}, 0},
	{"attempts_total", prometheus.Labels{"region": ""}, 0}, // a label the series lack never matches
	{"pending", nil, 4},
	{"latency_seconds", prometheus.Labels{"tenant": "acme"}, 2},
	{"size_bytes", nil, 1},
	{"never_total", nil, 0},
	{"no_such_metric", nil, 0},
}

func TestMetric(t *testing.T) {
	t.Parallel()
	reg := metricsRegistry(t)
	for _, c := range metricCases {
		require.Equal(t, c.want, testenv.Metric(t, reg, c.name, c.labels), "%s%v", c.name, c.labels)
	}
}

// TestMetricOfScrapedText: a /metrics body reads as its registry does.
func TestMetricOfScrapedText(t *testing.T) {
	t.Parallel()
	mfs, err := metricsRegistry(t).Gather()
	require.NoError(t, err)
	var body bytes.Buffer
	enc := expfmt.NewEncoder(&body, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		require.NoError(t, enc.Encode(mf))
	}
	scraped := testenv.ParseMetrics(t, body.Bytes())
	for _, c := range metricCases {
		require.Equal(t, c.want, testenv.Metric(t, scraped, c.name, c.labels), "%s%v", c.name, c.labels)
	}
	gathered, err := scraped.Gather()
	require.NoError(t, err)
	require.Len(t, gathered, len(mfs))
	for i := range mfs {
		require.Equal(t, mfs[i].GetName(), gathered[i].GetName(), "sorted by name, as a registry gathers")
	}
}

func TestLogBufferTakesConcurrentWrites(t *testing.T) {
	t.Parallel()
	var b testenv.LogBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	require.Equal(t, strings.Repeat("line\n", 800), b.String())
}

// TestLogWriterOutlivesItsTest: a library goroutine may log after the test
// has completed, when t.Log would panic; the write is dropped instead.
func TestLogWriterOutlivesItsTest(t *testing.T) {
	t.Parallel()
	var w io.Writer
	t.Run("inner", func(t *testing.T) {
		w = testenv.LogWriter(t)
		_, err := w.Write([]byte("logged\n"))
		require.NoError(t, err)
	})
	n, err := w.Write([]byte("after the test\n"))
	require.NoError(t, err)
	require.Equal(t, len("after the test\n"), n)
}

package testenv

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric sums the samples of the family name in g whose labels include
// every one of labels (nil matches all): a counter's, gauge's or untyped
// metric's value, a histogram's or summary's sample count. Summing lets a
// test leave out labels it does not care about. No matching sample sums
// to 0, as a labelled counter reads before its first increment.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels prometheus.Labels) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("testenv: gathering metrics: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				sum += value(m)
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want prometheus.Labels) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.GetSummary() != nil:
		return float64(m.GetSummary().GetSampleCount())
	default:
		return m.GetUntyped().GetValue()
	}
}

// Scraped is the metric families of a text exposition, such as a service's
// /metrics body, by name. It is a prometheus.Gatherer, so Metric reads it
// as it reads a registry.
type Scraped map[string]*dto.MetricFamily

// ParseMetrics parses a body in the Prometheus text exposition format.
func ParseMetrics(t testing.TB, body []byte) Scraped {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("testenv: parsing metrics: %v", err)
	}
	return mfs
}

// Gather returns the families sorted by name, as a registry does.
func (s Scraped) Gather() ([]*dto.MetricFamily, error) {
	return slices.SortedFunc(maps.Values(s), func(a, b *dto.MetricFamily) int {
		return strings.Compare(a.GetName(), b.GetName())
	}), nil
}

package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

// scrape parses a service's /metrics.
func (s *stack) scrape(t *testing.T, svc string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := s.ops(t, svc, "/metrics")
	require.Equal(t, http.StatusOK, code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	return mfs
}

// sample returns the value of the family's sample whose labels include
// want (a counter's value, or a histogram's count), and whether one exists.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	total, found := 0.0, false
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total, found
}

// TestMetricsMoveAsExpected runs changes through the whole pipeline and
// checks the documented metrics moved, with the documented labels: a hashed
// docKey counts once on the hash path with subject_hashed="true", in the
// watcher and in the worker, a 500 then 200 counts one retry, and the
// end-to-end latency histogram counts exactly the deliveries. The worker's
// requests go through the transport wrapper the stack injects.
func TestMetricsMoveAsExpected(t *testing.T) {
	s := runStack(t)
	var mu sync.Mutex
	seen := map[string]int{}
	s.rec.Respond(func(r *testenv.Request) testenv.Response {
		var body struct{ Data struct{ DocKey string } }
		_ = json.Unmarshal(r.Body, &body)
		mu.Lock()
		defer mu.Unlock()
		seen[body.Data.DocKey]++
		if body.Data.DocKey == "retry-me" && seen["retry-me"] == 1 {
			return testenv.Response{Status: http.StatusInternalServerError, Body: []byte("try again")}
		}
		return testenv.Response{Status: http.StatusNoContent}
	})

	ctx := context.Background()
	store, err := docstore.Open(ctx, docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()
	long := strings.Repeat("k", 3000)
	require.NoError(t, store.Put(ctx, "acme", "orders", "retry-me", json.RawMessage(`{}`)))
	require.NoError(t, store.Put(ctx, "acme", "orders", long, json.RawMessage(`{}`)))
	s.rec.WaitFor(t, 3, 90*time.Second) // 500, then 2xx for retry-me, and the long key

	labels := map[string]string{"tenant": "acme", "collection": "orders"}
	hashed := map[string]string{"tenant": "acme", "collection": "orders", "subject_hashed": "true"}
	eventually(t, func() bool {
		w, wk := s.scrape(t, "watcher"), s.scrape(t, "worker")
		got := func(mfs map[string]*dto.MetricFamily, name string, l map[string]string, want float64) bool {
			v, ok := sample(mfs, name, l)
			return ok && v == want
		}
		return got(w, "triggerflow_publisher_published_total", labels, 2) &&
			got(w, "triggerflow_publisher_published_total", hashed, 1) &&
			got(w, "triggerflow_publisher_hashed_subjects_total", labels, 1) &&
			got(wk, "triggerflow_webhook_attempts_total", map[string]string{"tenant": "acme", "collection": "orders", "outcome": "HTTP_5XX"}, 1) &&
			got(wk, "triggerflow_webhook_attempts_total", map[string]string{"tenant": "acme", "collection": "orders", "outcome": "success"}, 2) &&
			got(wk, "triggerflow_webhook_attempts_total", map[string]string{"outcome": "success", "subject_hashed": "true"}, 1) &&
			got(wk, "triggerflow_webhook_retries_total", map[string]string{"tenant": "acme", "outcome": "HTTP_5XX"}, 1) &&
			got(wk, "triggerflow_delivery_tasks_total", hashed, 1) &&
			got(wk, "triggerflow_delivery_tasks_total", map[string]string{"subject_hashed": "false"}, 1) &&
			got(wk, "triggerflow_delivery_lag_seconds", labels, 2) &&
			got(wk, "triggerflow_delivery_lag_seconds", hashed, 1)
	})
	require.EqualValues(t, len(s.rec.Requests()), s.posted.Load(), "every request went through the injected wrapper")

	in := s.scrape(t, "ingest")
	v, ok := sample(in, "triggerflow_ingest_acked_total", map[string]string{"tenant": "acme", "subject_hashed": "true"})
	require.True(t, ok, "ingest labels the hash path too")
	require.Equal(t, 1.0, v)
	require.True(t, hasPrefix(in, "temporal_"), "the Temporal SDK's metrics are bridged into ingest's /metrics")
	require.True(t, hasPrefix(s.scrape(t, "worker"), "temporal_"), "and into the worker's")
}

func hasPrefix(mfs map[string]*dto.MetricFamily, prefix string) bool {
	for name := range mfs {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds: metrics are scraped from running
// services, and the last increments land just after the receiver answers.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met")
		time.Sleep(50 * time.Millisecond)
	}
}

package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

// scrape parses a service's /metrics.
func (s *stack) scrape(t *testing.T, svc string) testenv.Scraped {
	t.Helper()
	code, body := s.ops(t, svc, "/metrics")
	require.Equal(t, http.StatusOK, code)
	return testenv.ParseMetrics(t, body)
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
	// The metrics are scraped from running services, and the last
	// increments land just after the receiver answers.
	testenv.Eventually(t, 30*time.Second, "the documented metrics to move", func() error {
		w, wk := s.scrape(t, "watcher"), s.scrape(t, "worker")
		want := func(mfs testenv.Scraped, name string, l map[string]string, v float64) error {
			if got := testenv.Metric(t, mfs, name, l); got != v {
				return fmt.Errorf("%s%v is %v, want %v", name, l, got, v)
			}
			return nil
		}
		return errors.Join(
			want(w, "triggerflow_publisher_published_total", labels, 2),
			want(w, "triggerflow_publisher_published_total", hashed, 1),
			want(w, "triggerflow_publisher_hashed_subjects_total", labels, 1),
			want(wk, "triggerflow_webhook_attempts_total", map[string]string{"tenant": "acme", "collection": "orders", "outcome": "HTTP_5XX"}, 1),
			want(wk, "triggerflow_webhook_attempts_total", map[string]string{"tenant": "acme", "collection": "orders", "outcome": "success"}, 2),
			want(wk, "triggerflow_webhook_attempts_total", map[string]string{"outcome": "success", "subject_hashed": "true"}, 1),
			want(wk, "triggerflow_webhook_retries_total", map[string]string{"tenant": "acme", "outcome": "HTTP_5XX"}, 1),
			want(wk, "triggerflow_delivery_tasks_total", hashed, 1),
			want(wk, "triggerflow_delivery_tasks_total", map[string]string{"subject_hashed": "false"}, 1),
			want(wk, "triggerflow_delivery_lag_seconds", labels, 2),
			want(wk, "triggerflow_delivery_lag_seconds", hashed, 1),
		)
	})
	require.EqualValues(t, len(s.rec.Requests()), s.posted.Load(), "every request went through the injected wrapper")

	in := s.scrape(t, "ingest")
	require.Equal(t, 1.0, testenv.Metric(t, in, "triggerflow_ingest_acked_total", map[string]string{"tenant": "acme", "subject_hashed": "true"}),
		"ingest labels the hash path too")
	require.True(t, hasPrefix(in, "temporal_"), "the Temporal SDK's metrics are bridged into ingest's /metrics")
	require.True(t, hasPrefix(s.scrape(t, "worker"), "temporal_"), "and into the worker's")
}

func hasPrefix(mfs testenv.Scraped, prefix string) bool {
	for name := range mfs {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

package daemon_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
)

// TestSecretsNeverReachHistory delivers signed, token-carrying webhooks and
// then reads every workflow history of the run: neither the signing secret
// nor the bearer token (nor any Authorization header) appears in it.
func TestSecretsNeverReachHistory(t *testing.T) {
	s := runStack(t)
	ctx := context.Background()
	store, err := docstore.Open(ctx, docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Put(ctx, "acme", "orders", "h1", json.RawMessage(`{"n":1}`)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "h1", json.RawMessage(`{"n":2}`)))
	reqs := s.rec.WaitFor(t, 2, 90*time.Second)
	token := strings.TrimPrefix(reqs[0].Headers.Get("Authorization"), "Bearer ")
	require.NotEmpty(t, token)

	resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `TenantId = "acme"`})
	require.NoError(t, err)
	require.NotEmpty(t, resp.Executions)
	secretB64 := base64.StdEncoding.EncodeToString(s.secret)
	for _, e := range resp.Executions {
		it := s.tc.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, 0)
		var sb strings.Builder
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			sb.WriteString(ev.String())
		}
		h := sb.String()
		require.NotEmpty(t, h)
		require.NotContains(t, h, secretB64, "the signing secret")
		require.NotContains(t, h, s.secret.Encode(), "the signing secret")
		require.NotContains(t, h, token, "the bearer token")
		require.NotContains(t, strings.ToLower(h), "bearer ", "an Authorization header")
	}
}

// TestHostileDocuments sends documents a careless source could hold — 10 MB,
// deeply nested, a huge array — through the real pipeline: none crashes a
// service, the too-large one is dead-lettered with its reason, and the
// others are delivered.
func TestHostileDocuments(t *testing.T) {
	s := runStack(t)
	ctx := context.Background()
	store, err := docstore.Open(ctx, docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()

	big := `{"blob":"` + strings.Repeat("x", 10<<20) + `"}`
	nested := strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200)
	// 50,000 elements: large, yet under the 256 KiB task limit.
	huge := `{"items":[` + strings.TrimSuffix(strings.Repeat(`1,`, 50_000), ",") + `]}`
	require.NoError(t, store.Put(ctx, "acme", "orders", "big", json.RawMessage(big)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "nested", json.RawMessage(nested)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "huge", json.RawMessage(huge)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "plain", json.RawMessage(`{}`)))

	reqs := s.rec.WaitFor(t, 3, 90*time.Second)
	got := map[string]bool{}
	for _, r := range reqs {
		var body struct{ Data struct{ DocKey string } }
		require.NoError(t, json.Unmarshal(r.Body, &body))
		got[body.Data.DocKey] = true
	}
	require.Equal(t, map[string]bool{"nested": true, "huge": true, "plain": true}, got)

	nc, err := nats.Connect(s.ns.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	testenv.Eventually(t, 30*time.Second, `"big" dead-lettered as oversize`, func() error {
		entries, err := deadletter.List(ctx, js, "TRIGGERS_DLQ", "acme", 0)
		require.NoError(t, err)
		for _, e := range entries {
			if e.Record.DocKey == "big" && e.Record.Reason == "oversize" {
				return nil
			}
		}
		return fmt.Errorf("%d dead letters, none for it", len(entries))
	})
	for _, svc := range []string{"watcher", "ingest", "worker"} {
		s.waitReadyz(t, svc, 200)
	}
}

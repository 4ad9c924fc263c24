package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/daemon/daemontest"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// pipeline is the product's three services, in-process, against a real
// NATS, a Temporal dev server and a webhook recorder: documents written
// to its store are delivered as in production.
type pipeline struct {
	ns     *testenv.NATSServer
	ts     *testenv.TemporalServer
	tc     client.Client
	js     jetstream.JetStream
	rec    *testenv.WebhookRecorder
	store  *docstore.Store
	secret signature.Secret
}

// runPipeline starts the pipeline; adjust, when given, changes the ingest
// and worker files (dir is the pipeline's scratch directory) before they
// start.
func runPipeline(t *testing.T, adjust ...func(dir string, inf *config.IngestFile, wkf *config.WorkerFile)) *pipeline {
	t.Helper()
	ctx := context.Background()
	p := &pipeline{ns: testenv.NATS(t), ts: testenv.Temporal(t), rec: testenv.Recorder(t)}
	p.tc = p.ts.Client(t)
	js, err := jetstream.New(p.ns.Conn(t))
	require.NoError(t, err)
	p.js = js
	dir := t.TempDir()
	db := filepath.Join(dir, "docs.db")
	trigDir := filepath.Join(dir, "triggers")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "acme.yaml"), fmt.Appendf(nil, `
tenant: acme
retryPolicy: {maxAttempts: 5, initialBackoff: 100ms, maxBackoff: 200ms, multiplier: 2}
triggers:
  - triggerId: order-changed
    collection: orders
    url: %[1]s/hooks/orders
    secretsRef: default
  - triggerId: invoice-changed
    collection: invoices
    url: %[1]s/hooks/invoices
    secretsRef: default
  - triggerId: shipment-changed
    collection: shipments
    url: %[1]s/hooks/shipments
    secretsRef: default
    onFailure: block
`, p.rec.URL()), 0o600))
	secretsDir := filepath.Join(dir, "secrets")
	sec, err := secrets.Ensure(secretsDir, "acme", "default")
	require.NoError(t, err)
	p.secret = sec[0]

	store, err := docstore.Open(ctx, docstore.Config{Path: db})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	require.NoError(t, store.Checkpoints().Save(ctx, watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))
	p.store = store

	logCfg := config.Log{Format: config.LogText, Level: config.LevelError, TemporalLevel: config.LevelError}
	logger := service.NewLogger(logCfg, io.Discard)
	natsCfg := config.NATS{URL: p.ns.URL()}
	temporalCfg := config.Temporal{HostPort: p.ts.HostPort()}
	wf := config.WatcherFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg,
		Watcher: config.Watcher{Tenant: "acme", SQLite: config.SQLiteSource{Path: db}, Triggers: trigDir,
			CheckpointInterval: trigger.Duration(10 * time.Millisecond)}}.WithDefaults()
	inf := config.IngestFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg}.WithDefaults()
	wkf := config.WorkerFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg,
		Worker: config.Worker{AllowLoopback: new(true), QuietPeriod: trigger.Duration(time.Second),
			Secrets: config.Secrets{Dir: secretsDir}, Tokens: config.Tokens{KeyFile: filepath.Join(dir, "keys", "token.pem")}}}.WithDefaults()
	for _, a := range adjust {
		a(dir, &inf, &wkf)
	}
	daemontest.Start(t, logger, &wf, &inf, &wkf, nil)
	return p
}

// cli runs a triggerflow command against the pipeline's Temporal.
func (p *pipeline) cli(args ...string) (int, string, string) {
	return run(append(args, "--temporal", p.ts.HostPort())...)
}

// requestsTo returns the recorder's requests to path.
func (p *pipeline) requestsTo(path string) []testenv.Request {
	var out []testenv.Request
	for _, r := range p.rec.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// awaitRequests waits until path got n requests.
func (p *pipeline) awaitRequests(t *testing.T, path string, n int) []testenv.Request {
	t.Helper()
	require.Eventually(t, func() bool { return len(p.requestsTo(path)) >= n }, 60*time.Second, 10*time.Millisecond)
	return p.requestsTo(path)
}

// awaitIdle waits until the key's workflow has exited.
func (p *pipeline) awaitIdle(t *testing.T, workflowID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, p.tc.GetWorkflow(ctx, workflowID, "").Get(ctx, nil))
}

type shownLog struct {
	WorkflowID string `json:"workflowId"`
	Events     []struct {
		EventID string `json:"eventId"`
		DocKey  string `json:"docKey"`
		Outcome string `json:"outcome"`
		Entries []struct {
			Kind        string `json:"kind"`
			Delivery    int    `json:"delivery"`
			Attempt     int    `json:"attempt"`
			Status      int    `json:"status"`
			LatencyMS   *int64 `json:"latencyMs"`
			FailureType string `json:"failureType"`
			Response    string `json:"response"`
			Actor       string `json:"actor"`
			Reason      string `json:"reason"`
			Request     string `json:"request"`
			Time        string `json:"time"`
		} `json:"entries"`
	} `json:"events"`
}

type attempt struct {
	Delivery, Attempt, Status int
	FailureType               string
}

func (l *shownLog) attempts() []attempt {
	var out []attempt
	for _, en := range l.Events[0].Entries {
		if en.Kind == "attempt" {
			out = append(out, attempt{en.Delivery, en.Attempt, en.Status, en.FailureType})
		}
	}
	return out
}

// TestDeliveriesShowAndRedeliver is issue 19's acceptance: a delivery
// that failed twice and then succeeded shows three attempts with their
// statuses, and redelivering it reaches the receiver again with the
// original webhook-id. Everything runs for real: the watcher, ingest and
// the worker's registered workflow, Temporal, NATS and an HTTP receiver.
func TestDeliveriesShowAndRedeliver(t *testing.T) {
	t.Parallel()
	p := runPipeline(t)
	ctx := context.Background()
	var mu sync.Mutex
	served := map[string]int{}
	p.rec.Respond(func(r *testenv.Request) testenv.Response {
		mu.Lock()
		defer mu.Unlock()
		served[r.Path]++
		switch {
		case r.Path == "/hooks/orders" && served[r.Path] <= 2:
			return testenv.Response{Status: 500, Body: []byte(`{"error":"try later"}`)}
		case r.Path == "/hooks/invoices" || r.Path == "/hooks/shipments":
			return testenv.Response{Status: 404, Body: []byte(`no such hook`)}
		}
		return testenv.Response{}
	})

	require.NoError(t, p.store.Put(ctx, "acme", "orders", "o-1", json.RawMessage(`{"status":"paid"}`)))
	first := p.awaitRequests(t, "/hooks/orders", 3)
	eventID := first[0].Headers.Get("webhook-id")
	for _, r := range first {
		require.Equal(t, eventID, r.Headers.Get("webhook-id"))
	}
	wid := ingest.WorkflowID("acme", "order-changed", "orders", "o-1")
	require.Equal(t, "tf/acme/order-changed/orders/o-1", wid)
	p.awaitIdle(t, wid)

	show := func(t *testing.T, args ...string) *shownLog {
		t.Helper()
		code, out, errOut := p.cli(append([]string{"deliveries", "show", "-o", "json"}, args...)...)
		require.Equal(t, 0, code, errOut)
		var l shownLog
		require.NoError(t, json.Unmarshal([]byte(out), &l), out)
		require.Len(t, l.Events, 1, out)
		require.Equal(t, eventID, l.Events[0].EventID)
		return &l
	}

	t.Run("show lists three attempts with their statuses", func(t *testing.T) {
		l := show(t, eventID, "--tenant", "acme", "--trigger", "order-changed", "--collection", "orders", "--doc", "o-1")
		require.Equal(t, wid, l.WorkflowID)
		require.Equal(t, "delivered", l.Events[0].Outcome)
		require.Equal(t, []attempt{{1, 1, 500, "HTTP_5XX"}, {1, 2, 500, "HTTP_5XX"}, {1, 3, 200, ""}}, l.attempts())
		for _, en := range l.Events[0].Entries {
			if en.Kind == "attempt" {
				require.NotNil(t, en.LatencyMS, "latency of attempt %d", en.Attempt)
				if en.Status == 500 {
					require.Equal(t, `{"error":"try later"}`, en.Response)
				}
			}
		}
		require.NotEmpty(t, l.Events[0].Entries[1].Time, "the first attempt's time")

		// The table says the same.
		code, out, errOut := p.cli("deliveries", "show", eventID, "--workflow-id", wid)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "event "+eventID)
		require.Contains(t, out, "DELIVERED")
		require.Regexp(t, `(?m)\s1\s+1\s+attempt \(local activity\)\s+500\s+\d+ms\s+HTTP_5XX\s+POST http://127\.0\.0\.1:\d+: 500 Internal Server Error.*response: \{"error":"try later"\}`, out)
		require.Regexp(t, `(?m)\s1\s+2\s+attempt \(activity\)\s+500\s+\d+ms\s+HTTP_5XX`, out)
		require.Regexp(t, `(?m)\s1\s+3\s+attempt \(activity\)\s+200\s+\d+ms\s*$`, out)

		// By workflow id: every event of the document.
		code, out, errOut = p.cli("deliveries", "show", wid)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "event "+eventID)
	})

	t.Run("show finds the event among the tenant's workflows", func(t *testing.T) {
		// Visibility is eventually consistent: the run shows up in it a
		// moment after it started.
		require.EventuallyWithT(t, func(c *assertCollect) {
			code, out, errOut := p.cli("deliveries", "show", eventID, "--tenant", "acme", "-o", "json")
			require.Equal(c, 0, code, errOut)
			require.Contains(c, errOut, "found "+eventID+" in "+wid+" after reading")
			require.Contains(c, out, `"outcome": "delivered"`)
		}, 30*time.Second, 100*time.Millisecond)

		code, _, errOut := p.cli("deliveries", "show", "evt_0000000000000000000000000000000000000000", "--tenant", "acme", "--limit", "5")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "event not found")
		code, _, errOut = p.cli("deliveries", "show", eventID)
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "give its workflow (--workflow-id)")
		code, _, errOut = p.cli("deliveries", "show", "tf/acme/order-changed/orders/nope")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "workflow not found: tf/acme/order-changed/orders/nope")
	})

	t.Run("redeliver reaches the receiver again with the original webhook-id", func(t *testing.T) {
		code, _, errOut := p.cli("redeliver", eventID, "--workflow-id", wid, "--nats", p.ns.URL())
		require.Equal(t, 1, code, "actor and reason are required")
		require.Contains(t, errOut, `required flag(s) "actor", "reason" not set`)

		code, out, errOut := p.cli("redeliver", eventID, "--tenant", "acme", "--trigger", "order-changed", "--collection", "orders", "--doc", "o-1",
			"--nats", p.ns.URL(), "--actor", "ada", "--reason", "receiver lost its database (INC-7)", "--wait", "1m")
		require.Equal(t, 0, code, errOut)
		require.Regexp(t, `^redelivery rdl_[0-9a-f]{16} of `+eventID+` queued on `+wid+` \(run [0-9a-f-]+\), webhook-id `+eventID+`\n`, out)
		require.Contains(t, out, "attempt 1: HTTP 200")
		require.Contains(t, out, "DELIVERED")

		reqs := p.awaitRequests(t, "/hooks/orders", 4)
		again := reqs[3]
		require.Equal(t, eventID, again.Headers.Get("webhook-id"), "the original webhook-id")
		require.JSONEq(t, string(first[2].Body), string(again.Body), "the same body")
		require.NoError(t, signature.Verify(again.Headers, again.Body, []signature.Secret{p.secret}, 0, time.Now()), "signed afresh")

		recs, err := audit.List(ctx, p.js, config.NATS{}.WithDefaults().AuditStream, "acme", 0)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, audit.Action("redeliver"), recs[0].Action)
		require.Equal(t, "ada", recs[0].Actor)
		require.Equal(t, "receiver lost its database (INC-7)", recs[0].Reason)
		require.Equal(t, wid, recs[0].Key)
		require.Equal(t, eventID, recs[0].Before)
		require.Contains(t, out, "redelivery "+recs[0].After+" of", "the audit record names the request")

		// The log has the second delivery, with who asked for it.
		p.awaitIdle(t, wid)
		l := show(t, eventID, "--workflow-id", wid)
		require.Equal(t, []attempt{{1, 1, 500, "HTTP_5XX"}, {1, 2, 500, "HTTP_5XX"}, {1, 3, 200, ""}, {2, 1, 200, ""}}, l.attempts())
		var redeliver []string
		for _, en := range l.Events[0].Entries {
			if en.Kind == "redeliver" {
				redeliver = append(redeliver, en.Request+" "+en.Actor+": "+en.Reason)
			}
		}
		require.Equal(t, []string{recs[0].After + " ada: receiver lost its database (INC-7)"}, redeliver)
	})

	t.Run("redeliver refuses while the delivery is not finished", func(t *testing.T) {
		require.NoError(t, p.store.Put(ctx, "acme", "shipments", "s-1", json.RawMessage(`{"n":1}`)))
		blocked := p.awaitRequests(t, "/hooks/shipments", 1)[0].Headers.Get("webhook-id")
		shipment := ingest.WorkflowID("acme", "shipment-changed", "shipments", "s-1")
		code, _, errOut := p.cli("redeliver", blocked, "--workflow-id", shipment, "--nats", p.ns.URL(), "--actor", "ada", "--reason", "retry")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "the event's delivery is not finished: "+blocked+" is")
		require.Contains(t, errOut, "or pass --force")
		require.EventuallyWithT(t, func(c *assertCollect) {
			code, out, errOut := p.cli("deliveries", "show", blocked, "--workflow-id", shipment, "-o", "json")
			require.Equal(c, 0, code, errOut)
			require.Contains(c, out, `"outcome": "blocked"`)
		}, 30*time.Second, 50*time.Millisecond)
		code, _, errOut = p.cli("redeliver", blocked, "--workflow-id", shipment, "--nats", p.ns.URL(), "--actor", "ada", "--reason", "retry")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, blocked+" is blocked in "+shipment)
		recs, err := audit.List(ctx, p.js, config.NATS{}.WithDefaults().AuditStream, "acme", 0)
		require.NoError(t, err)
		require.Len(t, recs, 1, "a refused redelivery is not audited")

		code, _, errOut = p.cli("redeliver", shipment, "--nats", p.ns.URL(), "--actor", "ada", "--reason", "retry")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "redeliver takes an event id")
	})

	t.Run("list and --failed", func(t *testing.T) {
		require.NoError(t, p.store.Put(ctx, "acme", "invoices", "i-1", json.RawMessage(`{"n":1}`)))
		p.awaitRequests(t, "/hooks/invoices", 1)
		invoice := ingest.WorkflowID("acme", "invoice-changed", "invoices", "i-1")
		p.awaitIdle(t, invoice)

		type row struct {
			WorkflowID       string `json:"workflowId"`
			Status           string `json:"status"`
			DocKey           string `json:"docKey"`
			FailedDeliveries int64  `json:"failedDeliveries"`
		}
		list := func(c require.TestingT, args ...string) []row {
			code, out, errOut := p.cli(append([]string{"deliveries", "list", "--tenant", "acme", "-o", "json"}, args...)...)
			require.Equal(c, 0, code, errOut)
			var rows []row
			require.NoError(c, json.Unmarshal([]byte(out), &rows), out)
			return rows
		}
		require.EventuallyWithT(t, func(c *assertCollect) {
			rows := list(c, "--failed", "--collection", "invoices")
			require.Equal(c, []row{{invoice, "completed", "i-1", 1}}, rows, "the dead-lettered delivery's run")
			rows = list(c, "--failed")
			require.Len(c, rows, 2, "and the blocked key's; not the order's retried attempts")
			require.Equal(c, "running", rows[0].Status, "running runs first")
		}, 30*time.Second, 100*time.Millisecond)
		require.EventuallyWithT(t, func(c *assertCollect) {
			byWorkflow := map[string]int{}
			for _, r := range list(c) {
				byWorkflow[r.WorkflowID]++
			}
			require.Equal(c, map[string]int{wid: 2, invoice: 1, ingest.WorkflowID("acme", "shipment-changed", "shipments", "s-1"): 1}, byWorkflow,
				"the order's two runs (delivery, redelivery), the invoice's and the blocked shipment's")
		}, 30*time.Second, 100*time.Millisecond)
		require.Len(t, list(t, "--trigger", "invoice-changed"), 1)
		future := list(t, "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		require.Len(t, future, 1, "only a running run is active after now")
		require.Equal(t, "running", future[0].Status)
		require.NotEmpty(t, list(t, "--since", "1h"))
		require.Empty(t, list(t, "--doc", `it's a "key" \`), "quotes reach visibility as values")

		code, out, errOut := p.cli("deliveries", "list", "--tenant", "acme", "--failed")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "STARTED")
		require.Contains(t, out, invoice)

		code, out, errOut = p.cli("deliveries", "show", invoice, "-o", "json")
		require.Equal(t, 0, code, errOut)
		var l shownLog
		require.NoError(t, json.Unmarshal([]byte(out), &l))
		require.Len(t, l.Events, 1)
		require.Equal(t, "dead-lettered", l.Events[0].Outcome)
		require.Equal(t, []attempt{{1, 1, 404, "HTTP_4XX"}}, l.attempts())
		require.Equal(t, "no such hook", l.Events[0].Entries[1].Response)
	})
}

// assertCollect is what require.EventuallyWithT passes.
type assertCollect = assert.CollectT

package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/receiver"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// devRun runs the dev stack until stop is called.
type devRun struct {
	stack *daemon.DevStack
	stop  func()
}

func startDev(t *testing.T, cfg daemon.DevConfig) devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan *daemon.DevStack, 1)
	errc := make(chan error, 1)
	go func() { errc <- daemon.Dev(ctx, cfg, func(s *daemon.DevStack) { up <- s }) }()
	select {
	case s := <-up:
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			require.NoError(t, <-errc)
		}
		t.Cleanup(stop)
		return devRun{stack: s, stop: stop}
	case err := <-errc:
		cancel()
		t.Fatalf("dev stack failed to start: %v", err)
	case <-time.After(120 * time.Second):
		cancel()
		t.Fatal("dev stack not up")
	}
	return devRun{}
}

func waitDeliveries(t *testing.T, r *receiver.Receiver, n int) []receiver.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ds, err := r.Wait(ctx, n)
	require.NoError(t, err, "got %d of %d deliveries", len(ds), n)
	return ds
}

// TestDevStackSmoke is `make dev` as a user runs it: from a clean data dir
// the stack comes up, document writes arrive at the demo receiver signed
// and authenticated and show up as workflows with search attributes; after
// a stop and a restart on the same data dir, new writes arrive and nothing
// from before is lost or published again.
func TestDevStackSmoke(t *testing.T) {
	dir := t.TempDir()
	rcv := freeAddr(t)
	trig := filepath.Join(dir, "triggers.yaml")
	require.NoError(t, os.WriteFile(trig, fmt.Appendf(nil, `
tenant: demo
triggers:
  - triggerId: order-changed
    collection: orders
    url: http://%s/hooks/orders
    secretsRef: default
`, rcv), 0o600))
	cfg := daemon.DevConfig{
		DataDir: filepath.Join(dir, "data"), Tenant: "demo", Triggers: trig,
		NATSPort: -1, TemporalPort: mustPort(t), TemporalUIPort: -1, TemporalCLI: testenv.TemporalCLI(t),
		ReceiverAddr: rcv, WatcherAddr: freeAddr(t), IngestAddr: freeAddr(t), WorkerAddr: freeAddr(t),
		Out: io.Discard, Log: config.Log{Format: config.LogText, Level: config.LevelError, TemporalLevel: config.LevelError},
	}
	putDoc := func(id string, doc json.RawMessage) {
		t.Helper()
		store, err := docstore.Open(context.Background(), docstore.Config{Path: filepath.Join(cfg.DataDir, "documents.db")})
		require.NoError(t, err)
		defer store.Close()
		require.NoError(t, store.Put(context.Background(), "demo", "orders", id, doc))
	}
	put := func(id, status string) {
		t.Helper()
		putDoc(id, json.RawMessage(fmt.Sprintf(`{"status":%q}`, status)))
	}

	run := startDev(t, cfg)
	put("o-1", "new")
	put("o-2", "new")
	put("o-1", "paid")
	first := waitDeliveries(t, run.stack.Receiver, 3)
	var o1 []string
	for _, d := range first {
		if d.DocKey == "o-1" {
			o1 = append(o1, d.Type)
		}
	}
	require.Equal(t, []string{"document.created", "document.updated"}, o1, "per-document order")

	tc, err := client.Dial(client.Options{HostPort: run.stack.TemporalHostPort, Logger: quietTemporal()})
	require.NoError(t, err)
	// Visibility is eventually consistent.
	testenv.Eventually(t, 30*time.Second, "o-1's workflow listed by its search attributes", func() error {
		resp, err := tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: `TenantId = "demo" AND TriggerId = "order-changed" AND DocKey = "o-1"`})
		require.NoError(t, err)
		if n := len(resp.Executions); n != 1 {
			return fmt.Errorf("%d listed", n)
		}
		return nil
	})
	tc.Close()
	run.stop()

	run = startDev(t, cfg)
	put("o-3", "new")
	put("o-2", "paid")
	// A 200 KB document's update carries 400 KB of images, more than a
	// task may: they travel through the image bucket.
	big := func(status string) json.RawMessage {
		return fmt.Appendf(nil, `{"status":%q,"notes":%q}`, status, strings.Repeat("n", 200<<10))
	}
	putDoc("o-big", big("new"))
	putDoc("o-big", big("paid"))
	second := waitDeliveries(t, run.stack.Receiver, 4)
	require.ElementsMatch(t, []string{"o-3", "o-2", "o-big", "o-big"}, keys(second), "only the new changes, each once")
	for _, d := range second {
		if d.DocKey != "o-big" || d.Type != "document.updated" {
			continue
		}
		var body struct {
			Data struct{ Before, After json.RawMessage }
		}
		require.NoError(t, json.Unmarshal(d.Body, &body))
		require.JSONEq(t, string(big("new")), string(body.Data.Before), "the whole before image")
		require.JSONEq(t, string(big("paid")), string(body.Data.After), "the whole after image")
	}

	// The task stream holds each of the seven changes exactly once: the
	// restart resumed from the checkpoint and published nothing again.
	nc, err := nats.Connect(run.stack.NATSURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "TRIGGERS")
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 7, info.State.Msgs)
	ids := map[string]bool{}
	for _, d := range append(first, second...) {
		require.False(t, ids[d.ID], "delivered twice: %s", d.ID)
		ids[d.ID] = true
	}
}

// TestDevStackTenants is `make dev` on the example triggers, which name two
// tenants: one watcher serves both, each tenant's change reaches the demo
// receiver signed with that tenant's own secret and printed with its
// tenant, and edits to the trigger files (a new trigger, a new tenant's
// file) are picked up without a restart.
func TestDevStackTenants(t *testing.T) {
	dir := t.TempDir()
	rcv := freeAddr(t)
	trig := filepath.Join(dir, "triggers")
	copyExamples(t, trig, rcv)
	out := &syncBuffer{}
	cfg := daemon.DevConfig{
		DataDir: filepath.Join(dir, "data"), Triggers: trig,
		NATSPort: -1, TemporalPort: mustPort(t), TemporalUIPort: -1, TemporalCLI: testenv.TemporalCLI(t),
		ReceiverAddr: rcv, WatcherAddr: freeAddr(t), IngestAddr: freeAddr(t), WorkerAddr: freeAddr(t),
		Out: out, Log: config.Log{Format: config.LogText, Level: config.LevelError, TemporalLevel: config.LevelError},
	}
	store, err := docstore.Open(context.Background(), docstore.Config{Path: filepath.Join(cfg.DataDir, "documents.db")})
	require.NoError(t, err)
	defer store.Close()
	put := func(tenant, coll, id, doc string) {
		t.Helper()
		require.NoError(t, store.Put(context.Background(), tenant, coll, id, json.RawMessage(doc)))
	}
	secretOf := func(tenant, ref string) []signature.Secret {
		t.Helper()
		list, err := secrets.NewDir(filepath.Join(cfg.DataDir, "secrets")).Resolve(context.Background(), tenant, ref)
		require.NoError(t, err)
		return list
	}
	// checkSigned: d verifies with its tenant's secret and no other's, and
	// the receiver printed it with its tenant.
	checkSigned := func(d receiver.Delivery, ref string, others ...[]signature.Secret) {
		t.Helper()
		require.NoError(t, signature.Verify(d.Header, d.Body, secretOf(d.Tenant, ref), 0, time.Now()), "%s/%s", d.Tenant, d.TriggerID)
		for _, o := range others {
			require.Error(t, signature.Verify(d.Header, d.Body, o, 0, time.Now()), "%s/%s verifies with another secret", d.Tenant, d.TriggerID)
		}
		require.Contains(t, out.String(), fmt.Sprintf(" %s/%s %s %s/%s (signature ok, token ok) %s\n", d.Tenant, d.TriggerID, d.Type, d.Collection, d.DocKey, d.ID))
	}

	run := startDev(t, cfg)
	require.Contains(t, out.String(), "(tenants acme, demo; triggers from "+trig)
	require.Contains(t, out.String(), "are picked up when saved")

	put("demo", "orders", "o-1", `{"status":"paid","total":42}`)
	put("acme", "orders", "o-1", `{"total":7}`)
	ds := waitDeliveries(t, run.stack.Receiver, 2)
	byTenant := map[string]receiver.Delivery{}
	for _, d := range ds {
		byTenant[d.Tenant] = d
	}
	require.Equal(t, "order-paid", byTenant["demo"].TriggerID)
	require.Equal(t, "order-created", byTenant["acme"].TriggerID)
	demoSecret, acmeSecret := secretOf("demo", "default"), secretOf("acme", "default")
	checkSigned(byTenant["demo"], "default", acmeSecret)
	checkSigned(byTenant["acme"], "default", demoSecret)

	// A new trigger, signing with a secret reference of its own, and a new
	// tenant, saved while the stack runs.
	acmeFile := filepath.Join(trig, "acme-orders.yaml")
	before, err := os.ReadFile(acmeFile)
	require.NoError(t, err)
	writeAtomically(t, acmeFile, string(before)+fmt.Sprintf(`
  - triggerId: invoice-created
    collection: invoices
    events: [create]
    url: http://%s/hooks/acme-invoice
    secretsRef: billing
`, rcv))
	writeAtomically(t, filepath.Join(trig, "beta.yaml"), fmt.Sprintf(`
tenant: beta
triggers:
  - triggerId: order-created
    collection: orders
    url: http://%s/hooks/beta-orders
    secretsRef: default
`, rcv))
	// The watcher reloads on its own time; its gauges say when.
	testenv.Eventually(t, 30*time.Second, "the watcher to load the edited triggers", func() error {
		m := watcherMetrics(t, cfg.WatcherAddr)
		acme := testenv.Metric(t, m, "triggerflow_triggers_active", prometheus.Labels{"tenant": "acme"})
		beta := testenv.Metric(t, m, "triggerflow_triggers_active", prometheus.Labels{"tenant": "beta"})
		if acme != 2 || beta != 1 {
			return fmt.Errorf("active triggers: acme %v, beta %v", acme, beta)
		}
		return nil
	})
	require.Contains(t, out.String(), "trigger files changed: reloading acme (2 triggers), beta (1 trigger), demo (4 triggers)")

	put("acme", "invoices", "i-1", `{"total":7}`)
	put("beta", "orders", "b-1", `{"total":1}`)
	ds = waitDeliveries(t, run.stack.Receiver, 4)[2:]
	byTenant = map[string]receiver.Delivery{}
	for _, d := range ds {
		byTenant[d.Tenant] = d
	}
	require.Equal(t, "invoice-created", byTenant["acme"].TriggerID)
	require.Equal(t, "order-created", byTenant["beta"].TriggerID)
	checkSigned(byTenant["acme"], "billing", acmeSecret, demoSecret)
	checkSigned(byTenant["beta"], "default", acmeSecret, demoSecret)
}

// copyExamples copies examples/triggers to dir, delivering to rcv.
func copyExamples(t *testing.T, dir, rcv string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	entries, err := os.ReadDir("../../examples/triggers")
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("../../examples/triggers", e.Name()))
		require.NoError(t, err)
		data = bytes.ReplaceAll(data, []byte("127.0.0.1:8090"), []byte(rcv))
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600))
	}
}

// writeAtomically saves a file as editors do: a new file renamed over it.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func watcherMetrics(t *testing.T, addr string) testenv.Scraped {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return testenv.ParseMetrics(t, body)
}

// syncBuffer is the stack's Out, written by the receiver's handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func keys(ds []receiver.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.DocKey)
	}
	return out
}

func mustPort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	var n int
	_, err = fmt.Sscan(p, &n)
	require.NoError(t, err)
	return n
}

func quietTemporal() tlog.Logger {
	return service.TemporalLogger(service.NewLogger(config.Log{Format: config.LogText, Level: config.LevelError}, io.Discard), config.LevelError)
}

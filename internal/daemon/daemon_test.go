package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/goleak"

	"github.com/triggerflow/triggerflow/authn"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/daemon/daemontest"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The Temporal SDK's and gRPC's background goroutines outlive a
		// closed client for a moment.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("go.temporal.io/sdk/internal.(*sharedNamespaceCapabilities).get"),
	)
}

type stack struct {
	ns      *testenv.NATSServer
	ts      *testenv.TemporalServer
	dir     string
	db      string
	secret  signature.Secret
	rec     *testenv.WebhookRecorder
	tc      client.Client
	opsAddr map[string]string // service name → ops address
	// posted counts the webhook requests the worker's injected transport
	// wrapper saw (daemon.Options.WebhookHTTP).
	posted atomic.Int32
}

// runStack runs the three services in-process against real servers until
// the test ends, and returns once all three are ready. adjust, when given,
// changes the ingest and worker files before they start.
func runStack(t *testing.T, adjust ...func(s *stack, inf *config.IngestFile, wkf *config.WorkerFile)) *stack {
	t.Helper()
	ns := testenv.NATS(t)
	ts := testenv.Temporal(t)
	s := &stack{ns: ns, ts: ts, dir: t.TempDir(), rec: testenv.Recorder(t), tc: ts.Client(t)}
	s.db = filepath.Join(s.dir, "docs.db")

	trigDir := filepath.Join(s.dir, "triggers")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "orders.yaml"), fmt.Appendf(nil, `
tenant: acme
triggers:
  - triggerId: order-changed
    collection: orders
    url: %s/hooks/orders
    secretsRef: default
    headers: {X-Env: test}
`, s.rec.URL()), 0o600))
	secretsDir := filepath.Join(s.dir, "secrets")
	sec, err := secrets.Ensure(secretsDir, "acme", "default")
	require.NoError(t, err)
	s.secret = sec[0]

	// Start from the beginning of the empty change log, so every write
	// counts whenever the watcher reaches it.
	store, err := docstore.Open(context.Background(), docstore.Config{Path: s.db})
	require.NoError(t, err)
	require.NoError(t, store.Checkpoints().Save(context.Background(), watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))
	require.NoError(t, store.Close())

	logCfg := config.Log{Format: config.LogText, Level: config.LevelWarn, TemporalLevel: config.LevelError}
	logger := service.NewLogger(logCfg, io.Discard)
	natsCfg := config.NATS{URL: ns.URL()}
	temporalCfg := config.Temporal{HostPort: ts.HostPort()}

	wf := config.WatcherFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg,
		Watcher: config.Watcher{Tenant: "acme", SQLite: config.SQLiteSource{Path: s.db}, Triggers: trigDir, CheckpointInterval: trigger.Duration(10 * time.Millisecond)}}.WithDefaults()
	inf := config.IngestFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg}.WithDefaults()
	wkf := config.WorkerFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg,
		Worker: config.Worker{AllowLoopback: new(true), QuietPeriod: trigger.Duration(time.Second),
			Secrets: config.Secrets{Dir: secretsDir}, Tokens: config.Tokens{KeyFile: filepath.Join(s.dir, "keys", "token.pem")}}}.WithDefaults()
	for _, a := range adjust {
		a(s, &inf, &wkf)
	}
	s.opsAddr = daemontest.Start(t, logger, &wf, &inf, &wkf, func(name string, o *daemon.Options) {
		if name != "worker" {
			return
		}
		o.WebhookHTTP.Wrap = func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				s.posted.Add(1)
				return next.RoundTrip(r)
			})
		}
	})
	return s
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (s *stack) ops(t *testing.T, name, path string) (int, []byte) {
	t.Helper()
	addr, ok := s.opsAddr[name]
	require.True(t, ok)
	resp, err := http.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// TestEndToEnd writes documents to SQLite and checks that the receiver gets
// signed, authenticated deliveries in per-document order, that each
// document has its workflow with searchable attributes, and that every
// service reports ready and serves metrics.
func TestEndToEnd(t *testing.T) {
	s := runStack(t)
	ctx := context.Background()
	store, err := docstore.Open(ctx, docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()

	require.NoError(t, store.Put(ctx, "acme", "orders", "o.1", json.RawMessage(`{"status":"new"}`)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "o/2", json.RawMessage(`{"status":"new"}`)))
	require.NoError(t, store.Put(ctx, "acme", "orders", "o.1", json.RawMessage(`{"status":"paid"}`)))
	require.NoError(t, store.Delete(ctx, "acme", "orders", "o.1"))

	reqs := s.rec.WaitFor(t, 4, 90*time.Second)

	code, jwks := s.ops(t, "worker", authn.JWKSPath)
	require.Equal(t, http.StatusOK, code)
	verifier, err := authn.NewVerifier(jwks, authn.VerifierConfig{})
	require.NoError(t, err)

	var o1 []string
	ids := map[string]bool{}
	for _, r := range reqs {
		require.Equal(t, "/hooks/orders", r.Path)
		require.NoError(t, signature.Verify(r.Headers, r.Body, []signature.Secret{s.secret}, 0, time.Now()), "signature verifies with the tenant's secret")
		token := strings.TrimPrefix(r.Headers.Get("Authorization"), "Bearer ")
		_, err := verifier.Verify(token, "acme")
		require.NoError(t, err, "the bearer token verifies against the worker's JWKS")
		require.Equal(t, "test", r.Headers.Get("X-Env"))
		ids[r.Headers.Get("webhook-id")] = true

		var body struct {
			Type string
			Data struct {
				DocKey string
				After  json.RawMessage
			}
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		if body.Data.DocKey == "o.1" {
			o1 = append(o1, body.Type)
		}
	}
	require.Len(t, ids, 4, "one webhook-id per change")
	require.Equal(t, []string{"document.created", "document.updated", "document.deleted"}, o1, "per-document order")

	// Each document has its workflow, findable by search attributes once
	// visibility, which is eventually consistent, catches up.
	testenv.Eventually(t, 30*time.Second, "both documents' workflows visible", func() error {
		resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `TenantId = "acme" AND Collection = "orders"`})
		require.NoError(t, err)
		if n := len(resp.Executions); n < 2 {
			return fmt.Errorf("%d visible", n)
		}
		return nil
	})

	for _, svc := range []string{"watcher", "ingest", "worker"} {
		code, body := s.ops(t, svc, "/readyz")
		require.Equal(t, http.StatusOK, code, "%s: %s", svc, body)
		code, body = s.ops(t, svc, "/metrics")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, string(body), "triggerflow_", svc)
	}
}

// waitReadyz waits until a service's /readyz answers want.
func (s *stack) waitReadyz(t *testing.T, svc string, want int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%s /readyz to answer %d", svc, want), func() error {
		if code, body := s.ops(t, svc, "/readyz"); code != want {
			return fmt.Errorf("it answers %d: %s", code, body)
		}
		return nil
	})
}

// TestReadyzFollowsDependencies takes NATS and then Temporal away and
// checks each service reports not ready while a dependency it needs is
// down, and ready again once it returns, without a restart.
func TestReadyzFollowsDependencies(t *testing.T) {
	s := runStack(t)

	s.ns.Shutdown()
	for _, svc := range []string{"watcher", "ingest", "worker"} {
		s.waitReadyz(t, svc, http.StatusServiceUnavailable)
	}
	s.ns.Restart(t)
	for _, svc := range []string{"watcher", "ingest", "worker"} {
		s.waitReadyz(t, svc, http.StatusOK)
	}

	require.NoError(t, s.ts.Stop())
	for _, svc := range []string{"ingest", "worker"} {
		s.waitReadyz(t, svc, http.StatusServiceUnavailable)
	}
	s.waitReadyz(t, "watcher", http.StatusOK) // the watcher does not need Temporal
	s.ts.Restart(t)
	for _, svc := range []string{"ingest", "worker"} {
		s.waitReadyz(t, svc, http.StatusOK)
	}

	// And the pipeline still delivers.
	store, err := docstore.Open(context.Background(), docstore.Config{Path: s.db})
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Put(context.Background(), "acme", "orders", "after-outage", json.RawMessage(`{}`)))
	s.rec.WaitFor(t, 1, 90*time.Second)
}

// TestWorkerWaitsForTemporalAtStartUp: a worker started while Temporal is
// down keeps trying and becomes ready once Temporal is back.
func TestWorkerWaitsForTemporalAtStartUp(t *testing.T) {
	ns := testenv.NATS(t)
	ts := testenv.Temporal(t)
	require.NoError(t, ts.Stop())
	dir := t.TempDir()
	logCfg := config.Log{Format: config.LogText, Level: config.LevelError, TemporalLevel: config.LevelError}
	wkf := config.WorkerFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: config.NATS{URL: ns.URL()},
		Temporal: config.Temporal{HostPort: ts.HostPort()}, Worker: config.Worker{
			Secrets: config.Secrets{Dir: filepath.Join(dir, "secrets")}, Tokens: config.Tokens{KeyFile: filepath.Join(dir, "key.pem")},
		}}.WithDefaults()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Worker(ctx, &wkf, daemon.Options{Logger: service.NewLogger(logCfg, io.Discard), OnReady: func(string) { close(ready) }})
	}()
	select {
	case err := <-errc:
		t.Fatalf("worker exited while Temporal was down: %v", err)
	case <-ready:
		t.Fatal("ready without Temporal")
	case <-time.After(time.Second): // a while for it to fail, if it were going to
	}
	ts.Restart(t)
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("worker exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("worker not ready after Temporal returned")
	}
	cancel()
	require.NoError(t, <-errc)
}

package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	put := func(id, status string) {
		t.Helper()
		store, err := docstore.Open(context.Background(), docstore.Config{Path: filepath.Join(cfg.DataDir, "documents.db")})
		require.NoError(t, err)
		defer store.Close()
		require.NoError(t, store.Put(context.Background(), "demo", "orders", id, json.RawMessage(fmt.Sprintf(`{"status":%q}`, status))))
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
	second := waitDeliveries(t, run.stack.Receiver, 2)
	require.ElementsMatch(t, []string{"o-3", "o-2"}, keys(second), "only the new changes, each once")

	// The task stream holds each of the five changes exactly once: the
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
	require.EqualValues(t, 5, info.State.Msgs)
	ids := map[string]bool{}
	for _, d := range append(first, second...) {
		require.False(t, ids[d.ID], "delivered twice: %s", d.ID)
		ids[d.ID] = true
	}
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

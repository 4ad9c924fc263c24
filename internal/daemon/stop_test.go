package daemon_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/daemon/daemontest"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// A worker stopped while a delivery is under way lets it finish: the
// delivery's workflow task completes and the run closes, instead of being
// abandoned for another worker to post again (after this one deleted the
// images it used). The receiver takes two seconds to answer, and the worker
// is stopped while it waits.
func TestWorkerStopLetsDeliveriesFinish(t *testing.T) {
	ns, ts := testenv.NATS(t), testenv.Temporal(t)
	tc := ts.Client(t)
	rec := testenv.Recorder(t)
	rec.Respond(func(*testenv.Request) testenv.Response { return testenv.Response{Delay: 2 * time.Second} })

	dir := t.TempDir()
	trigDir := filepath.Join(dir, "triggers")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "docs.yaml"),
		[]byte("tenant: acme\ntriggers:\n  - triggerId: doc-changed\n    collection: docs\n    url: "+rec.URL()+"/hooks/docs\n"), 0o600))
	db := filepath.Join(dir, "docs.db")
	store, err := docstore.Open(t.Context(), docstore.Config{Path: db})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	require.NoError(t, store.Checkpoints().Save(t.Context(), watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))

	logCfg := config.Log{Format: config.LogText, Level: config.LevelInfo, TemporalLevel: config.LevelError}
	natsCfg := config.NATS{URL: ns.URL()}
	temporalCfg := config.Temporal{HostPort: ts.HostPort()}
	ops := config.HTTP{Addr: "127.0.0.1:0"}
	wf := config.WatcherFile{Log: logCfg, HTTP: ops, NATS: natsCfg, Watcher: config.Watcher{Tenant: "acme",
		SQLite: config.SQLiteSource{Path: db}, Triggers: trigDir, CheckpointInterval: trigger.Duration(10 * time.Millisecond)}}.WithDefaults()
	inf := config.IngestFile{Log: logCfg, HTTP: ops, NATS: natsCfg, Temporal: temporalCfg}.WithDefaults()
	wkf := config.WorkerFile{Log: logCfg, HTTP: ops, NATS: natsCfg, Temporal: temporalCfg, Worker: config.Worker{
		AllowLoopback: new(true), Secrets: config.Secrets{Dir: dir}, Tokens: config.Tokens{KeyFile: filepath.Join(dir, "keys", "token.pem")}}}.WithDefaults()
	stack := daemontest.Run(t, slog.New(slog.NewTextHandler(io.Discard, nil)), &wf, &inf, &wkf, nil)

	require.NoError(t, store.Put(t.Context(), "acme", "docs", "d1", []byte(`{"n":1}`)))
	rec.WaitFor(t, 1, time.Minute)
	stack.Stop("worker")

	desc, err := tc.DescribeWorkflow(t.Context(), ingest.WorkflowID("acme", "doc-changed", "docs", "d1"), "")
	require.NoError(t, err)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.Status,
		"the stopping worker closed the run it delivered in, rather than leaving it to another worker to deliver again")
	require.Len(t, rec.Requests(), 1)
}

package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/internal/cli"
	"github.com/triggerflow/triggerflow/internal/daemon/daemontest"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// maxHistoryBytesPerRun bounds the Temporal history of one delivery run
// of a large document: its images never enter history, only their
// references, so the bound holds whatever the document size.
const maxHistoryBytesPerRun = 16 << 10

// largeDoc is a JSON document of about n bytes that does not compress to
// nothing.
func largeDoc(rng *rand.Rand, n int, version int) json.RawMessage {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b strings.Builder
	b.Grow(n)
	for b.Len() < n {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	doc, err := json.Marshal(map[string]any{"version": version, "blob": b.String()})
	if err != nil {
		panic(err)
	}
	return doc
}

// largeDocsSource writes documents into one of the sources.
type largeDocsSource interface {
	put(t *testing.T, key string, doc json.RawMessage)
	del(t *testing.T, key string)
	// image returns the document inside a delivered image (a SQLite
	// document is the image; a PostgreSQL row holds it in a column).
	image(t *testing.T, raw json.RawMessage) json.RawMessage
}

type largeStack struct {
	ns     *testenv.NATSServer
	tc     client.Client
	rec    *testenv.WebhookRecorder
	secret signature.Secret
	ops    map[string]string
}

// runLargeStack runs the three services with limits for large documents:
// 16 MiB bodies (an update of a 5 MiB document carries two images), and
// images deleted as soon as they are delivered.
func runLargeStack(t *testing.T, watcherCfg func(trigDir string) config.Watcher) *largeStack {
	t.Helper()
	s := &largeStack{ns: testenv.NATS(t), rec: testenv.Recorder(t)}
	ts := testenv.Temporal(t)
	s.tc = ts.Client(t)
	dir := t.TempDir()
	trigDir, secretsDir := filepath.Join(dir, "triggers"), filepath.Join(dir, "secrets")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(trigDir, "docs.yaml"), fmt.Appendf(nil, `
tenant: acme
triggers:
  - triggerId: doc-changed
    collection: docs
    url: %s/hooks/docs
    secretsRef: default
`, s.rec.URL()), 0o600))
	sec, err := secrets.Ensure(secretsDir, "acme", "default")
	require.NoError(t, err)
	s.secret = sec[0]

	logCfg := config.Log{Format: config.LogText, Level: config.LevelWarn, TemporalLevel: config.LevelError}
	natsCfg := config.NATS{URL: s.ns.URL()}
	temporalCfg := config.Temporal{HostPort: ts.HostPort()}
	wf := config.WatcherFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Watcher: watcherCfg(trigDir)}.WithDefaults()
	inf := config.IngestFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg}.WithDefaults()
	wkf := config.WorkerFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg,
		Worker: config.Worker{AllowLoopback: new(true), QuietPeriod: trigger.Duration(time.Second),
			MaxBodyBytes: 16 << 20, ImageReleaseDelay: trigger.Duration(time.Millisecond),
			Secrets: config.Secrets{Dir: secretsDir}, Tokens: config.Tokens{KeyFile: filepath.Join(dir, "keys", "token.pem")}}}.WithDefaults()
	s.ops = daemontest.Start(t, service.NewLogger(logCfg, io.Discard), &wf, &inf, &wkf, nil)
	return s
}

// runLargeSQLiteStack is runLargeStack over a SQLite store read from its
// beginning.
func runLargeSQLiteStack(t *testing.T) (*largeStack, sqliteDocs) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "docs.db")
	store, err := docstore.Open(context.Background(), docstore.Config{Path: db})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	require.NoError(t, store.Checkpoints().Save(context.Background(), watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))
	s := runLargeStack(t, func(trigDir string) config.Watcher {
		return config.Watcher{Tenant: "acme", SQLite: config.SQLiteSource{Path: db}, Triggers: trigDir,
			CheckpointInterval: trigger.Duration(10 * time.Millisecond)}
	})
	return s, sqliteDocs{store}
}

// TestLargeDocuments writes 1 MiB and 5 MiB documents (create, update,
// delete) to each source and checks that the receiver gets every change
// with its full, exact before and after images, signed as usual; that no
// delivery run's Temporal history holds more than a few KiB, since the
// images travel as references; and that the image bucket empties once
// the deliveries are done.
func TestLargeDocuments(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		s, src := runLargeSQLiteStack(t)
		checkLargeDocuments(t, s, src)
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		dsn := pg.CreateDatabase(t, "largedocs")
		db := pg.PoolFor(t, dsn)
		// status is updated alone below: the big doc column is then an
		// unchanged TOAST value, which only REPLICA IDENTITY FULL's old
		// row carries whole.
		_, err := db.Exec(context.Background(), `CREATE TABLE docs (id text PRIMARY KEY, tenant text NOT NULL, status text, doc jsonb);
ALTER TABLE docs REPLICA IDENTITY FULL`)
		require.NoError(t, err)
		s := runLargeStack(t, func(trigDir string) config.Watcher {
			return config.Watcher{Tenants: []string{"acme"}, Source: config.SourcePostgres, Triggers: trigDir,
				Postgres:     config.PostgresSource{DSN: dsn, TenantColumn: "tenant"},
				StartFromNow: true, CheckpointInterval: trigger.Duration(10 * time.Millisecond)}
		})
		checkLargeDocuments(t, s, &pgDocs{db: db})
	})
}

func checkLargeDocuments(t *testing.T, s *largeStack, src largeDocsSource) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(20, 12))
	type change struct {
		key, typ      string
		before, after json.RawMessage
	}
	var want []change
	for _, size := range []int{1 << 20, 5 << 20} {
		key := fmt.Sprintf("doc-%dMiB", size>>20)
		v1, v2 := largeDoc(rng, size, 1), largeDoc(rng, size, 2)
		src.put(t, key, v1)
		src.put(t, key, v2)
		src.del(t, key)
		want = append(want,
			change{key, "document.created", nil, v1},
			change{key, "document.updated", v1, v2},
			change{key, "document.deleted", v2, nil})
	}
	if pg, ok := src.(*pgDocs); ok {
		// An update that leaves the large column alone.
		v := largeDoc(rng, 1<<20, 3)
		src.put(t, "toast", v)
		pg.setStatus(t, "toast", "paid")
		want = append(want,
			change{"toast", "document.created", nil, v},
			change{"toast", "document.updated", v, v})
	}

	reqs := s.rec.WaitFor(t, len(want), 3*time.Minute)
	got := map[string][]change{}
	for _, r := range reqs {
		require.NoError(t, signature.Verify(r.Headers, r.Body, []signature.Secret{s.secret}, 0, time.Now()))
		var body struct {
			Type string
			Data struct {
				DocKey        string
				Before, After json.RawMessage
			}
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		got[body.Data.DocKey] = append(got[body.Data.DocKey], change{body.Data.DocKey, body.Type, body.Data.Before, body.Data.After})
	}
	byKey := map[string][]change{}
	for _, c := range want {
		byKey[c.key] = append(byKey[c.key], c)
	}
	require.Len(t, got, len(byKey), "one document per key")
	for key, cs := range byKey {
		require.Len(t, got[key], len(cs), "%s: every change delivered once", key)
		for i, c := range cs {
			g := got[key][i]
			require.Equal(t, c.typ, g.typ, "%s change %d", key, i)
			requireImage(t, src, c.before, g.before, "%s change %d before", key, i)
			requireImage(t, src, c.after, g.after, "%s change %d after", key, i)
		}
	}

	// The images went through the bucket, not through the tasks.
	resp, err := http.Get("http://" + s.ops["worker"] + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	var images int
	for _, c := range want {
		images += min(len(c.before), 1) + min(len(c.after), 1)
	}
	require.GreaterOrEqual(t, testenv.Metric(t, testenv.ParseMetrics(t, metrics), "triggerflow_images_fetched_total", nil), float64(images))

	// Every run's history is small: only references entered it.
	runs, largest := 0, 0
	testenv.Eventually(t, time.Minute, "every delivery run visible and closed", func() error {
		resp, err := s.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `TenantId = "acme"`})
		require.NoError(t, err)
		keys := map[string]bool{}
		for _, ex := range resp.Executions {
			if ex.Status == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return fmt.Errorf("%s still running", ex.Execution.WorkflowId)
			}
			keys[ex.Execution.WorkflowId] = true
		}
		if len(keys) < len(byKey) {
			return fmt.Errorf("%d of %d documents' workflows visible", len(keys), len(byKey))
		}
		runs = 0
		for _, ex := range resp.Executions {
			it := s.tc.GetWorkflowHistory(ctx, ex.Execution.WorkflowId, ex.Execution.RunId, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			size := 0
			for it.HasNext() {
				ev, err := it.Next()
				require.NoError(t, err)
				size += proto.Size(ev)
			}
			require.LessOrEqual(t, size, maxHistoryBytesPerRun, "run %s of %s", ex.Execution.RunId, ex.Execution.WorkflowId)
			runs, largest = runs+1, max(largest, size)
		}
		return nil
	})
	t.Logf("%d runs delivered %d changes; the largest run's history is %d bytes (bound %d)", runs, len(want), largest, maxHistoryBytesPerRun)

	// Delivered images are deleted: the bucket holds no object data.
	nc, err := nats.Connect(s.ns.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	obs, err := js.ObjectStore(ctx, streams.ImageBucket(streams.DefaultStream))
	require.NoError(t, err)
	requireBucketEmpties(t, obs, "the image bucket")
}

// requireImage checks a delivered image against the document written.
func requireImage(t *testing.T, src largeDocsSource, want, got json.RawMessage, msgAndArgs ...any) {
	t.Helper()
	if want == nil {
		require.Equal(t, "null", string(got), msgAndArgs...)
		return
	}
	require.NotEqual(t, "null", string(got), msgAndArgs...)
	// JSONEq would print megabytes on failure; compare decoded values.
	var w, g any
	require.NoError(t, json.Unmarshal(want, &w))
	require.NoError(t, json.Unmarshal(src.image(t, got), &g))
	if !equalJSON(w, g) {
		require.Fail(t, fmt.Sprintf("image differs from the document written (%d bytes written, %d delivered)", len(want), len(got)), msgAndArgs...)
	}
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

type sqliteDocs struct{ store *docstore.Store }

func (s sqliteDocs) put(t *testing.T, key string, doc json.RawMessage) {
	require.NoError(t, s.store.Put(context.Background(), "acme", "docs", key, doc))
}

func (s sqliteDocs) del(t *testing.T, key string) {
	require.NoError(t, s.store.Delete(context.Background(), "acme", "docs", key))
}

func (sqliteDocs) image(_ *testing.T, raw json.RawMessage) json.RawMessage { return raw }

type pgDocs struct{ db *pgxpool.Pool }

func (p *pgDocs) put(t *testing.T, key string, doc json.RawMessage) {
	_, err := p.db.Exec(context.Background(), `INSERT INTO docs (id, tenant, status, doc) VALUES ($1, 'acme', 'new', $2)
ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc`, key, string(doc))
	require.NoError(t, err)
}

func (p *pgDocs) setStatus(t *testing.T, key, status string) {
	_, err := p.db.Exec(context.Background(), `UPDATE docs SET status = $2 WHERE id = $1`, key, status)
	require.NoError(t, err)
}

func (p *pgDocs) del(t *testing.T, key string) {
	_, err := p.db.Exec(context.Background(), `DELETE FROM docs WHERE id = $1`, key)
	require.NoError(t, err)
}

// image is the doc column of a delivered row.
func (*pgDocs) image(t *testing.T, raw json.RawMessage) json.RawMessage {
	var row struct{ Doc json.RawMessage }
	require.NoError(t, json.Unmarshal(raw, &row))
	return row.Doc
}

// TestLargeDocumentRedrive has the receiver refuse a large document's
// deliveries, so they are dead-lettered, and checks that the dead letters
// keep their images: the task bucket empties, `dlq redrive` after the
// receiver is fixed delivers the full images from the dead letters'
// copies, and those copies are deleted once delivered.
func TestLargeDocumentRedrive(t *testing.T) {
	s, src := runLargeSQLiteStack(t)
	var refuse atomic.Bool
	refuse.Store(true)
	s.rec.Respond(func(*testenv.Request) testenv.Response {
		if refuse.Load() {
			return testenv.Response{Status: http.StatusUnprocessableEntity}
		}
		return testenv.Response{}
	})

	ctx := context.Background()
	rng := rand.New(rand.NewPCG(20, 13))
	v1, v2 := largeDoc(rng, 1<<20, 1), largeDoc(rng, 1<<20, 2)
	src.put(t, "big", v1)
	src.put(t, "big", v2)

	nc, err := nats.Connect(s.ns.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	dlStream := config.NATS{}.WithDefaults().DeadLetterSubject
	testenv.Eventually(t, 2*time.Minute, "both changes dead-lettered", func() error {
		entries, err := deadletter.List(ctx, js, dlStream, "acme", 0)
		require.NoError(t, err)
		if len(entries) < 2 {
			return fmt.Errorf("%d dead letters", len(entries))
		}
		for _, e := range entries {
			task, err := trigger.DecodeTask(e.Record.Task)
			require.NoError(t, err)
			require.NotNil(t, task.AfterRef, "the dead letter references its image")
			require.Equal(t, images.DeadLetterBucket, task.AfterRef.Bucket, "a copy of its own")
		}
		return nil
	})
	tasks, err := js.ObjectStore(ctx, streams.ImageBucket(streams.DefaultStream))
	require.NoError(t, err)
	dead, err := js.ObjectStore(ctx, streams.ImageBucket(dlStream))
	require.NoError(t, err)
	requireBucketEmpties(t, tasks, "the task bucket, once the dead letters hold copies")
	copies, err := dead.List(ctx)
	require.NoError(t, err)
	require.Len(t, copies, 3, "the dead-letter bucket holds the three images")

	refuse.Store(false)
	var out, errOut strings.Builder
	code := cli.Execute([]string{"dlq", "redrive", "--nats", s.ns.URL(), "--tenant", "acme", "--actor", "test", "--reason", "receiver fixed"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())

	reqs := s.rec.WaitFor(t, 4, 2*time.Minute)
	var delivered []json.RawMessage
	for _, r := range reqs[2:] {
		var body struct {
			Data struct{ Before, After json.RawMessage }
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		delivered = append(delivered, body.Data.Before, body.Data.After)
	}
	// Redriven in dead-letter order: the create, then the update.
	requireImage(t, src, nil, delivered[0], "create before")
	requireImage(t, src, v1, delivered[1], "create after")
	requireImage(t, src, v1, delivered[2], "update before")
	requireImage(t, src, v2, delivered[3], "update after")
	requireBucketEmpties(t, dead, "the dead-letter bucket, once the redriven tasks are delivered")
}

func requireBucketEmpties(t *testing.T, obs jetstream.ObjectStore, what string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, what+" to empty", func() error {
		st, err := obs.Status(context.Background())
		require.NoError(t, err)
		// Deleted objects leave nothing behind, not even a marker.
		if st.Size() != 0 {
			return fmt.Errorf("it holds %d bytes", st.Size())
		}
		return nil
	})
}

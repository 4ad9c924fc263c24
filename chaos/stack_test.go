package chaos_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/docstore"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/watcher"
)

// service is one Triggerflow process and its ops address, where the test
// reads /readyz and /metrics.
type service struct {
	*proc
	ops string
}

// stackConfig shapes a stack: how many ingest and worker replicas, and
// the body of their ingest and worker sections (YAML flow mappings).
type stackConfig struct {
	ingests, workers int
	ingest           string // e.g. "{sharing: pinned}"
	worker           string // extra worker keys, e.g. "maxConnsPerHost: 2"
	// workerNATS, when set, returns the NATS URL the workers connect to
	// given the server's, e.g. a proxy's in front of it.
	workerNATS func(natsURL string) string
}

// stack is Triggerflow deployed as separate processes, as in production:
// a nats-server, a Temporal dev server, one watcher of tenant acme's
// SQLite store with one trigger on collection items, ingest and worker
// replicas, and a receiver recording every delivery.
type stack struct {
	natsURL  string
	temporal *testenv.TemporalServer
	tc       client.Client
	rcv      *receiver
	store    *docstore.Store
	hc       *http.Client
	ingests  []service
	workers  []service
	watcher  service

	rng  *rand.Rand
	next map[string]int
}

const scaleTaskQueue = "triggerflow"

// startStack starts every process and returns once each ingest and
// worker is ready and every worker polls the task queue.
func startStack(tb testing.TB, cfg stackConfig) *stack {
	tb.Helper()
	bins := buildBinaries(tb)
	dir := tb.TempDir()
	ctx := context.Background()
	st := &stack{
		hc:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		rng:  rand.New(rand.NewPCG(1, 2)),
		next: map[string]int{},
	}

	natsPort := freePort(tb)
	st.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	newProc(tb, "nats-server", filepath.Join(bins, "nats-server"),
		"-js", "-sd", filepath.Join(dir, "jetstream"), "-p", strconv.Itoa(natsPort), "-a", "127.0.0.1").start()
	awaitPort(tb, natsPort)

	st.temporal = testenv.Temporal(tb)
	st.tc = st.temporal.Client(tb)
	st.rcv = newReceiver(tb, time.Second)

	db := filepath.Join(dir, "docs.db")
	var err error
	st.store, err = docstore.Open(ctx, docstore.Config{Path: db})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = st.store.Close() })
	require.NoError(tb, st.store.Checkpoints().Save(ctx, watcher.CheckpointPrefix+"acme", docstore.FormatPosition(0)))
	trigDir := filepath.Join(dir, "triggers")
	require.NoError(tb, os.MkdirAll(trigDir, 0o755))
	require.NoError(tb, os.WriteFile(filepath.Join(trigDir, "items.yaml"), fmt.Appendf(nil,
		"tenant: acme\ntriggers:\n  - triggerId: all\n    collection: items\n    url: %s/hook\n", st.rcv.url), 0o600))
	require.NoError(tb, os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))

	// launch starts a service with its ops server on a free port. Another
	// process (another test's listener, an outgoing connection's local
	// port) may take the port between freePort and the service's bind,
	// which the service opens first; the service then exits at once and
	// launch picks another port.
	launch := func(name, bin, natsURL, cfg string) service {
		for attempt := 1; ; attempt++ {
			ops := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
			path := filepath.Join(dir, name+".yaml")
			require.NoError(tb, os.WriteFile(path, fmt.Appendf(nil,
				"log: {format: text, level: warn, temporalLevel: error}\nhttp: {addr: %q}\nnats: {url: %q}\n%s", ops, natsURL, cfg), 0o600))
			s := service{proc: newProc(tb, name, filepath.Join(bins, bin), "--config", path), ops: ops}
			s.start()
			if awaitListening(tb, s.proc, ops) {
				return s
			}
			require.Less(tb, attempt, 5, "%s: ops port taken before it bound it, %d times", name, attempt)
			tb.Logf("%s: ops port %s was taken before it bound it; trying another", name, ops)
		}
	}
	temporalCfg := fmt.Sprintf("temporal: {hostPort: %q, taskQueue: %s}\n", st.temporal.HostPort(), scaleTaskQueue)
	workerCfg := fmt.Sprintf("worker: {allowLoopback: true, secrets: {dir: %q}, tokens: {keyFile: %q}", filepath.Join(dir, "secrets"),
		// Every worker loads one token key, as replicas must.
		filepath.Join(dir, "keys", "token.pem"))
	if cfg.worker != "" {
		workerCfg += ", " + cfg.worker
	}
	workerCfg += "}\n"
	for i := range cfg.ingests {
		st.ingests = append(st.ingests, launch(fmt.Sprintf("ingest-%d", i), "ingest", st.natsURL, temporalCfg+"ingest: "+cfg.ingest+"\n"))
	}
	workerNATS := st.natsURL
	if cfg.workerNATS != nil {
		workerNATS = cfg.workerNATS(st.natsURL)
	}
	var pids []int
	for i := range cfg.workers {
		w := launch(fmt.Sprintf("worker-%d", i), "worker", workerNATS, temporalCfg+workerCfg)
		st.workers = append(st.workers, w)
		pids = append(pids, w.cmd.Process.Pid)
	}
	st.watcher = launch("watcher", "watcher", st.natsURL, fmt.Sprintf("watcher: {tenant: acme, sqlite: {path: %q}, triggers: %q}\n", db, trigDir))
	for _, s := range append(append([]service(nil), st.ingests...), st.workers...) {
		awaitReady(tb, st.hc, s.proc, s.ops)
	}
	// Every worker polls for workflow and activity tasks before the first
	// write, so any of them can take any task.
	awaitPollers(tb, st.tc, scaleTaskQueue, pids...)
	return st
}

// put writes n changes, each setting {"seq": n} on one of keys documents
// chosen at random (seeded), n counting up per key, one after the other as
// fast as the store commits.
func (st *stack) put(tb testing.TB, keys, n int) []write {
	tb.Helper()
	out := make([]write, 0, n)
	for range n {
		key := fmt.Sprintf("k%02d", st.rng.IntN(keys))
		seq := st.next[key]
		st.next[key]++
		require.NoError(tb, st.store.Put(context.Background(), "acme", "items", key, fmt.Appendf(nil, `{"seq":%d}`, seq)))
		out = append(out, write{key: key, seq: seq, at: time.Now()})
	}
	return out
}

// metric sums the samples of the metric name on one of the stack's
// services' /metrics whose labels include labels; a metric with no series
// yet sums to 0.
func (st *stack) metric(tb testing.TB, s service, name string, labels prometheus.Labels) float64 {
	tb.Helper()
	resp, err := st.hc.Get("http://" + s.ops + "/metrics")
	require.NoError(tb, err)
	defer resp.Body.Close()
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return testenv.Metric(tb, testenv.ParseMetrics(tb, body), name, labels)
}

// awaitReady waits until a service answers /readyz with 200, failing at
// once if its process exits.
func awaitReady(tb testing.TB, hc *http.Client, p *proc, ops string) {
	tb.Helper()
	testenv.Eventually(tb, time.Minute, fmt.Sprintf("%s ready on %s", p.name, ops), func() error {
		require.False(tb, p.exited(), "%s exited before it was ready", p.name)
		resp, err := hc.Get("http://" + ops + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answers %d", resp.StatusCode)
		}
		return nil
	})
}

// awaitListening waits until a service started on ops accepts
// connections there. It reports false if the service exited because the
// address was in use, and fails the test if it exited otherwise.
func awaitListening(tb testing.TB, p *proc, ops string) bool {
	tb.Helper()
	exited := false
	testenv.Eventually(tb, time.Minute, fmt.Sprintf("%s to listen on %s", p.name, ops), func() error {
		if exited = p.exited(); exited {
			return nil
		}
		c, err := net.DialTimeout("tcp", ops, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if exited {
		out, err := os.ReadFile(p.log)
		require.NoError(tb, err)
		require.Contains(tb, string(out), "address already in use", "%s exited at start; see its output", p.name)
		return false
	}
	return true
}

// awaitPollers waits until Temporal lists a poller of every process in
// pids (the SDK's default identity starts with "<pid>@") on the task
// queue, for workflow and for activity tasks.
func awaitPollers(tb testing.TB, tc client.Client, queue string, pids ...int) {
	tb.Helper()
	testenv.Eventually(tb, time.Minute, fmt.Sprintf("pollers of processes %v on %q", pids, queue), func() error {
		for _, typ := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := tc.DescribeTaskQueue(ctx, queue, typ)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", typ, err)
			}
			var ids strings.Builder
			for _, p := range resp.Pollers {
				ids.WriteString("|" + p.GetIdentity())
			}
			var missing []int
			for _, pid := range pids {
				if !strings.Contains(ids.String(), fmt.Sprintf("|%d@", pid)) {
					missing = append(missing, pid)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s pollers of processes %v missing", typ, missing)
			}
		}
		return nil
	})
}

// awaitCount polls count, a sum of other processes' counters, until it
// reaches want.
func awaitCount(tb testing.TB, what string, want float64, count func() float64) {
	tb.Helper()
	testenv.Eventually(tb, time.Minute, what, func() error {
		if got := count(); got < want {
			return fmt.Errorf("%.0f of %.0f", got, want)
		}
		return nil
	})
}

package metricsdoc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// The binaries whose /metrics the reference documents, and what all of
// them serve.
const (
	binWatcher = "watcher"
	binIngest  = "ingest"
	binWorker  = "worker"
	binEvery   = "Every binary"
)

// metric is one registered metric family as its Desc describes it.
type metric struct {
	Name   string
	Type   string   // counter, gauge, histogram, summary
	Labels []string // variable and constant label names, sorted
	Help   string
	Binary string
}

// recorder passes registrations through to a real registry, so the
// components see the usual AlreadyRegistered semantics when they share it,
// and remembers every collector that was accepted. A *prometheus.Registry
// cannot list its collectors, and Gather omits a Vec until one of its
// children exists, so recording is the only way to see every family.
type recorder struct {
	prometheus.Registerer

	mu         sync.Mutex
	collectors []prometheus.Collector
}

func newRecorder() *recorder { return &recorder{Registerer: prometheus.NewPedanticRegistry()} }

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// metrics describes every recorded collector.
func (r *recorder) metrics(t *testing.T, binary string) []metric {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []metric
	for _, c := range r.collectors {
		typ := collectorType(t, c)
		ch := make(chan *prometheus.Desc)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m, err := parseDesc(d.String())
			require.NoError(t, err)
			m.Type, m.Binary = typ, binary
			out = append(out, m)
		}
	}
	return out
}

// collectorType names the metric type of c. Vecs are recognised by their
// concrete type (they collect nothing before a child exists); a plain
// metric is gathered on a scratch registry and its family type read.
func collectorType(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	scratch := prometheus.NewRegistry()
	require.NoError(t, scratch.Register(c))
	mfs, err := scratch.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1, "collector %T gathers %d families; teach collectorType about it", c, len(mfs))
	return strings.ToLower(mfs[0].GetType().String())
}

// parseDesc reads a Desc's String form:
//
//	Desc{fqName: "n", help: "h", unit: "", constLabels: {a="x"}, variableLabels: {b,c}}
func parseDesc(s string) (metric, error) {
	var m metric
	rest, ok := strings.CutPrefix(s, `Desc{fqName: `)
	if !ok {
		return m, fmt.Errorf("unexpected Desc form %q", s)
	}
	name, rest, err := quoted(rest)
	if err != nil {
		return m, fmt.Errorf("fqName of %q: %w", s, err)
	}
	m.Name = name
	rest, ok = strings.CutPrefix(rest, `, help: `)
	if !ok {
		return m, fmt.Errorf("no help in %q", s)
	}
	if m.Help, rest, err = quoted(rest); err != nil {
		return m, fmt.Errorf("help of %q: %w", s, err)
	}
	_, consts, ok := strings.Cut(rest, `constLabels: {`)
	if !ok {
		return m, fmt.Errorf("no constLabels in %q", s)
	}
	consts, vars, ok := strings.Cut(consts, `}, variableLabels: {`)
	if !ok {
		return m, fmt.Errorf("no variableLabels in %q", s)
	}
	for pair := range strings.SplitSeq(consts, ",") {
		if name, _, ok := strings.Cut(pair, "="); ok {
			m.Labels = append(m.Labels, strings.TrimSpace(name))
		}
	}
	vars = strings.TrimSuffix(vars, "}}")
	for v := range strings.SplitSeq(vars, ",") {
		v = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(v), "c("), ")")
		if v != "" {
			m.Labels = append(m.Labels, v)
		}
	}
	sort.Strings(m.Labels)
	return m, nil
}

func quoted(s string) (value, rest string, err error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

// noEnv keeps TRIGGERFLOW_* variables of the machine out of the test.
func noEnv(string) (string, bool) { return "", false }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	registeredOnce sync.Once
	registered     map[string]metric
	registeredErr  error
)

// registeredMetrics builds every binary's components once per test binary
// and returns their metric families by name.
func registeredMetrics(t *testing.T) map[string]metric {
	t.Helper()
	registeredOnce.Do(func() {
		// The components need live connections only to be constructed;
		// a sub-test scope would tear them down with the first caller, so
		// the build runs under the caller and its failures are kept.
		var all []metric
		ok := t.Run("build", func(t *testing.T) {
			all = append(all, watcherMetrics(t)...)
			all = append(all, ingestMetrics(t)...)
			all = append(all, workerMetrics(t)...)
			all = append(all, opsServerMetrics(t)...)
			all = append(all, imageMetrics(t)...)
		})
		if !ok {
			registeredErr = errors.New("building the components failed; see the build sub-test")
			return
		}
		registered = map[string]metric{}
		var dups []string
		for _, m := range all {
			if prev, dup := registered[m.Name]; dup && (prev.Binary == binEvery || m.Binary == binEvery) {
				// Built by one binary's components here, served by all.
				m.Binary = binEvery
			} else if dup {
				dups = append(dups, fmt.Sprintf("%s (%s and %s)", m.Name, prev.Binary, m.Binary))
			}
			registered[m.Name] = m
		}
		if len(dups) > 0 {
			registeredErr = fmt.Errorf("metrics registered by two binaries: %s", strings.Join(dups, ", "))
		}
	})
	require.NoError(t, registeredErr)
	return registered
}

// watchingSource reports when the watcher, built and registered by
// engine.Start, begins to read.
type watchingSource struct {
	watcher.Source
	once     sync.Once
	watching chan struct{}
}

func (s *watchingSource) Watch(ctx context.Context, after string, emit func(watcher.Change) error) error {
	s.once.Do(func() { close(s.watching) })
	return s.Source.Watch(ctx, after, emit)
}

// watcherMetrics wires the watcher binary as daemon.Watcher does — the
// change source, then the engine, which registers the evaluator at
// NewFactory and the publisher and watcher at Start — and runs the engine
// until it reads, so everything Start registers is seen. The PostgreSQL
// source registers its metrics in daemon.OpenSource before it connects.
func watcherMetrics(t *testing.T) []metric {
	ctx := context.Background()
	ns := testenv.NATS(t)
	dir := t.TempDir()
	cfg, err := config.Parse[config.WatcherFile]("watcher.yaml", fmt.Appendf(nil, `
nats: {url: %q}
watcher:
  tenant: acme
  sqlite: {path: %q}
  startFromNow: true
`, ns.URL(), filepath.Join(dir, "documents.db")), noEnv)
	require.NoError(t, err)

	rec := newRecorder()
	src, err := daemon.OpenSource(ctx, cfg, quiet(), rec)
	require.NoError(t, err)
	defer func() { require.NoError(t, src.Close()) }()
	ws := &watchingSource{Source: src, watching: make(chan struct{})}

	f, err := engine.NewFactory(
		engine.Deps{Logger: quiet(), Source: ws, NATS: ns.Conn(t), Registerer: rec},
		engine.WithConfig(engine.Config{
			Tenant: cfg.Watcher.Tenant, Limits: cfg.Validation, Streams: cfg.NATS.Streams(),
			Watcher:   watcher.Config{StartFromNow: cfg.Watcher.StartFromNow, CheckpointInterval: cfg.Watcher.CheckpointInterval.D()},
			Publisher: cfg.Publisher.ForStream(cfg.NATS.Stream),
		}),
	)
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Close()) }()
	require.NoError(t, f.Engine().LoadTriggers([]*trigger.Trigger{
		{ID: "order-paid", Tenant: "acme", Collection: "orders", URL: "https://hooks.example.com/paid"},
	}))
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- f.Engine().Run(runCtx) }()
	select {
	case <-ws.watching:
	case err := <-errc:
		cancel()
		require.NoError(t, err, "engine stopped before it watched")
	}
	cancel()
	require.NoError(t, <-errc)

	pgRec := newRecorder()
	pgCfg, err := config.Parse[config.WatcherFile]("watcher.yaml", fmt.Appendf(nil, `
watcher:
  tenant: acme
  source: postgres
  postgres: {dsn: "postgres://triggerflow@127.0.0.1:%d/app?sslmode=disable&connect_timeout=5"}
`, closedPort(t)), noEnv)
	require.NoError(t, err)
	_, err = daemon.OpenSource(ctx, pgCfg, quiet(), pgRec)
	require.Error(t, err, "nothing listens on the DSN's port")

	return append(rec.metrics(t, binWatcher), pgRec.metrics(t, binWatcher)...)
}

// closedPort returns a local TCP port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// fakeTemporal stands in for the Temporal client: ingest registers its
// metrics in New, before it ever calls Temporal.
type fakeTemporal struct{ ingest.TemporalClient }

func (fakeTemporal) SignalWithStartWorkflow(context.Context, string, string, any, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	return nil, errors.New("fake Temporal client: not for hand-offs")
}

func (fakeTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return nil, errors.New("fake Temporal client: not for health checks")
}

// ingestMetrics wires ingest as daemon.Ingest does.
func ingestMetrics(t *testing.T) []metric {
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t))
	require.NoError(t, err)
	cfg, err := config.Parse[config.IngestFile]("ingest.yaml", fmt.Appendf(nil, "nats: {url: %q}\n", ns.URL()), noEnv)
	require.NoError(t, err)
	rec := newRecorder()
	icfg := cfg.Ingester()
	icfg.DeadLetters = deadletter.NewPublisher(js, cfg.NATS.DeadLetterSubject)
	icfg.Logger, icfg.Registerer = quiet(), rec
	_, err = ingest.New(icfg, js, fakeTemporal{})
	require.NoError(t, err)
	return rec.metrics(t, binIngest)
}

// workerMetrics wires the webhook activities as daemon.Worker does; the
// delivery workflow registers no metrics of its own.
func workerMetrics(t *testing.T) []metric {
	ns := testenv.NATS(t)
	js, err := jetstream.New(ns.Conn(t))
	require.NoError(t, err)
	cfg, err := config.Parse[config.WorkerFile]("worker.yaml", fmt.Appendf(nil, "nats: {url: %q}\n", ns.URL()), noEnv)
	require.NoError(t, err)
	rec := newRecorder()
	acfg := cfg.Worker.Activities()
	acfg.DeadLetters = deadletter.NewPublisher(js, cfg.NATS.DeadLetterSubject)
	acfg.Logger, acfg.Registerer = quiet(), rec
	_, err = activities.New(acfg, activities.Deps{})
	require.NoError(t, err)
	return rec.metrics(t, binWorker)
}

// opsServerMetrics are those service.NewOpsServer serves beside the
// registry it is given, in every binary.
func opsServerMetrics(t *testing.T) []metric {
	rec := newRecorder()
	rec.MustRegister(service.BuildInfoCollector())
	return rec.metrics(t, binEvery)
}

// imageMetrics are the claim check's, which every binary's factory
// registers: the watcher stores images, the worker fetches them, and
// every stage's dead letters copy them.
func imageMetrics(t *testing.T) []metric {
	ns := testenv.NATS(t)
	cfg := config.NATS{URL: ns.URL()}.WithDefaults()
	js := ns.JetStream(t, cfg.Streams())
	rec := newRecorder()
	_, err := images.New(js, images.Config{Streams: cfg.Streams(), Registerer: rec})
	require.NoError(t, err)
	return rec.metrics(t, binEvery)
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

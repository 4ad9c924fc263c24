// Package engine is Triggerflow's public entry point: a TriggerFactory,
// built from configuration and injected dependencies, wires every stage of
// the pipeline. Its TriggerEngine loads a validated trigger set and runs
// watcher → evaluator → publisher; its Ingester hands delivery tasks from
// JetStream to Temporal; RegisterWorker installs the delivery workflow and
// its webhook activities on a Temporal worker. Each binary builds the
// stages it runs from one factory.
//
// A change is checkpointed only after every delivery task it produced was
// acknowledged by JetStream, so a crash replays and never skips. Ingest and
// the worker need no trigger files: every delivery task carries what they
// need.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/worker"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/deadletter"
	"github.com/triggerflow/triggerflow/evaluator"
	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/ingest"
	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/internal/promreg"
	"github.com/triggerflow/triggerflow/publisher"
	"github.com/triggerflow/triggerflow/streams"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
	"github.com/triggerflow/triggerflow/workflows"
)

// TriggerEngine matches document changes against the trigger sets of its
// tenant scope and publishes delivery tasks.
type TriggerEngine interface {
	// LoadTriggers validates ts against the engine's tenant scope and
	// replaces the active sets atomically, all or nothing per tenant: a
	// tenant with any invalid trigger keeps its previous set, the others
	// take their new one (with one tenant, that is all or nothing). The
	// error lists every problem (errors.Is(err,
	// trigger.ErrInvalidTriggers)). ts is the whole scope: in an
	// all-tenants scope a tenant without triggers in ts leaves the scope.
	// Events already being evaluated finish under the set they started
	// with.
	LoadTriggers(ts []*trigger.Trigger) error
	// LoadSets is LoadTriggers for a load already grouped by tenant
	// (trigger.LoadByTenant): tenants of res.Failed keep their previous
	// set, and so do those whose previous triggers came from a file of
	// res.Unattributed.
	LoadSets(res *trigger.TenantSets) error
	// Run runs the pipeline until ctx is done (returning nil after a clean
	// drain) or a stage fails for good. It blocks.
	Run(ctx context.Context) error
	// ReportLoadFailure records a reload that failed before it reached
	// LoadTriggers (a trigger path that cannot be read): every tenant
	// keeps its set and its load-failed gauge is on until a load succeeds.
	ReportLoadFailure(err error)
	// Ready returns nil while the pipeline runs: triggers loaded, streams
	// provisioned or verified, NATS connected. Binaries serve it on /readyz.
	Ready(ctx context.Context) error
	// Active returns tenant's active trigger set, nil when it has none.
	Active(tenant string) *Set
	// Tenants returns the tenants with an active set, sorted.
	Tenants() []string
}

// TriggerFactory builds every stage of the pipeline from the factory's
// Config and Deps, and owns the lifetime of what it wires.
type TriggerFactory interface {
	// Engine returns the watcher side of Config.Tenant's scope. Without a
	// tenant its methods fail with ErrNoTenant.
	Engine() TriggerEngine
	// Ingester builds ingest (JetStream → Temporal) from Config.Ingest;
	// it needs Deps.NATS and Deps.Temporal. Start it, then Close it.
	Ingester() (*ingest.Ingester, error)
	// RegisterWorker registers the delivery workflow (Config.Workflows)
	// and its webhook activities (Config.Activities, Deps.Secrets,
	// Deps.Tokens, Deps.WebhookHTTP) on w. The activities are built once;
	// registering on another worker reuses them.
	RegisterWorker(w worker.Registry) error
	// Close stops the engine; call it after Run returned.
	Close() error
}

// Errors returned by the engine.
var (
	ErrNoTriggers = errors.New("engine: no trigger set loaded")
	ErrClosed     = errors.New("engine: closed")
	ErrNotReady   = errors.New("engine: not ready")
	ErrNoDeps     = errors.New("engine: missing dependency")
	ErrNoTenant   = errors.New("engine: no tenant scope configured (Config.Tenant or Config.Tenants)")
)

// Config configures a factory. Zero fields take the documented defaults.
type Config struct {
	// Tenant is the scope of a watcher serving one tenant; every trigger
	// must belong to it. Engine needs Tenant or Tenants; ingest and the
	// worker serve every tenant.
	Tenant string
	// Tenants is the scope of a watcher serving several tenants from one
	// change stream: tenant names, or [trigger.AllTenants] for every
	// tenant that has triggers. Exclusive with Tenant.
	Tenants []string
	// MaxTenantLabels bounds the tenant label values of every stage's
	// metrics (see package tenantlabel). Defaults to
	// tenantlabel.DefaultMax; -1 names every tenant.
	MaxTenantLabels int
	// Limits bounds trigger contents. Defaults to trigger.DefaultLimits().
	Limits trigger.Limits
	// CostLimit bounds CEL evaluation cost. Defaults to condition.DefaultCostLimit.
	CostLimit uint64
	// Streams names the streams and says whether to create or verify them.
	// Zero fields take streams.Config's defaults.
	Streams streams.Config
	// Watcher configures checkpointing and filters; its Tenant and its
	// dependencies (Logger, Registerer, Auditor) are filled from the
	// factory.
	Watcher watcher.Config
	// Publisher configures JetStream publishing; its Stream and its
	// dependencies (DeadLetters, Logger, Registerer) are filled from the
	// factory.
	Publisher publisher.Config
	// Ingest configures the Ingester; an empty Stream is Streams.Stream.
	// Its dependencies (DeadLetters, Logger, Registerer) are filled from
	// the factory.
	Ingest ingest.Config
	// Activities configures the webhook activities RegisterWorker
	// installs; its dependencies (DeadLetters, Logger, Registerer) are
	// filled from the factory.
	Activities activities.Config
	// Workflows configures the delivery workflow RegisterWorker installs.
	Workflows workflows.Options
	// Images configures the image buckets of the claim check (package
	// images): the publisher stores large images there, the worker
	// fetches and releases them, and every stage's dead letters keep
	// their own copies. Its Streams and dependencies are filled from the
	// factory. Used only when Deps.NATS is set.
	Images images.Config
}

// Deps are the dependencies a factory is built with. The engine never
// creates its own connections, so callers (and tests) decide how they are
// configured and shared. It hands Logger, Registerer and DeadLetters to
// every stage's Config, where, as here, nil Logger and Registerer mean
// discard.
type Deps struct {
	// Logger receives the logs of the engine and every stage; nil
	// discards.
	Logger *slog.Logger
	// Source is the document change stream. Required by Run.
	Source watcher.Source
	// NATS is the connection to publish on. Required by Run.
	NATS *nats.Conn
	// Registerer receives the metrics of every stage; nil registers none.
	Registerer prometheus.Registerer
	// Auditor receives audit records (start-from-now, resume tokens,
	// re-seeds, reloads); nil only logs them.
	Auditor watcher.Auditor
	// Temporal is the client ingest signals workflows with. Required by
	// Ingester.
	Temporal ingest.TemporalClient
	// DeadLetters receives what a stage gives up on; nil writes to
	// Streams.DeadLetterStream over NATS.
	DeadLetters deadletter.Sink
	// Secrets resolves webhook signing secrets, Tokens mints the bearer
	// tokens, and WebhookHTTP customises the webhook client under the
	// egress guard (see activities.Deps); used by RegisterWorker.
	Secrets     activities.SecretResolver
	Tokens      activities.TokenSource
	WebhookHTTP activities.HTTPOptions
	// TaskSigner signs every task the engine publishes (a
	// *tasksig.Signer); nil publishes unsigned tasks. TaskVerifier
	// authenticates tasks in ingest and the worker's activities before
	// they act on one; nil trusts every task.
	TaskSigner   TaskSigner
	TaskVerifier TaskVerifier
	// TenantLabels names tenants in the metrics of every stage; share it
	// with the source so that all name the same tenants. nil makes one
	// from Config.MaxTenantLabels.
	TenantLabels *tenantlabel.Guard
}

// TaskSigner signs a delivery task in place.
type TaskSigner interface {
	Sign(t *trigger.DeliveryTask)
}

// TaskVerifier authenticates a delivery task.
type TaskVerifier interface {
	Verify(t *trigger.DeliveryTask) error
}

// Option adjusts a factory at construction.
type Option func(*factory) error

// WithConfig sets the factory configuration.
func WithConfig(cfg Config) Option {
	return func(f *factory) error {
		f.cfg = cfg
		return nil
	}
}

// NewFactory builds a factory from deps and options, filling defaults and
// validating the result.
func NewFactory(deps Deps, opts ...Option) (TriggerFactory, error) {
	f := &factory{deps: deps}
	for _, o := range opts {
		if err := o(f); err != nil {
			return nil, err
		}
	}
	if f.deps.Logger == nil {
		f.deps.Logger = slog.New(slog.DiscardHandler)
	}
	f.cfg.Limits = f.cfg.Limits.WithDefaults()
	f.cfg.Streams = f.cfg.Streams.WithDefaults()
	f.cfg.Ingest.Stream = cmp.Or(f.cfg.Ingest.Stream, f.cfg.Streams.Stream)
	labels := f.deps.TenantLabels
	if labels == nil {
		labels = tenantlabel.New(f.cfg.MaxTenantLabels)
	}
	if f.deps.NATS != nil {
		js, err := jetstream.New(f.deps.NATS)
		if err != nil {
			return nil, fmt.Errorf("engine: jetstream: %w", err)
		}
		icfg := f.cfg.Images
		icfg.Streams, icfg.Logger, icfg.Registerer, icfg.TenantLabels = f.cfg.Streams, f.deps.Logger, f.deps.Registerer, labels
		if f.images, err = images.New(js, icfg); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	if f.cfg.Tenant == "" && len(f.cfg.Tenants) == 0 {
		f.eng = &triggerEngine{cfg: f.cfg, deps: f.deps, log: f.deps.Logger, labels: labels, images: f.images}
		return f, nil
	}
	if f.cfg.Tenant != "" && len(f.cfg.Tenants) > 0 {
		return nil, fmt.Errorf("engine: config: Tenant and Tenants are mutually exclusive")
	}
	compiler, err := condition.NewCompiler(f.cfg.CostLimit)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	scope := f.cfg.Tenants
	log := f.deps.Logger.With("component", "engine")
	if f.cfg.Tenant != "" {
		scope = []string{f.cfg.Tenant}
		log = log.With("tenant", f.cfg.Tenant)
	}
	v, err := trigger.NewScopeValidator(scope, f.cfg.Limits, compiler)
	if err != nil {
		return nil, fmt.Errorf("engine: config: %w", err)
	}
	ev, err := evaluator.New(evaluator.Config{Logger: f.deps.Logger, Registerer: f.deps.Registerer, TenantLabels: labels})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	m, err := newMetrics(f.deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &triggerEngine{cfg: f.cfg, deps: f.deps, validator: v, evaluator: ev, log: log, metrics: m, labels: labels, images: f.images}
	if !(len(scope) == 1 && scope[0] == trigger.AllTenants) {
		e.listed = slices.Clone(scope)
	}
	e.active.Store(&sets{})
	f.eng = e
	return f, nil
}

type factory struct {
	cfg    Config
	deps   Deps
	eng    *triggerEngine
	images *images.Store // nil without NATS

	actsMu sync.Mutex
	acts   *activities.Activities
}

func (f *factory) Engine() TriggerEngine { return f.eng }

// Close closes the engine and deletes the images whose release the
// worker's activities delayed.
func (f *factory) Close() error {
	err := f.eng.Close()
	if f.images != nil {
		err = errors.Join(err, f.images.Close())
	}
	return err
}

func (f *factory) Ingester() (*ingest.Ingester, error) {
	if f.deps.NATS == nil || f.deps.Temporal == nil {
		return nil, fmt.Errorf("%w: NATS and Temporal are required by the Ingester", ErrNoDeps)
	}
	js, err := jetstream.New(f.deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("engine: jetstream: %w", err)
	}
	cfg := f.cfg.Ingest
	cfg.DeadLetters, cfg.Logger, cfg.Registerer = f.keepImages(f.deadLetters(js)), f.deps.Logger, f.deps.Registerer
	if f.deps.TaskVerifier != nil {
		cfg.Verifier = f.deps.TaskVerifier
	}
	return ingest.New(cfg, js, f.deps.Temporal)
}

func (f *factory) RegisterWorker(w worker.Registry) error {
	f.actsMu.Lock()
	defer f.actsMu.Unlock()
	if f.acts == nil {
		dl := f.deps.DeadLetters
		if dl == nil {
			if f.deps.NATS == nil {
				return fmt.Errorf("%w: NATS or DeadLetters is required by the worker", ErrNoDeps)
			}
			js, err := jetstream.New(f.deps.NATS)
			if err != nil {
				return fmt.Errorf("engine: jetstream: %w", err)
			}
			dl = f.deadLetters(js)
		}
		cfg := f.cfg.Activities
		cfg.DeadLetters, cfg.Logger, cfg.Registerer = f.keepImages(dl), f.deps.Logger, f.deps.Registerer
		deps := activities.Deps{
			Secrets: f.deps.Secrets, Tokens: f.deps.Tokens, HTTP: f.deps.WebhookHTTP, Verifier: f.deps.TaskVerifier,
		}
		if f.images != nil {
			deps.Images = f.images
		}
		acts, err := activities.New(cfg, deps)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		f.acts = acts
	}
	workflows.Register(w, f.acts, f.cfg.Workflows.WithDefaults())
	return nil
}

// keepImages makes dl keep copies of the images a dead letter's task
// references, so a redrive finds them after the task bucket's TTL.
func (f *factory) keepImages(dl deadletter.Sink) deadletter.Sink {
	if f.images == nil {
		return dl
	}
	return f.images.KeepForDeadLetters(dl)
}

// deadLetters is Deps.DeadLetters, or the dead-letter stream over js.
func (f *factory) deadLetters(js jetstream.JetStream) deadletter.Sink {
	if f.deps.DeadLetters != nil {
		return f.deps.DeadLetters
	}
	return deadletter.NewPublisher(js, f.cfg.Streams.DeadLetterStream)
}

// Set is one tenant's immutable, validated trigger set with compiled
// conditions.
type Set struct {
	Tenant string
	// Generation increases with every load that changed a set.
	Generation uint64
	Triggers   []*trigger.Trigger
	Conditions []*condition.Program
	index      *evaluator.Index
}

// sets holds the active Set of each tenant; replaced whole, never changed.
type sets struct {
	byTenant map[string]*Set
	loaded   bool // a load succeeded for at least one tenant
}

type triggerEngine struct {
	cfg       Config
	deps      Deps
	validator *trigger.Validator
	evaluator *evaluator.Evaluator
	log       *slog.Logger
	metrics   *metrics
	labels    *tenantlabel.Guard
	images    *images.Store // nil without NATS
	// listed is the configured scope; nil for all tenants with triggers.
	listed []string

	active atomic.Pointer[sets]
	gen    atomic.Uint64
	loadMu sync.Mutex // one load at a time

	// Set once the pipeline runs; read by Ready.
	running atomic.Bool
	dl      deadletter.Sink
	pub     *publisher.Publisher

	mu      sync.Mutex
	started bool
	closed  bool
	watcher *watcher.DocumentWatcher // set while Run runs
}

func (e *triggerEngine) LoadTriggers(ts []*trigger.Trigger) error {
	if e.validator == nil {
		return ErrNoTenant
	}
	res, err := trigger.GroupByTenant(ts, e.validator)
	if err != nil {
		return err
	}
	return e.LoadSets(res)
}

func (e *triggerEngine) LoadSets(res *trigger.TenantSets) error {
	if e.validator == nil {
		return ErrNoTenant
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	cur := e.active.Load()
	loadErr := res.Err()
	if e.cfg.Tenant != "" && loadErr != nil {
		// One tenant: the whole load is that tenant's.
		e.reportFailed([]string{e.cfg.Tenant}, loadErr)
		return loadErr
	}

	failed := make(map[string]bool, len(res.Failed))
	var unowned []trigger.Problem
	for t, ve := range res.Failed {
		failed[t] = true
		if !e.validator.InScope(t) {
			unowned = append(unowned, ve.Problems...)
		}
	}
	if res.Unattributed != nil {
		unowned = append(unowned, res.Unattributed.Problems...)
	}
	// A problem that names no tenant of the scope — a file too broken to
	// say whose it is, a trigger whose tenant field is missing or
	// misspelt, a directory that cannot be read — fails the tenants whose
	// triggers came from that file, or from below that directory, before:
	// they keep their set rather than lose it to a typo.
	for _, p := range unowned {
		file := trigger.FileOf(p.File)
		for t, set := range cur.byTenant {
			if file == "" || slices.ContainsFunc(set.Triggers, func(tr *trigger.Trigger) bool {
				f := trigger.FileOf(tr.Source)
				return f == file || strings.HasPrefix(f, strings.TrimSuffix(file, "/")+"/")
			}) {
				failed[t] = true
			}
		}
	}

	next := &sets{byTenant: make(map[string]*Set, len(res.Triggers)), loaded: cur.loaded}
	var errs []error
	if loadErr != nil {
		errs = append(errs, loadErr)
	}
	gen := e.gen.Add(1)
	for t, group := range res.Triggers {
		if failed[t] {
			continue
		}
		set, err := e.compile(t, group, gen)
		if err != nil {
			failed[t] = true
			errs = append(errs, err)
			continue
		}
		next.byTenant[t] = set
	}
	for t := range failed {
		if prev := cur.byTenant[t]; prev != nil && e.validator.InScope(t) {
			next.byTenant[t] = prev
		}
	}
	for _, t := range e.listed {
		if _, ok := next.byTenant[t]; !ok && !failed[t] {
			// A listed tenant without triggers is still served: its
			// checkpoint keeps up, and triggers added later start there.
			next.byTenant[t] = &Set{Tenant: t, Generation: gen}
		}
	}
	for t := range next.byTenant {
		if !failed[t] {
			next.loaded = true
		}
	}
	e.active.Store(next)

	var failedNames []string
	for t := range failed {
		if e.validator.InScope(t) {
			failedNames = append(failedNames, t)
		}
	}
	slices.Sort(failedNames)
	err := errors.Join(errs...)
	e.reportFailed(failedNames, err)
	// Per label, not per tenant: tenants folded into one label by the
	// guard share its series, so it sums their triggers and shows a
	// failure while any of them failed.
	triggers, loadFailed := map[string]float64{}, map[string]float64{}
	for t, set := range next.byTenant {
		l := e.labels.Label(t)
		triggers[l] += float64(len(set.Triggers))
		if failed[t] {
			loadFailed[l] = 1
		} else if _, ok := loadFailed[l]; !ok {
			loadFailed[l] = 0
		}
	}
	for _, t := range failedNames {
		loadFailed[e.labels.Label(t)] = 1
	}
	for l, n := range triggers {
		e.metrics.triggers.WithLabelValues(l).Set(n)
	}
	for l, v := range loadFailed {
		e.metrics.loadFailed.WithLabelValues(l).Set(v)
	}
	for t := range cur.byTenant {
		if l := e.labels.Label(t); !hasKey(triggers, l) {
			e.metrics.triggers.DeleteLabelValues(l)
			e.metrics.loadFailed.DeleteLabelValues(l)
		}
	}
	e.log.Info("trigger sets loaded", "generation", gen, "tenants", len(next.byTenant), "failed", failedNames, "triggers", next.count())
	e.rescope(next)
	return err
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// compile validates one tenant's triggers and indexes them.
func (e *triggerEngine) compile(tenant string, ts []*trigger.Trigger, gen uint64) (*Set, error) {
	progs, err := e.validator.Validate(ts)
	if err != nil {
		return nil, err
	}
	ix, err := e.evaluator.Compile(ts, progs)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return &Set{Tenant: tenant, Generation: gen, Triggers: ts, Conditions: progs, index: ix}, nil
}

// rescope tells a running watcher which tenants are served now.
func (e *triggerEngine) rescope(next *sets) {
	e.mu.Lock()
	w := e.watcher
	e.mu.Unlock()
	if w == nil || e.cfg.Tenant != "" {
		return
	}
	names := next.names()
	if slices.Equal(names, w.Tenants()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.SetTenants(ctx, names); err != nil {
		e.log.Error("tenant scope not changed; the watcher serves the previous tenants", "error", err)
	}
}

func (s *sets) names() []string { return slices.Sorted(maps.Keys(s.byTenant)) }

func (s *sets) count() int {
	n := 0
	for _, set := range s.byTenant {
		n += len(set.Triggers)
	}
	return n
}

// reportFailed turns the load-failed gauge on for tenants and logs err.
func (e *triggerEngine) reportFailed(tenants []string, err error) {
	if err == nil {
		return
	}
	for _, t := range tenants {
		e.metrics.loadFailed.WithLabelValues(e.labels.Label(t)).Set(1)
	}
	e.log.Error("trigger set rejected; the previous set stays active", "tenants", tenants, "error", err)
}

func (e *triggerEngine) ReportLoadFailure(err error) {
	if e.metrics == nil {
		return // no tenant, so no set to keep
	}
	e.reportFailed(e.active.Load().names(), err)
}

// Active returns tenant's active set, or nil.
func (e *triggerEngine) Active(tenant string) *Set {
	if s := e.active.Load(); s != nil {
		return s.byTenant[tenant]
	}
	return nil
}

func (e *triggerEngine) Tenants() []string {
	if s := e.active.Load(); s != nil {
		return s.names()
	}
	return nil
}

func (e *triggerEngine) Ready(context.Context) error {
	switch {
	case e.validator == nil:
		return fmt.Errorf("%w: %w", ErrNotReady, ErrNoTenant)
	case !e.active.Load().loaded:
		return fmt.Errorf("%w: %w", ErrNotReady, ErrNoTriggers)
	case !e.running.Load():
		return fmt.Errorf("%w: pipeline not started", ErrNotReady)
	case !e.deps.NATS.IsConnected():
		return fmt.Errorf("%w: NATS %s", ErrNotReady, e.deps.NATS.Status())
	}
	return nil
}

func (e *triggerEngine) Run(ctx context.Context) error {
	e.mu.Lock()
	switch {
	case e.validator == nil:
		e.mu.Unlock()
		return ErrNoTenant
	case e.closed:
		e.mu.Unlock()
		return ErrClosed
	case e.started:
		e.mu.Unlock()
		return errors.New("engine: already started")
	case !e.active.Load().loaded || len(e.active.Load().byTenant) == 0:
		e.mu.Unlock()
		return ErrNoTriggers
	case e.deps.Source == nil || e.deps.NATS == nil:
		e.mu.Unlock()
		return fmt.Errorf("%w: Source and NATS are required to start", ErrNoDeps)
	}
	e.started = true
	e.mu.Unlock()

	pcfg := e.cfg.Publisher
	pcfg.Stream = e.cfg.Streams.Stream
	pcfg.Logger = e.deps.Logger
	pcfg.Registerer = e.deps.Registerer
	pcfg.TenantLabels = e.labels
	js, err := jetstream.New(e.deps.NATS, pcfg.WithDefaults().JetStreamOptions()...)
	if err != nil {
		return fmt.Errorf("engine: jetstream: %w", err)
	}
	if err := streams.EnsureWhenReachable(ctx, js, e.cfg.Streams, e.deps.Logger); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS
		}
		return fmt.Errorf("engine: streams: %w", err)
	}
	e.dl = e.deps.DeadLetters
	if e.dl == nil {
		e.dl = deadletter.NewPublisher(js, e.cfg.Streams.DeadLetterStream)
	}
	pcfg.DeadLetters = e.dl
	if e.images != nil {
		pcfg.Images = e.images
	}
	pub, err := publisher.New(js, pcfg)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.pub = pub
	defer func() {
		// Tasks still unacknowledged here are not checkpointed; they are
		// republished on the next start and dropped as duplicates.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := pub.Flush(fctx); err != nil {
			e.log.Warn("publisher did not drain", "error", err)
		}
		_ = pub.Close()
	}()

	wcfg := e.cfg.Watcher
	wcfg.Tenant, wcfg.Tenants = e.cfg.Tenant, nil
	if e.cfg.Tenant == "" {
		wcfg.Tenants = e.Tenants()
	}
	wcfg.Logger = e.deps.Logger
	wcfg.Registerer = e.deps.Registerer
	wcfg.TenantLabels = e.labels
	wcfg.Auditor = e.deps.Auditor
	onStarted := wcfg.OnStarted
	wcfg.OnStarted = func(from string) {
		e.running.Store(true)
		if onStarted != nil {
			onStarted(from)
		}
	}
	w, err := watcher.New(e.deps.Source, wcfg)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.mu.Lock()
	e.watcher = w
	e.mu.Unlock()
	// A load between building the watcher and recording it would not have
	// rescoped it; under loadMu, so that a concurrent load's scope is not
	// overwritten by this older one.
	e.loadMu.Lock()
	e.rescope(e.active.Load())
	e.loadMu.Unlock()
	defer func() {
		e.mu.Lock()
		e.watcher = nil
		e.mu.Unlock()
		e.running.Store(false)
	}()
	return w.Run(ctx, e.handle)
}

// handle evaluates one change and publishes a task per matching trigger.
// done is called once every task is acknowledged by JetStream (or
// dead-lettered with its reason); until then the change is not checkpointed.
func (e *triggerEngine) handle(ctx context.Context, c watcher.Change, done func()) error {
	if c.Problem != "" {
		if err := e.deadLetterChange(ctx, c); err != nil {
			return err
		}
		done()
		return nil
	}
	set := e.active.Load().byTenant[c.Tenant]
	if set == nil || set.index == nil {
		// The tenant left the scope after the watcher handed this out.
		done()
		return nil
	}
	matches, err := set.index.Match(ctx, &c)
	if err != nil {
		return err
	}
	if len(matches) == 0 {
		done()
		return nil
	}
	var remaining atomic.Int32
	remaining.Store(int32(len(matches)))
	for _, m := range matches {
		task := m.Task(&c)
		if e.deps.TaskSigner != nil {
			e.deps.TaskSigner.Sign(task)
		}
		err := e.pub.Publish(ctx, task, func(err error) {
			if err != nil {
				// The publisher gives up only when it is closing; leaving
				// the change unfinished makes the next start replay it.
				e.log.Warn("task not published; it will be replayed", "trigger", task.TriggerID, "eventId", task.EventID, "error", err)
				return
			}
			if remaining.Add(-1) == 0 {
				done()
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// deadLetterChange records a change the source could not decode. It retries
// until the record is stored or ctx ends: a bad row is never dropped
// silently, and never checkpointed past before it is recorded.
func (e *triggerEngine) deadLetterChange(ctx context.Context, c watcher.Change) error {
	rec := deadletter.Record{
		ID: trigger.NewEventID(c.Tenant, "", c.Collection, c.DocKey, c.Position), Stage: deadletter.StageWatch,
		Reason: "undecodable-change", Detail: c.Problem,
		Tenant: c.Tenant, Collection: c.Collection, DocKey: c.DocKey,
	}
	retry := backoff.Exponential{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := e.dl.Publish(ctx, rec)
		if err == nil {
			e.metrics.undecodable.WithLabelValues(e.labels.Label(c.Tenant)).Inc()
			e.log.Warn("change dead-lettered", "collection", c.Collection, "docKey", c.DocKey, "position", c.Position, "problem", c.Problem)
			return nil
		}
		e.log.Warn("dead-letter write failed; retrying", "error", err)
		if !retry.Sleep(ctx) {
			return ctx.Err()
		}
	}
}

func (e *triggerEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

type metrics struct {
	loadFailed  *prometheus.GaugeVec
	triggers    *prometheus.GaugeVec
	undecodable *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := promreg.New(reg)
	m := &metrics{
		loadFailed: r.GaugeVec("triggerflow_triggers_load_failed",
			"1 while the tenant's last trigger reload failed (its previous set stays active), else 0.",
			"tenant"),
		triggers: r.GaugeVec("triggerflow_triggers_active",
			"Triggers in the tenant's active set.",
			"tenant"),
		undecodable: r.CounterVec("triggerflow_watcher_changes_dead_lettered_total",
			"Changes the source could not decode, dead-lettered with the reason.",
			"tenant"),
	}
	return m, r.Err()
}

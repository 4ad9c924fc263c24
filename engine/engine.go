// Package engine is Triggerflow's public entry point for the watcher side of
// the pipeline: a TriggerFactory built from configuration and injected
// dependencies hands out a TriggerEngine, which loads a validated trigger set
// and runs watcher → evaluator → publisher.
//
// Ingest (JetStream → Temporal) and the delivery worker run as separate
// services with their own constructors; they need no trigger files because
// every delivery task carries what they need.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/trigger"
)

// TriggerEngine matches document changes against a trigger set and publishes
// delivery tasks.
type TriggerEngine interface {
	// LoadTriggers validates ts against the engine's tenant scope and, only
	// if every trigger is valid, replaces the active set atomically. On error
	// the previous set stays active and the error lists every problem
	// (errors.Is(err, trigger.ErrInvalidTriggers)). Events already being
	// evaluated finish under the set they started with.
	LoadTriggers(ts []*trigger.Trigger) error
	// Start runs the pipeline until ctx is done or a stage fails for good.
	Start(ctx context.Context) error
	// Close stops the pipeline and releases what the engine owns.
	Close() error
}

// TriggerFactory builds the engine and owns the lifetime of what it wires.
type TriggerFactory interface {
	Engine() TriggerEngine
	Close() error
}

// Errors returned by the engine.
var (
	ErrNoTriggers = errors.New("engine: no trigger set loaded")
	ErrClosed     = errors.New("engine: closed")
)

// Config configures a factory. Zero fields take the documented defaults.
type Config struct {
	// Tenant is the tenant scope; every trigger must belong to it. Required.
	Tenant string
	// Limits bounds trigger contents. Defaults to trigger.DefaultLimits().
	Limits trigger.Limits
	// CostLimit bounds CEL evaluation cost. Defaults to condition.DefaultCostLimit.
	CostLimit uint64
}

// Deps are the dependencies a factory is built with. The engine never
// creates its own connections, so callers (and tests) decide how they are
// configured and shared.
type Deps struct {
	// Logger receives the engine's logs. Defaults to slog.Default().
	Logger *slog.Logger
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
		f.deps.Logger = slog.Default()
	}
	f.cfg.Limits = f.cfg.Limits.WithDefaults()
	if f.cfg.Tenant == "" {
		return nil, fmt.Errorf("engine: config: Tenant is required")
	}
	compiler, err := condition.NewCompiler(f.cfg.CostLimit)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	v, err := trigger.NewValidator(f.cfg.Tenant, f.cfg.Limits, compiler)
	if err != nil {
		return nil, fmt.Errorf("engine: config: %w", err)
	}
	f.eng = &triggerEngine{
		validator: v,
		log:       f.deps.Logger.With("component", "engine", "tenant", f.cfg.Tenant),
	}
	return f, nil
}

type factory struct {
	cfg  Config
	deps Deps
	eng  *triggerEngine
}

func (f *factory) Engine() TriggerEngine { return f.eng }
func (f *factory) Close() error          { return f.eng.Close() }

// Set is an immutable, validated trigger set with compiled conditions.
type Set struct {
	// Generation increases with every successful LoadTriggers.
	Generation uint64
	Triggers   []*trigger.Trigger
	Conditions []*condition.Program
}

type triggerEngine struct {
	validator *trigger.Validator
	log       *slog.Logger

	active atomic.Pointer[Set]
	gen    atomic.Uint64

	mu     sync.Mutex
	closed bool
}

func (e *triggerEngine) LoadTriggers(ts []*trigger.Trigger) error {
	progs, err := e.validator.Validate(ts)
	if err != nil {
		e.log.Error("trigger set rejected; previous set stays active", "error", err)
		return err
	}
	set := &Set{Generation: e.gen.Add(1), Triggers: ts, Conditions: progs}
	e.active.Store(set)
	e.log.Info("trigger set loaded", "generation", set.Generation, "triggers", len(ts))
	return nil
}

// Active returns the current trigger set, or nil before the first load.
func (e *triggerEngine) Active() *Set { return e.active.Load() }

func (e *triggerEngine) Start(ctx context.Context) error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if e.active.Load() == nil {
		return ErrNoTriggers
	}
	<-ctx.Done()
	return nil
}

func (e *triggerEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

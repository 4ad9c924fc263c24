// Package watcher turns a document change stream into an at-least-once feed
// of changes, resuming from a tenant-scoped checkpoint.
//
// A DocumentWatcher reads a Source from its checkpoint and hands each change
// to a Handler together with a done callback. The checkpoint only ever
// advances over the contiguous prefix of changes whose done was called, and
// the source is told to release history (Confirm) only after that checkpoint
// was saved. A crash therefore replays changes that were emitted but not
// finished, and never skips one.
package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/internal/backoff"
	"github.com/triggerflow/triggerflow/tenantlabel"
)

// CheckpointPrefix is the key prefix of every watcher checkpoint.
const CheckpointPrefix = "sys/checkpoints/trigger_evaluator/"

// Errors.
var (
	// ErrNoCheckpoint means the tenant has no checkpoint and neither
	// start-from-now nor a resume token was given.
	ErrNoCheckpoint = errors.New("watcher: no checkpoint")
	// ErrInvalidConfig wraps configuration problems.
	ErrInvalidConfig = errors.New("watcher: invalid config")
)

// Handler receives each change. It must call done exactly once, possibly
// later and from another goroutine, when the change is durably handled (for
// the engine: every task it produced was acknowledged by JetStream). An
// error stops the watcher.
type Handler func(ctx context.Context, c Change, done func()) error

// Auditor records operator-visible decisions; *audit.Writer is one.
type Auditor interface {
	Write(ctx context.Context, rec audit.Record) error
}

// Config configures a DocumentWatcher.
type Config struct {
	// Tenant is the scope of a watcher serving one tenant. Exactly one of
	// Tenant and Tenants is set.
	Tenant string
	// Tenants is the scope of a watcher serving several tenants from one
	// change stream. Each tenant has its own checkpoints; SetTenants
	// changes the scope while the watcher runs.
	Tenants []string
	// Include lists collection prefixes to watch; empty means all. With
	// includes, each entry has its own checkpoint (see CheckpointKeys).
	Include []string
	// Exclude lists collection prefixes to skip.
	Exclude []string
	// StartFromNow lets tenants without a checkpoint start at the source's
	// head instead of failing when no tenant of the scope has one. It
	// writes an audit record per tenant. Defaults to false. Once one
	// tenant has a checkpoint, a tenant added later always starts from
	// now, audited, unless an operator saved a checkpoint for it.
	StartFromNow bool
	// ResumeToken, when set, replaces the checkpoints of every tenant in
	// the scope at start: the watcher replays the changes after this
	// position. It goes through the source's ParsePosition: New refuses
	// one the source cannot read, and stores and compares its canonical
	// form. It writes an audit record per tenant.
	ResumeToken string
	// Actor and Reason go into audit records. Actor defaults to "watcher".
	Actor, Reason string
	// CheckpointEvery saves after this many finished changes. Defaults to 500.
	CheckpointEvery int
	// CheckpointInterval saves at least this often while changes finish.
	// Defaults to 1s.
	CheckpointInterval time.Duration
	// MaxInFlight bounds changes handed out but not yet finished; the
	// watcher stops reading while it is reached. Defaults to 10,000.
	MaxInFlight int
	// DrainTimeout is how long Run waits at shutdown for handed-out
	// changes to finish before the final checkpoint. Defaults to 5s.
	DrainTimeout time.Duration
	// RetryInitial and RetryMax space reconnects after source errors.
	// Default to 100ms and 10s.
	RetryInitial, RetryMax time.Duration
	// OnStarted, when set, is called once the start position is resolved
	// and saved, before the first change is read: from then on every new
	// commit will be seen, which is what readiness means for a watcher.
	OnStarted func(from string)

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// Logger receives source errors, checkpoint notes and audit records;
	// nil discards.
	Logger *slog.Logger
	// Registerer receives the watcher's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// TenantLabels bounds the tenant label values of the metrics; nil
	// names every tenant.
	TenantLabels *tenantlabel.Guard
	// Auditor receives audit records; nil leaves them to Logger only.
	Auditor Auditor
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Actor = cmp.Or(c.Actor, "watcher")
	c.CheckpointEvery = cmp.Or(c.CheckpointEvery, 500)
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, time.Second)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, 10_000)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 5*time.Second)
	c.RetryInitial = cmp.Or(c.RetryInitial, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate(src Source) error {
	var errs []error
	switch {
	case c.Tenant == "" && len(c.Tenants) == 0:
		errs = append(errs, errors.New("a tenant scope is required (Tenant or Tenants)"))
	case c.Tenant != "" && len(c.Tenants) > 0:
		errs = append(errs, errors.New("set Tenant or Tenants, not both"))
	}
	for _, t := range c.Tenants {
		if t == "" {
			errs = append(errs, errors.New("Tenants holds an empty name"))
		}
	}
	if c.StartFromNow && c.ResumeToken != "" {
		errs = append(errs, errors.New("StartFromNow and ResumeToken are mutually exclusive"))
	}
	if c.ResumeToken != "" {
		if _, err := src.ParsePosition(c.ResumeToken); err != nil {
			errs = append(errs, fmt.Errorf("resume token (watcher.resumeToken): %w", err))
		}
	}
	if c.CheckpointEvery < 1 || c.MaxInFlight < 1 || c.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("CheckpointEvery, MaxInFlight and CheckpointInterval must be positive"))
	}
	for _, p := range append(append([]string{}, c.Include...), c.Exclude...) {
		if p == "" || strings.HasPrefix(p, "/") {
			errs = append(errs, fmt.Errorf("collection prefix %q must be non-empty and relative", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// CheckpointKeys returns the checkpoint keys for a tenant and include list:
// one key for the tenant without includes, else one per include entry.
func CheckpointKeys(tenant string, include []string) []string {
	base := CheckpointPrefix + tenant
	if len(include) == 0 {
		return []string{base}
	}
	keys := make([]string, len(include))
	for i, p := range include {
		keys[i] = base + "/" + strings.TrimSuffix(p, "/")
	}
	return keys
}

// DocumentWatcher feeds a Handler from a Source with checkpointing.
type DocumentWatcher struct {
	src     Source
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex
	// tenants is the scope to serve, sorted.
	tenants []string
	// scope is what the running session serves; nil while none runs.
	scope *scope
	// lastRead is the position of the newest change the session read:
	// a tenant added now starts after it.
	lastRead string
	// restart ends the session's Watch so that the next one starts early
	// enough for a tenant that needs changes already read.
	restart context.CancelCauseFunc
}

// scope is the tenants a session serves and where each checkpoint key
// stands. It is replaced whole, never changed in place.
type scope struct {
	keys map[string][]string // tenant → its checkpoint keys
	skip map[string]string   // checkpoint key → its changes up to here are had
	// held marks keys added with a checkpoint behind what the session
	// read: the session's finished prefix says nothing about them, so they
	// neither match nor advance until the restart starts from them.
	held map[string]bool
}

func newScope() *scope {
	return &scope{keys: map[string][]string{}, skip: map[string]string{}, held: map[string]bool{}}
}

// names returns the tenants, sorted.
func (s *scope) names() []string {
	return slices.Sorted(maps.Keys(s.keys))
}

// errRestart ends a session whose scope gained a tenant behind it.
var errRestart = errors.New("watcher: restarting the stream for an added tenant")

// New builds a watcher over src.
func New(src Source, cfg Config) (*DocumentWatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(src); err != nil {
		return nil, err
	}
	// Only the canonical form compares correctly with the source's
	// positions: "1" sorts after "00000000000000000002".
	cfg.ResumeToken, _ = src.ParsePosition(cfg.ResumeToken)
	m, err := newMetrics(cfg.Registerer, cfg.TenantLabels)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "watcher")
	tenants := cfg.Tenants
	if cfg.Tenant != "" {
		tenants = []string{cfg.Tenant}
		log = log.With("tenant", cfg.Tenant)
	}
	return &DocumentWatcher{
		src:     src,
		cfg:     cfg,
		log:     log,
		metrics: m,
		tenants: sortedUnique(tenants),
	}, nil
}

func sortedUnique(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// Tenants returns the tenants the watcher serves.
// While a session runs they are the tenants it serves, which a SetTenants
// that failed did not change.
func (w *DocumentWatcher) Tenants() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.scope != nil {
		return w.scope.names()
	}
	return slices.Clone(w.tenants)
}

// Run watches until ctx is done, then saves the checkpoint of everything
// finished so far and returns nil. It returns an error when the start
// position cannot be determined or the handler fails.
func (w *DocumentWatcher) Run(ctx context.Context, h Handler) error {
	retry := backoff.Exponential{Initial: w.cfg.RetryInitial, Max: w.cfg.RetryMax}
	for first := true; ; first = false {
		err := w.session(ctx, h, first)
		switch {
		case errors.Is(err, errRestart):
			w.log.Info("restarting the change stream from the oldest checkpoint of the scope")
		case errors.Is(err, errStartAgain):
			// A restart that could not read its start (the store, the
			// audit trail) must not end a pipeline that ran: try again.
			wait := retry.Next()
			w.log.Warn("restart failed; retrying", "error", err, "backoff", wait)
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
		default:
			return err
		}
	}
}

// errStartAgain wraps a failure to find a restarted session's start.
var errStartAgain = errors.New("watcher: restart")

// session reads from the scope's oldest checkpoint until ctx is done, the
// handler fails, or SetTenants added a tenant whose checkpoint lies behind
// what was read (errRestart, after saving what finished).
func (w *DocumentWatcher) session(ctx context.Context, h Handler, first bool) error {
	start, sc, err := w.startPosition(ctx, first)
	if err != nil {
		if !first && ctx.Err() == nil {
			return fmt.Errorf("%w: %w", errStartAgain, err)
		}
		return err
	}
	if first && (w.cfg.StartFromNow || w.cfg.ResumeToken != "") && start != "" {
		// The start was saved as the checkpoint; let the source release
		// what lies behind it now rather than at the first save.
		w.confirm(ctx, start, sc.names())
	}
	watchCtx, restart := context.WithCancelCause(ctx)
	defer restart(nil)
	w.mu.Lock()
	w.scope, w.lastRead, w.restart = sc, start, restart
	pending := slices.Clone(w.tenants)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.scope, w.restart = nil, nil
		w.mu.Unlock()
	}()
	if !slices.Equal(pending, sc.names()) {
		// SetTenants ran while this session was finding its start and
		// found no scope to change: apply it now.
		if err := w.SetTenants(ctx, pending); err != nil {
			w.log.Error("tenant scope not changed at start; serving the tenants the session started with", "error", err)
		}
	}
	w.log.Info("watching", "from", start, "tenants", len(sc.keys))
	if first && w.cfg.OnStarted != nil {
		w.cfg.OnStarted(start)
	}

	tr := newTracker(start, w.cfg.MaxInFlight)
	ckptDone := make(chan error, 1)
	ckptCtx, stopCkpt := context.WithCancel(context.WithoutCancel(ctx))
	go func() { ckptDone <- w.checkpointLoop(ckptCtx, tr, maps.Clone(sc.skip)) }()

	runErr := w.watchLoop(ctx, watchCtx, h, tr, start)

	// Give changes already handed out a moment to finish, so a clean
	// shutdown saves them instead of replaying them on the next start.
	if runErr == nil || errors.Is(runErr, errRestart) {
		drain := time.NewTimer(w.cfg.DrainTimeout)
		select {
		case <-tr.idle():
		case <-drain.C:
			w.log.Warn("stopping with unfinished changes; they will be replayed", "drainTimeout", w.cfg.DrainTimeout)
		}
		drain.Stop()
	}
	stopCkpt()
	if err := <-ckptDone; err != nil && (runErr == nil || errors.Is(runErr, errRestart)) {
		runErr = err
	}
	return runErr
}

// watchLoop reads the source, reconnecting with backoff after source
// errors, until ctx is done, the handler fails, or watchCtx is cancelled
// for a restart. The handler gets ctx: a restart lets it finish.
func (w *DocumentWatcher) watchLoop(ctx, watchCtx context.Context, h Handler, tr *tracker, start string) error {
	pos := start
	retry := backoff.Exponential{Initial: w.cfg.RetryInitial, Max: w.cfg.RetryMax}
	for {
		var handlerErr error
		err := w.src.Watch(watchCtx, pos, func(c Change) error {
			if err := tr.acquire(watchCtx); err != nil {
				return err
			}
			w.mu.Lock()
			sc := w.scope
			w.lastRead = c.Position
			w.mu.Unlock()
			seq := tr.add(c.Position)
			pos = c.Position
			retry.Reset()
			if !w.wanted(sc, c) {
				tr.done(seq)
				w.metrics.skipped.WithLabelValues(w.scopeLabel(sc, c.Tenant)).Inc()
				return nil
			}
			tenant := w.metrics.tenant(c.Tenant)
			w.metrics.read.WithLabelValues(tenant).Inc()
			if !c.CommitTime.IsZero() {
				w.metrics.lag.WithLabelValues(tenant).Set(time.Since(c.CommitTime).Seconds())
			}
			once := sync.Once{}
			if err := h(ctx, c, func() { once.Do(func() { tr.done(seq) }) }); err != nil {
				handlerErr = err
				return err
			}
			return nil
		})
		switch {
		case handlerErr != nil:
			return fmt.Errorf("watcher: handler: %w", handlerErr)
		case ctx.Err() != nil:
			return nil
		case errors.Is(context.Cause(watchCtx), errRestart):
			return errRestart
		}
		w.metrics.sourceErrors.WithLabelValues(w.watcherLabel()).Inc()
		wait := retry.Next()
		w.log.Warn("source failed; reconnecting", "error", err, "resumeFrom", pos, "backoff", wait)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// wanted applies the tenant scope, include/exclude filters, and skips the
// changes a checkpoint key already has: those of tenants whose checkpoint
// is ahead of the session's start, and of include entries re-seeded after
// a filter change.
func (w *DocumentWatcher) wanted(sc *scope, c Change) bool {
	keys, ok := sc.keys[c.Tenant]
	if !ok {
		return false
	}
	for _, p := range w.cfg.Exclude {
		if hasCollectionPrefix(c.Collection, p) {
			return false
		}
	}
	// Both canonical (startPosition parsed every checkpoint), so byte-wise
	// order is the source's order.
	if len(w.cfg.Include) == 0 {
		return !sc.held[keys[0]] && c.Position > sc.skip[keys[0]]
	}
	for i, p := range w.cfg.Include {
		if hasCollectionPrefix(c.Collection, p) {
			return !sc.held[keys[i]] && c.Position > sc.skip[keys[i]]
		}
	}
	return false
}

// scopeLabel is the tenant label of a skipped change: its tenant when
// served, else the watcher's own label, so that the tenants of a shared
// database the watcher does not serve add no series.
func (w *DocumentWatcher) scopeLabel(sc *scope, tenant string) string {
	if _, ok := sc.keys[tenant]; ok {
		return w.metrics.tenant(tenant)
	}
	return w.watcherLabel()
}

// watcherLabel is the tenant label of what concerns the whole watcher:
// its tenant, or "*" for a watcher of several.
func (w *DocumentWatcher) watcherLabel() string {
	if w.cfg.Tenant != "" {
		return w.cfg.Tenant
	}
	return "*"
}

// hasCollectionPrefix matches whole segments: "chats" covers "chats" and
// "chats/1/members" but not "chatsarchive".
func hasCollectionPrefix(collection, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return collection == prefix || strings.HasPrefix(collection, prefix+"/")
}

// checkpointLoop saves the contiguous finished prefix every
// CheckpointInterval or CheckpointEvery changes, and once more when ctx is
// done, before returning. saved holds each key's stored position.
func (w *DocumentWatcher) checkpointLoop(ctx context.Context, tr *tracker, saved map[string]string) error {
	ticker := time.NewTicker(w.cfg.CheckpointInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			// Final save with a fresh deadline: the caller is shutting down.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := w.save(final, tr, saved); err != nil {
				return fmt.Errorf("watcher: final checkpoint save: %w", err)
			}
			return nil
		case <-ticker.C:
		case <-tr.progressC():
			if !tr.dueEvery(w.cfg.CheckpointEvery) {
				continue
			}
		}
		if err := w.save(ctx, tr, saved); err != nil {
			w.metrics.checkpointErrors.WithLabelValues(w.watcherLabel()).Inc()
			w.log.Warn("checkpoint save failed; will retry", "error", err)
		}
	}
}

// save moves every served key to the finished prefix (or keeps it where it
// stands when that is ahead), stores the keys that moved in one batch, and
// then lets the source release what every served key is past.
func (w *DocumentWatcher) save(ctx context.Context, tr *tracker, saved map[string]string) error {
	finished := tr.finished()
	w.mu.Lock()
	sc := w.scope
	w.mu.Unlock()
	if sc == nil {
		return nil
	}
	batch := make(map[string]string)
	var moved []string
	lowest, confirmable := "", true
	tenants := sc.names()
	for _, t := range tenants {
		tenantMoved := false
		for _, k := range sc.keys[t] {
			pos := max(sc.skip[k], finished)
			if sc.held[k] {
				// Waits for the restart; holds confirmation back.
				pos = sc.skip[k]
			}
			if pos == "" {
				confirmable = false
				continue
			}
			if lowest == "" || pos < lowest {
				lowest = pos
			}
			if saved[k] != pos && !sc.held[k] {
				batch[k] = pos
				tenantMoved = true
			}
		}
		if tenantMoved {
			moved = append(moved, t)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := w.src.Checkpoints().SaveAll(ctx, batch); err != nil {
		return err
	}
	maps.Copy(saved, batch)
	for _, t := range moved {
		w.metrics.checkpointSaves.WithLabelValues(w.metrics.tenant(t)).Inc()
	}
	if confirmable {
		w.confirm(ctx, lowest, tenants)
	}
	return nil
}

// confirm lets the source release history up to pos for tenants.
func (w *DocumentWatcher) confirm(ctx context.Context, pos string, tenants []string) {
	var err error
	if tc, ok := w.src.(TenantConfirmer); ok {
		err = tc.ConfirmTenants(ctx, pos, tenants)
	} else {
		err = w.src.Confirm(ctx, pos)
	}
	if err != nil {
		w.log.Warn("source confirm failed", "error", err, "position", pos)
	}
}

// startPosition decides where a session starts: the smallest position any
// served checkpoint key needs. It returns the scope with each key's own
// position. Only the first session applies the resume token.
func (w *DocumentWatcher) startPosition(ctx context.Context, first bool) (string, *scope, error) {
	w.mu.Lock()
	tenants := slices.Clone(w.tenants)
	w.mu.Unlock()
	store := w.src.Checkpoints()
	sc := newScope()
	for _, t := range tenants {
		sc.keys[t] = CheckpointKeys(t, w.cfg.Include)
	}
	stored, err := store.List(ctx, CheckpointPrefix)
	if err != nil {
		// A store that cannot be read now must not pass for a missing
		// checkpoint: with start-from-now that would skip every change
		// since the real one.
		return "", nil, fmt.Errorf("watcher: load checkpoints: %w", err)
	}

	if first && w.cfg.ResumeToken != "" {
		batch := make(map[string]string)
		for _, t := range tenants {
			key := sc.keys[t][0]
			if err := w.mustAudit(ctx, audit.Record{Action: audit.ActionResumeToken, Tenant: t, Key: key, Before: stored[key], After: w.cfg.ResumeToken}); err != nil {
				return "", nil, err
			}
			for _, k := range sc.keys[t] {
				batch[k] = w.cfg.ResumeToken
			}
			w.metrics.resets.WithLabelValues(w.metrics.tenant(t), "resume_token").Inc()
		}
		if err := store.SaveAll(ctx, batch); err != nil {
			return "", nil, fmt.Errorf("watcher: save resume token: %w", err)
		}
		maps.Copy(sc.skip, batch)
		return w.cfg.ResumeToken, sc, nil
	}

	var fresh []string
	unreadable := make(map[string]bool)
	reseeded := make(map[string]string)
	for _, t := range tenants {
		per, missing := w.canonical(stored, sc.keys[t], unreadable)
		if len(missing) > 0 && len(per) > 0 {
			// Filters changed: a new include entry starts where the
			// slowest existing checkpoint of the tenant stands, so nothing
			// it was already going to see is skipped. Documented in
			// docs/operations.md.
			seed := minPos(per)
			for _, k := range missing {
				per[k], reseeded[k] = seed, seed
				w.audit(ctx, audit.Record{Action: audit.ActionCheckpointReseed, Tenant: t, Key: k, After: seed})
				w.metrics.resets.WithLabelValues(w.metrics.tenant(t), "reseed").Inc()
			}
			missing = nil
		}
		if len(missing) > 0 && len(w.cfg.Include) > 0 {
			// Filtering was just turned on: carry the tenant-wide
			// checkpoint over.
			if pos, none := w.canonical(stored, []string{CheckpointPrefix + t}, nil); len(none) == 0 {
				seed := pos[CheckpointPrefix+t]
				for _, k := range missing {
					per[k], reseeded[k] = seed, seed
				}
				w.audit(ctx, audit.Record{Action: audit.ActionCheckpointReseed, Tenant: t, Key: CheckpointPrefix + t, After: seed, Reason: "include filters enabled"})
				w.metrics.resets.WithLabelValues(w.metrics.tenant(t), "reseed").Inc()
				missing = nil
			}
		}
		if len(missing) > 0 {
			fresh = append(fresh, t)
			continue
		}
		maps.Copy(sc.skip, per)
	}
	if len(reseeded) > 0 {
		if err := store.SaveAll(ctx, reseeded); err != nil {
			return "", nil, fmt.Errorf("watcher: reseed checkpoints: %w", err)
		}
	}
	if len(unreadable) > 0 && !w.cfg.StartFromNow {
		// Unlike a missing one, such a checkpoint stood somewhere: starting
		// that tenant from now would skip everything since.
		return "", nil, fmt.Errorf("%w: the checkpoint(s) %s cannot be read as positions of this source; "+
			"set them with `triggerflow checkpoint set`, or enable start-from-now (audited; changes committed before now are not delivered)",
			ErrNoCheckpoint, quoteList(slices.Sorted(maps.Keys(unreadable))))
	}
	if len(fresh) > 0 {
		if len(fresh) == len(tenants) && !w.cfg.StartFromNow {
			return "", nil, fmt.Errorf("%w for tenant(s) %s: the watcher will not guess where to start. "+
				"Either enable start-from-now (watcher.startFromNow: true, audited; changes committed before now are not delivered), "+
				"or supply a resume token (watcher.resumeToken) to replay from a known position, "+
				"or set one with `triggerflow checkpoint set`", ErrNoCheckpoint, quoteList(fresh))
		}
		head, err := w.src.Head(ctx)
		if err != nil {
			return "", nil, fmt.Errorf("watcher: read source head for start-from-now: %w", err)
		}
		if err := w.startFromNow(ctx, sc, fresh, head); err != nil {
			return "", nil, err
		}
	}
	return minPos(sc.skip), sc, nil
}

// startFromNow starts tenants at pos: audited first, since changes before
// pos are never delivered to them and such a start must leave a record.
func (w *DocumentWatcher) startFromNow(ctx context.Context, sc *scope, tenants []string, pos string) error {
	batch := make(map[string]string)
	for _, t := range tenants {
		if err := w.mustAudit(ctx, audit.Record{Action: audit.ActionStartFromNow, Tenant: t, Key: sc.keys[t][0], After: pos}); err != nil {
			return err
		}
		for _, k := range sc.keys[t] {
			batch[k] = pos
		}
	}
	if err := w.src.Checkpoints().SaveAll(ctx, batch); err != nil {
		return fmt.Errorf("watcher: save start-from-now checkpoints: %w", err)
	}
	maps.Copy(sc.skip, batch)
	for _, t := range tenants {
		w.metrics.startFromNow.WithLabelValues(w.metrics.tenant(t)).Inc()
	}
	return nil
}

// canonical returns the stored positions of keys in canonical form and the
// keys that have none. A stored value that is no position of this source
// counts as missing, with a warning: it may have been written by hand or
// by a tool that did not check it.
func (w *DocumentWatcher) canonical(stored map[string]string, keys []string, unreadable map[string]bool) (map[string]string, []string) {
	per := make(map[string]string, len(keys))
	var missing []string
	for _, k := range keys {
		raw, found := stored[k]
		if !found {
			missing = append(missing, k)
			continue
		}
		pos, err := w.src.ParsePosition(raw)
		if err != nil {
			w.log.Warn("checkpoint unreadable; treating it as missing", "key", k, "error", err)
			missing = append(missing, k)
			if unreadable != nil {
				unreadable[k] = true
			}
			continue
		}
		per[k] = pos
	}
	return per, missing
}

// SetTenants changes the scope. A removed tenant stops matching and keeps
// its checkpoint. An added tenant resumes from its checkpoint when it has
// one (an operator's `checkpoint set`, or an earlier stint in the scope);
// when that lies behind what was read, the stream restarts from it, and
// the other tenants skip what they already had. Without one it starts
// after the newest change read, audited as a start from now. Before Run
// (or between sessions), the new scope applies at the next start.
func (w *DocumentWatcher) SetTenants(ctx context.Context, tenants []string) error {
	tenants = sortedUnique(tenants)
	if slices.Contains(tenants, "") {
		return fmt.Errorf("%w: empty tenant name", ErrInvalidConfig)
	}
	if w.cfg.Tenant != "" && !slices.Equal(tenants, []string{w.cfg.Tenant}) {
		return fmt.Errorf("%w: a watcher of tenant %q cannot serve %v", ErrInvalidConfig, w.cfg.Tenant, tenants)
	}
	stored, err := w.src.Checkpoints().List(ctx, CheckpointPrefix)
	if err != nil {
		return fmt.Errorf("watcher: load checkpoints: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.scope == nil {
		// The next session starts with them (see session).
		w.tenants = tenants
		return nil
	}
	next := newScope()
	var added, fresh []string
	unreadable := make(map[string]bool)
	restart := false
	for _, t := range tenants {
		if keys, ok := w.scope.keys[t]; ok {
			next.keys[t] = keys
			for _, k := range keys {
				next.skip[k] = w.scope.skip[k]
				next.held[k] = w.scope.held[k]
			}
			continue
		}
		added = append(added, t)
		next.keys[t] = CheckpointKeys(t, w.cfg.Include)
		per, missing := w.canonical(stored, next.keys[t], unreadable)
		if len(missing) > 0 {
			fresh = append(fresh, t)
			continue
		}
		for k, pos := range per {
			next.skip[k] = pos
			next.held[k] = pos < w.lastRead
			restart = restart || next.held[k]
		}
	}
	if len(unreadable) > 0 && !w.cfg.StartFromNow {
		return fmt.Errorf("%w: the checkpoint(s) %s cannot be read as positions of this source; set them with `triggerflow checkpoint set`",
			ErrNoCheckpoint, quoteList(slices.Sorted(maps.Keys(unreadable))))
	}
	if len(fresh) > 0 {
		at := w.lastRead
		if at == "" {
			if at, err = w.src.Head(ctx); err != nil {
				return fmt.Errorf("watcher: read source head for start-from-now: %w", err)
			}
		}
		if err := w.startFromNow(ctx, next, fresh, at); err != nil {
			return err
		}
	}
	removed := 0
	for t := range w.scope.keys {
		if _, ok := next.keys[t]; !ok {
			removed++
		}
	}
	w.scope, w.tenants = next, tenants
	w.log.Info("tenant scope changed", "tenants", len(tenants), "added", added, "startedFromNow", fresh, "removed", removed, "restart", restart)
	if restart {
		w.restart(errRestart)
	}
	return nil
}

// ErrNotAudited is returned when a start that skips or replays changes
// (start-from-now, a resume token) cannot write its audit record: such a
// start is refused rather than made without a trace.
var ErrNotAudited = errors.New("watcher: audit record not written")

// mustAudit writes rec and fails when the Auditor cannot store it. Without
// an Auditor the record is only logged.
func (w *DocumentWatcher) mustAudit(ctx context.Context, rec audit.Record) error {
	if err := w.writeAudit(ctx, rec); err != nil {
		return fmt.Errorf("%w: %s for tenant %q refused: %w", ErrNotAudited, rec.Action, rec.Tenant, err)
	}
	return nil
}

// audit writes rec; a failure is logged, for decisions that lose nothing.
func (w *DocumentWatcher) audit(ctx context.Context, rec audit.Record) {
	if err := w.writeAudit(ctx, rec); err != nil {
		w.log.Error("audit record not written", "action", rec.Action, "error", err)
	}
}

func (w *DocumentWatcher) writeAudit(ctx context.Context, rec audit.Record) error {
	rec.Actor = w.cfg.Actor
	rec.Reason = cmp.Or(rec.Reason, w.cfg.Reason)
	w.log.Warn("audit", "action", rec.Action, "tenant", rec.Tenant, "key", rec.Key, "before", rec.Before, "after", rec.After, "actor", rec.Actor, "reason", rec.Reason)
	if w.cfg.Auditor == nil {
		return nil
	}
	return w.cfg.Auditor.Write(ctx, rec)
}

// minPos compares byte-wise, which orders canonical positions only.
func minPos(m map[string]string) string {
	first := true
	var out string
	for _, p := range m {
		if first || p < out {
			out, first = p, false
		}
	}
	return out
}

func quoteList(ss []string) string {
	const show = 5
	q := make([]string, 0, show+1)
	for i, s := range ss {
		if i == show {
			q = append(q, fmt.Sprintf("and %d more", len(ss)-show))
			break
		}
		q = append(q, strconv.Quote(s))
	}
	return strings.Join(q, ", ")
}

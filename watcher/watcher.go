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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/audit"
	"github.com/triggerflow/triggerflow/internal/backoff"
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
	// Tenant is the tenant scope. Required.
	Tenant string
	// Include lists collection prefixes to watch; empty means all. With
	// includes, each entry has its own checkpoint (see CheckpointKeys).
	Include []string
	// Exclude lists collection prefixes to skip.
	Exclude []string
	// StartFromNow lets a tenant without a checkpoint start at the source's
	// head instead of failing. It writes an audit record. Defaults to false.
	StartFromNow bool
	// ResumeToken, when set, replaces the checkpoint: the watcher replays
	// the changes after this position. It goes through the source's
	// ParsePosition: New refuses one the source cannot read, and stores
	// and compares its canonical form. It writes an audit record.
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
	// Auditor receives audit records; nil leaves them to Logger only.
	Auditor Auditor
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Actor == "" {
		c.Actor = "watcher"
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 500
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 10_000
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate(src Source) error {
	var errs []error
	if c.Tenant == "" {
		errs = append(errs, errors.New("tenant is required"))
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
	keys    []string
}

// New builds a watcher over src.
func New(src Source, cfg Config) (*DocumentWatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(src); err != nil {
		return nil, err
	}
	// Only the canonical form compares correctly with the source's
	// positions: "1" sorts after "00000000000000000002".
	cfg.ResumeToken, _ = src.ParsePosition(cfg.ResumeToken)
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &DocumentWatcher{
		src:     src,
		cfg:     cfg,
		log:     cfg.Logger.With("component", "watcher", "tenant", cfg.Tenant),
		metrics: m,
		keys:    CheckpointKeys(cfg.Tenant, cfg.Include),
	}, nil
}

// Run watches until ctx is done, then saves the checkpoint of everything
// finished so far and returns nil. It returns an error when the start
// position cannot be determined or the handler fails.
func (w *DocumentWatcher) Run(ctx context.Context, h Handler) error {
	start, perKey, err := w.startPosition(ctx)
	if err != nil {
		return err
	}
	if w.cfg.StartFromNow || w.cfg.ResumeToken != "" {
		// The start was saved as the checkpoint; let the source release
		// what lies behind it now rather than at the first save.
		if start != "" {
			if err := w.src.Confirm(ctx, start); err != nil {
				w.log.Warn("source confirm of the start position failed", "error", err, "position", start)
			}
		}
	}
	w.log.Info("watching", "from", start, "checkpointKeys", w.keys)
	if w.cfg.OnStarted != nil {
		w.cfg.OnStarted(start)
	}

	tr := newTracker(start, w.cfg.MaxInFlight)
	ckptDone := make(chan error, 1)
	ckptCtx, stopCkpt := context.WithCancel(context.WithoutCancel(ctx))
	go func() { ckptDone <- w.checkpointLoop(ckptCtx, tr) }()

	runErr := w.watchLoop(ctx, h, tr, start, perKey)

	// Give changes already handed out a moment to finish, so a clean
	// shutdown saves them instead of replaying them on the next start.
	if runErr == nil {
		drain := time.NewTimer(w.cfg.DrainTimeout)
		select {
		case <-tr.idle():
		case <-drain.C:
			w.log.Warn("stopping with unfinished changes; they will be replayed", "drainTimeout", w.cfg.DrainTimeout)
		}
		drain.Stop()
	}
	stopCkpt()
	if err := <-ckptDone; err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// watchLoop reads the source, reconnecting with backoff after source
// errors, until ctx is done or the handler fails.
func (w *DocumentWatcher) watchLoop(ctx context.Context, h Handler, tr *tracker, start string, perKey map[string]string) error {
	pos := start
	retry := backoff.Exponential{Initial: w.cfg.RetryInitial, Max: w.cfg.RetryMax}
	for {
		var handlerErr error
		err := w.src.Watch(ctx, pos, func(c Change) error {
			if err := tr.acquire(ctx); err != nil {
				return err
			}
			seq := tr.add(c.Position)
			pos = c.Position
			retry.Reset()
			if !w.wanted(c, perKey) {
				tr.done(seq)
				w.metrics.skipped.WithLabelValues(w.cfg.Tenant).Inc()
				return nil
			}
			w.metrics.read.WithLabelValues(w.cfg.Tenant).Inc()
			if !c.CommitTime.IsZero() {
				w.metrics.lag.WithLabelValues(w.cfg.Tenant).Set(time.Since(c.CommitTime).Seconds())
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
		}
		w.metrics.sourceErrors.WithLabelValues(w.cfg.Tenant).Inc()
		wait := retry.Next()
		w.log.Warn("source failed; reconnecting", "error", err, "resumeFrom", pos, "backoff", wait)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// wanted applies the tenant scope, include/exclude filters, and, while
// per-collection checkpoints differ after a re-seed, skips changes an
// include entry already has.
func (w *DocumentWatcher) wanted(c Change, perKey map[string]string) bool {
	if c.Tenant != w.cfg.Tenant {
		return false
	}
	for _, p := range w.cfg.Exclude {
		if hasCollectionPrefix(c.Collection, p) {
			return false
		}
	}
	if len(w.cfg.Include) == 0 {
		return true
	}
	for i, p := range w.cfg.Include {
		if hasCollectionPrefix(c.Collection, p) {
			// Both canonical (startPosition parsed every checkpoint), so
			// byte-wise order is the source's order.
			return c.Position > perKey[w.keys[i]]
		}
	}
	return false
}

// hasCollectionPrefix matches whole segments: "chats" covers "chats" and
// "chats/1/members" but not "chatsarchive".
func hasCollectionPrefix(collection, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return collection == prefix || strings.HasPrefix(collection, prefix+"/")
}

// checkpointLoop saves the contiguous finished prefix every
// CheckpointInterval or CheckpointEvery changes, and once more when ctx is
// done, before returning.
func (w *DocumentWatcher) checkpointLoop(ctx context.Context, tr *tracker) error {
	ticker := time.NewTicker(w.cfg.CheckpointInterval)
	defer ticker.Stop()
	saved := tr.start
	save := func() {
		pos := tr.finished()
		if pos == saved {
			return
		}
		if err := w.save(ctx, pos); err != nil {
			w.metrics.checkpointErrors.WithLabelValues(w.cfg.Tenant).Inc()
			w.log.Warn("checkpoint save failed; will retry", "error", err)
			return
		}
		saved = pos
		if err := w.src.Confirm(ctx, pos); err != nil {
			w.log.Warn("source confirm failed", "error", err, "position", pos)
		}
	}
	for {
		select {
		case <-ctx.Done():
			// Final save with a fresh deadline: the caller is shutting down.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			pos := tr.finished()
			if pos == saved {
				return nil
			}
			if err := w.save(final, pos); err != nil {
				return fmt.Errorf("watcher: final checkpoint save: %w", err)
			}
			if err := w.src.Confirm(final, pos); err != nil {
				w.log.Warn("source confirm failed", "error", err, "position", pos)
			}
			return nil
		case <-ticker.C:
		case <-tr.progressC():
			if !tr.dueEvery(w.cfg.CheckpointEvery) {
				continue
			}
		}
		save()
	}
}

func (w *DocumentWatcher) save(ctx context.Context, pos string) error {
	for _, k := range w.keys {
		if err := w.src.Checkpoints().Save(ctx, k, pos); err != nil {
			return fmt.Errorf("save %s: %w", k, err)
		}
	}
	w.metrics.checkpointSaves.WithLabelValues(w.cfg.Tenant).Inc()
	return nil
}

// startPosition decides where to start. It returns the global start (the
// smallest position any checkpoint key needs) and each key's own position.
func (w *DocumentWatcher) startPosition(ctx context.Context) (string, map[string]string, error) {
	store := w.src.Checkpoints()
	perKey := make(map[string]string, len(w.keys))

	if w.cfg.ResumeToken != "" {
		old, _, err := store.Load(ctx, w.keys[0])
		if err != nil {
			return "", nil, fmt.Errorf("watcher: load checkpoint: %w", err)
		}
		if err := w.mustAudit(ctx, audit.Record{Action: audit.ActionResumeToken, Key: w.keys[0], Before: old, After: w.cfg.ResumeToken}); err != nil {
			return "", nil, err
		}
		if err := w.setAll(ctx, w.cfg.ResumeToken, perKey); err != nil {
			return "", nil, err
		}
		w.metrics.resets.WithLabelValues(w.cfg.Tenant, "resume_token").Inc()
		return w.cfg.ResumeToken, perKey, nil
	}

	var missing []string
	for _, k := range w.keys {
		pos, found, err := w.load(ctx, k)
		switch {
		case errors.Is(err, ErrInvalidPosition):
			// A value that is no position of this source is handled like a
			// missing checkpoint: fail fast or start from now.
			w.log.Warn("checkpoint unreadable; treating it as missing", "key", k, "error", err)
			found = false
		case err != nil:
			// A store that cannot be read now must not pass for a missing
			// checkpoint: with start-from-now that would skip every change
			// since the real one.
			return "", nil, fmt.Errorf("watcher: load checkpoint: %w", err)
		}
		if !found {
			missing = append(missing, k)
			continue
		}
		perKey[k] = pos
	}

	if len(missing) > 0 && len(perKey) > 0 {
		// Filters changed: a new include entry starts where the slowest
		// existing checkpoint of the tenant stands, so nothing it was
		// already going to see is skipped. Documented in docs/operations.md.
		seed := minPos(perKey)
		for _, k := range missing {
			if err := store.Save(ctx, k, seed); err != nil {
				return "", nil, fmt.Errorf("watcher: reseed %s: %w", k, err)
			}
			perKey[k] = seed
			w.audit(ctx, audit.Record{Action: audit.ActionCheckpointReseed, Key: k, After: seed})
			w.metrics.resets.WithLabelValues(w.cfg.Tenant, "reseed").Inc()
		}
		missing = nil
	}
	if len(missing) > 0 && len(w.cfg.Include) > 0 {
		// Filtering was just turned on: carry the tenant-wide checkpoint over.
		pos, found, err := w.load(ctx, CheckpointPrefix+w.cfg.Tenant)
		switch {
		case errors.Is(err, ErrInvalidPosition):
			w.log.Warn("tenant checkpoint unreadable; not carrying it over", "key", CheckpointPrefix+w.cfg.Tenant, "error", err)
		case err != nil:
			return "", nil, fmt.Errorf("watcher: load checkpoint: %w", err)
		}
		if err == nil && found {
			if err := w.setAll(ctx, pos, perKey); err != nil {
				return "", nil, err
			}
			w.audit(ctx, audit.Record{Action: audit.ActionCheckpointReseed, Key: CheckpointPrefix + w.cfg.Tenant, After: pos, Reason: "include filters enabled"})
			w.metrics.resets.WithLabelValues(w.cfg.Tenant, "reseed").Inc()
			missing = nil
		}
	}
	if len(missing) == 0 {
		return minPos(perKey), perKey, nil
	}

	if !w.cfg.StartFromNow {
		return "", nil, fmt.Errorf("%w for tenant %q (keys %v): the watcher will not guess where to start. "+
			"Either enable start-from-now (watcher.startFromNow: true, audited; changes committed before now are not delivered), "+
			"or supply a resume token (watcher.resumeToken) to replay from a known position, "+
			"or set one with `triggerflow checkpoint set`", ErrNoCheckpoint, w.cfg.Tenant, missing)
	}
	head, err := w.src.Head(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("watcher: read source head for start-from-now: %w", err)
	}
	// Audited first: changes before head are never delivered, so a start
	// from now that leaves no record must not happen.
	if err := w.mustAudit(ctx, audit.Record{Action: audit.ActionStartFromNow, Key: w.keys[0], After: head}); err != nil {
		return "", nil, err
	}
	if err := w.setAll(ctx, head, perKey); err != nil {
		return "", nil, err
	}
	w.metrics.startFromNow.WithLabelValues(w.cfg.Tenant).Inc()
	return head, perKey, nil
}

// load returns the checkpoint under key in canonical form. A stored value
// the source cannot parse is an error: it may have been written by hand or
// by a tool that did not check it.
func (w *DocumentWatcher) load(ctx context.Context, key string) (string, bool, error) {
	pos, found, err := w.src.Checkpoints().Load(ctx, key)
	if err != nil || !found {
		return "", found, err
	}
	canonical, err := w.src.ParsePosition(pos)
	if err != nil {
		return "", false, fmt.Errorf("stored checkpoint %s: %w", key, err)
	}
	return canonical, true, nil
}

func (w *DocumentWatcher) setAll(ctx context.Context, pos string, perKey map[string]string) error {
	for _, k := range w.keys {
		if err := w.src.Checkpoints().Save(ctx, k, pos); err != nil {
			return fmt.Errorf("watcher: save %s: %w", k, err)
		}
		perKey[k] = pos
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
		return fmt.Errorf("%w: %s for tenant %q refused: %w", ErrNotAudited, rec.Action, w.cfg.Tenant, err)
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
	rec.Tenant = w.cfg.Tenant
	rec.Actor = w.cfg.Actor
	if rec.Reason == "" {
		rec.Reason = w.cfg.Reason
	}
	w.log.Warn("audit", "action", rec.Action, "key", rec.Key, "before", rec.Before, "after", rec.After, "actor", rec.Actor, "reason", rec.Reason)
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

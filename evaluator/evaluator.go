package evaluator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/internal/lograte"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// Config configures an Evaluator. Zero fields take the documented defaults.
type Config struct {
	// ErrorLogInterval is the shortest gap between two warnings about one
	// trigger's condition errors (or one collection's invalid documents):
	// a condition that fails on every event must not flood the log. Every
	// error is counted regardless. Defaults to 1m.
	ErrorLogInterval time.Duration

	// Dependencies. As in every component's Config, nil means discard,
	// except where a record cannot be dropped.

	// Logger receives condition errors and invalid documents; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the evaluator's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// TenantLabels bounds the tenant label values of the metrics; a
	// tenant past its limit also folds its collections and trigger ids.
	// nil names every tenant.
	TenantLabels *tenantlabel.Guard
}

// DefaultErrorLogInterval is the default Config.ErrorLogInterval.
const DefaultErrorLogInterval = time.Minute

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.ErrorLogInterval = cmp.Or(c.ErrorLogInterval, DefaultErrorLogInterval)
	return c
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("evaluator: invalid config")

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.ErrorLogInterval < 0 {
		errs = append(errs, fmt.Errorf("ErrorLogInterval is %s, must not be negative", c.ErrorLogInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Evaluator compiles trigger sets into indexes. It holds what outlives one
// set: metrics and the log rate limits, so that reloading triggers neither
// re-registers metrics nor resets the limits. It is safe for concurrent use.
type Evaluator struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	limiters map[string]*lograte.Limiter // by tenant, NUL, trigger id or collection
}

// New builds an evaluator from cfg after filling defaults.
func New(cfg Config) (*Evaluator, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("evaluator: register metrics: %w", err)
	}
	return &Evaluator{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "evaluator"),
		metrics:  m,
		limiters: map[string]*lograte.Limiter{},
	}, nil
}

// ErrInvalidSet is wrapped by Compile errors.
var ErrInvalidSet = errors.New("evaluator: invalid trigger set")

// Compile builds the immutable index of one trigger set. progs are the
// compiled conditions, index for index, as trigger.Validator returns them
// (engine.Set carries both). Compile does not re-validate the triggers; it
// refuses only what it cannot index: a nil trigger or program, a length
// mismatch, a malformed collection pattern.
func (e *Evaluator) Compile(triggers []*trigger.Trigger, progs []*condition.Program) (*Index, error) {
	if len(triggers) != len(progs) {
		return nil, fmt.Errorf("%w: %d triggers but %d conditions", ErrInvalidSet, len(triggers), len(progs))
	}
	ix := &Index{
		ev:      e,
		exact:   map[string][]int32{},
		byShape: map[int]*shapeBucket{},
		unwatch: map[string]prometheus.Counter{},
	}
	for i, tr := range triggers {
		if tr == nil || progs[i] == nil {
			return nil, fmt.Errorf("%w: trigger #%d or its condition is nil", ErrInvalidSet, i+1)
		}
		g, err := compileGlob(tr.Collection)
		if err != nil {
			return nil, fmt.Errorf("%w: trigger %q: %w", ErrInvalidSet, tr.ID, err)
		}
		tenant, collection, id := e.labels(tr)
		ent := &entry{
			trigger:    tr,
			prog:       progs[i],
			always:     progs[i].Source() == "",
			needDoc:    strings.Contains(progs[i].Source(), "document"),
			needBefore: strings.Contains(progs[i].Source(), "before"),
			glob:       g,
			events:     eventMask(tr.Events),
			eventsCtr:  e.metrics.events.WithLabelValues(tenant, collection),
			matchCtr:   e.metrics.matches.WithLabelValues(tenant, collection, id),
			errCtr:     e.metrics.errors.WithLabelValues(tenant, collection, id),
			invalid:    e.metrics.invalidDocs.WithLabelValues(tenant, collection),
			limiter:    e.limiter("trigger", tr.Tenant, tr.ID),
			docLimit:   e.limiter("collection", tr.Tenant, tr.Collection),
		}
		ix.entries = append(ix.entries, ent)
		n := int32(i)
		switch {
		case g.general:
			ix.general = append(ix.general, n)
		case g.literal():
			ix.exact[tr.Collection] = append(ix.exact[tr.Collection], n)
		default:
			b := ix.byShape[len(g.segs)]
			if b == nil {
				b = &shapeBucket{byPos: make([]map[string][]int32, len(g.segs))}
				ix.byShape[len(g.segs)] = b
			}
			b.add(g, n)
		}
		if _, ok := ix.unwatch[tr.Tenant]; !ok {
			ix.unwatch[tr.Tenant] = e.metrics.events.WithLabelValues(tenant, unwatched)
		}
	}
	return ix, nil
}

// labels returns tr's metric label values under the tenant guard.
func (e *Evaluator) labels(tr *trigger.Trigger) (tenant, collection, id string) {
	tenant = e.cfg.TenantLabels.Label(tr.Tenant)
	if tenant == tenantlabel.Other {
		return tenant, tenantlabel.Other, tenantlabel.Other
	}
	return tenant, tr.Collection, tr.ID
}

func (e *Evaluator) limiter(kind, tenant, name string) *lograte.Limiter {
	key := kind + "\x00" + tenant + "\x00" + name
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.limiters[key]
	if l == nil {
		l = &lograte.Limiter{Interval: e.cfg.ErrorLogInterval}
		e.limiters[key] = l
	}
	return l
}

// Match is a trigger that fired on a change.
type Match struct {
	Trigger *trigger.Trigger
}

// Task returns the delivery task of m firing on c. Its EventID is a pure
// function of (tenant, trigger, collection, docKey, position), so a change
// re-read after a crash yields the same id and JetStream drops the
// republish.
func (m Match) Task(c *watcher.Change) *trigger.DeliveryTask {
	tr := m.Trigger
	var rp trigger.RetryPolicy
	if tr.RetryPolicy != nil {
		rp = *tr.RetryPolicy
	}
	return &trigger.DeliveryTask{
		V:                 trigger.TaskVersion,
		EventID:           trigger.NewEventID(c.Tenant, tr.ID, c.Collection, c.DocKey, c.Position),
		Tenant:            c.Tenant,
		TriggerID:         tr.ID,
		TriggerVersion:    tr.Version,
		Collection:        c.Collection,
		CollectionPattern: tr.Collection,
		DocKey:            c.DocKey,
		Type:              c.Type,
		Before:            c.Before,
		After:             c.After,
		Position:          c.Position,
		CommitTime:        c.CommitTime,
		URL:               tr.URL,
		Headers:           tr.Headers,
		SecretsRef:        tr.SecretsRef,
		RetryPolicy:       rp,
		Timeout:           tr.Timeout,
		OnFailure:         tr.OnFailure,
	}
}

// Index is the compiled, immutable form of one trigger set. Match is safe for
// concurrent use; a reload builds a new Index while events already being
// matched finish on the old one.
type Index struct {
	ev      *Evaluator
	entries []*entry

	// Candidates for a collection come from three places: triggers naming
	// it exactly, '*'-globs of the same segment count (keyed further by a
	// literal segment), and the rare patterns that need path.Match.
	exact   map[string][]int32
	byShape map[int]*shapeBucket
	general []int32

	unwatch map[string]prometheus.Counter // events no pattern matched, by tenant
}

// shapeBucket holds the globs of one segment count. Each glob is filed
// under its first fully literal segment, so "chats/*/members" is found by
// looking up "chats" at position 0 and "*/*/members" by "members" at
// position 2; only globs without any literal segment are tried on every
// collection of that depth.
type shapeBucket struct {
	byPos []map[string][]int32
	wild  []int32
}

func (b *shapeBucket) add(g glob, id int32) {
	for p, s := range g.segs {
		if s.kind == segLiteral {
			if b.byPos[p] == nil {
				b.byPos[p] = map[string][]int32{}
			}
			b.byPos[p][s.lit] = append(b.byPos[p][s.lit], id)
			return
		}
	}
	b.wild = append(b.wild, id)
}

type entry struct {
	trigger *trigger.Trigger
	prog    *condition.Program
	always  bool // the condition is empty
	// needDoc and needBefore say whether the condition can read
	// event.document or event.before. CEL selects fields only by literal
	// name, so a condition whose source lacks the word cannot.
	needDoc, needBefore bool
	glob                glob
	events              uint8

	eventsCtr prometheus.Counter
	matchCtr  prometheus.Counter
	errCtr    prometheus.Counter
	invalid   prometheus.Counter
	limiter   *lograte.Limiter
	docLimit  *lograte.Limiter
}

// Len is the number of triggers in the index.
func (ix *Index) Len() int { return len(ix.entries) }

// Match returns the triggers that fire on c, in trigger-set order: those of
// c's tenant whose collection pattern matches c.Collection, whose events
// include c.Type and whose condition is true.
//
// A condition that fails at run time (a missing field, a type mismatch, the
// cost limit) counts as no match: it is counted in
// triggerflow_evaluation_errors_total and logged at most once per trigger
// per ErrorLogInterval. The only error Match returns is ctx's, when ctx ends
// mid-evaluation; the caller must then not treat c as processed, because an
// interrupted condition says nothing about the change.
//
// The condition's event.document is the after image and event.before the
// before image, each decoded at most once per change however many triggers
// look at it, and only if some condition can read it. An absent image (the
// after image of a delete, the before image of a create) is an empty
// document. So is an image that is not a JSON object (an array, a scalar,
// invalid JSON): when a condition reads it, it is counted in
// triggerflow_evaluation_invalid_documents_total and logged, and triggers
// whose condition does not depend on the document still fire.
func (ix *Index) Match(ctx context.Context, c *watcher.Change) ([]Match, error) {
	var buf [16]int32
	cands := ix.candidates(c.Collection, buf[:0])
	var (
		out     []Match
		ev      *eventBuilder
		watched bool
		bit     = eventBit(c.Type)
	)
	for _, id := range cands {
		ent := ix.entries[id]
		if ent.trigger.Tenant != c.Tenant {
			continue
		}
		if !watched {
			watched = true
			ent.eventsCtr.Inc()
		}
		if ent.events&bit == 0 {
			continue
		}
		if !ent.always {
			if ev == nil {
				ev = newEventBuilder(c)
			}
			if ev.load(ent.needDoc, ent.needBefore) {
				ix.reportInvalid(ent, c)
			}
			ok, err := ent.prog.Eval(ctx, &ev.event)
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return nil, ctxErr
				}
				ix.reportError(ent, c, err)
				continue
			}
			if !ok {
				continue
			}
		}
		ent.matchCtr.Inc()
		out = append(out, Match{Trigger: ent.trigger})
	}
	if !watched {
		ix.countUnwatched(c.Tenant)
	}
	return out, nil
}

// candidates appends to dst, in ascending trigger order, every trigger
// whose pattern matches collection.
func (ix *Index) candidates(collection string, dst []int32) []int32 {
	dst = append(dst, ix.exact[collection]...)
	sorted := true
	add := func(ids []int32) {
		for _, id := range ids {
			if ix.entries[id].glob.match(collection) {
				if n := len(dst); n > 0 && dst[n-1] > id {
					sorted = false
				}
				dst = append(dst, id)
			}
		}
	}
	if b := ix.byShape[segmentCount(collection)]; b != nil {
		rest := collection
		for p := range b.byPos {
			seg := rest
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				seg, rest = rest[:j], rest[j+1:]
			}
			if b.byPos[p] != nil {
				add(b.byPos[p][seg])
			}
		}
		add(b.wild)
	}
	add(ix.general)
	if !sorted {
		slices.Sort(dst)
	}
	return dst
}

func (ix *Index) countUnwatched(tenant string) {
	if ctr, ok := ix.unwatch[tenant]; ok {
		ctr.Inc()
		return
	}
	ix.ev.metrics.events.WithLabelValues(ix.ev.cfg.TenantLabels.Label(tenant), unwatched).Inc()
}

func (ix *Index) reportError(ent *entry, c *watcher.Change, err error) {
	ent.errCtr.Inc()
	if suppressed, ok := ent.limiter.Allow(); ok {
		ix.ev.log.Warn("condition failed at run time; counted as no match",
			"tenant", c.Tenant, "triggerId", ent.trigger.ID, "collection", c.Collection,
			"type", c.Type, "position", c.Position, "condition", ent.prog.Source(),
			"error", err, "suppressedSinceLastLog", suppressed)
	}
}

func (ix *Index) reportInvalid(ent *entry, c *watcher.Change) {
	ent.invalid.Inc()
	if suppressed, ok := ent.docLimit.Allow(); ok {
		ix.ev.log.Warn("document image is not a JSON object; conditions see an empty document",
			"tenant", c.Tenant, "collection", c.Collection, "position", c.Position,
			"suppressedSinceLastLog", suppressed)
	}
}

// eventBuilder is the CEL event of one change. Each image is decoded at
// most once, and only when a condition can read it.
type eventBuilder struct {
	c                   *watcher.Change
	event               condition.Event
	haveDoc, haveBefore bool
}

func newEventBuilder(c *watcher.Change) *eventBuilder {
	return &eventBuilder{c: c, event: condition.Event{
		Type:       string(c.Type),
		Tenant:     c.Tenant,
		Collection: c.Collection,
		DocKey:     c.DocKey,
		Timestamp:  c.CommitTime,
		// Images a condition never reads stay empty rather than nil, so
		// that no evaluation sees a null where it expects a map.
		Document: map[string]any{},
		Before:   map[string]any{},
	}}
}

// load decodes the images asked for that are not decoded yet. invalid
// reports an image decoded now that was present but not a JSON object.
func (b *eventBuilder) load(doc, before bool) (invalid bool) {
	if doc && !b.haveDoc {
		b.haveDoc = true
		var bad bool
		b.event.Document, bad = decodeObject(b.c.After)
		invalid = invalid || bad
	}
	if before && !b.haveBefore {
		b.haveBefore = true
		var bad bool
		b.event.Before, bad = decodeObject(b.c.Before)
		invalid = invalid || bad
	}
	return invalid
}

// decodeObject decodes a JSON object. Absent, null and non-object images
// become an empty map, so `has(event.document.x)` is simply false; invalid
// is true for a present image that is not an object.
func decodeObject(raw json.RawMessage) (doc map[string]any, invalid bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]any{}, false
	}
	if raw[0] != '{' {
		return map[string]any{}, true
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return map[string]any{}, true
	}
	return doc, false
}

func eventBit(t trigger.EventType) uint8 {
	switch t {
	case trigger.EventCreate:
		return 1
	case trigger.EventUpdate:
		return 2
	case trigger.EventDelete:
		return 4
	}
	return 0
}

func eventMask(events []trigger.EventType) uint8 {
	if len(events) == 0 {
		return 7
	}
	var m uint8
	for _, e := range events {
		m |= eventBit(e)
	}
	return m
}

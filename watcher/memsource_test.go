package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// memSource is an in-memory Source for unit tests of the watcher's own
// logic; real sources are tested by the conformance suite.
type memSource struct {
	mu       sync.Mutex
	log      []watcher.Change
	appended chan struct{}
	store    *memStore
	// failAfter makes the next Watch fail after emitting that many changes.
	failAfter int
	confirms  []string
	// confirmedPast lists confirmations made while a saved checkpoint
	// stood behind them; the watcher must never make one.
	confirmedPast []string
}

func newMemSource() *memSource {
	return &memSource{appended: make(chan struct{}), store: &memStore{m: map[string]string{}, saved: make(chan string, 1000)}}
}

// newQuietMemSource returns a memSource whose store reports saves through
// store.changed only, for tests whose saves are too many to drain.
func newQuietMemSource() *memSource {
	s := newMemSource()
	s.store.saved = nil
	return s
}

func pos(i int) string { return fmt.Sprintf("%020d", i) }

// ParsePosition accepts decimal numbers with or without the zero padding,
// as docstore does.
func (s *memSource) ParsePosition(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	n, err := strconv.ParseUint(p, 10, 63)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not a memSource position: want decimal digits", watcher.ErrInvalidPosition, p)
	}
	return pos(int(n)), nil
}

func (s *memSource) add(tenant, collection, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := pos(len(s.log) + 1)
	s.log = append(s.log, watcher.Change{Tenant: tenant, Collection: collection, DocKey: key, Type: trigger.EventCreate, Position: p})
	close(s.appended)
	s.appended = make(chan struct{})
	return p
}

func (s *memSource) Watch(ctx context.Context, after string, emit func(watcher.Change) error) error {
	emitted := 0
	for {
		s.mu.Lock()
		var next []watcher.Change
		for _, c := range s.log {
			if c.Position > after {
				next = append(next, c)
			}
		}
		wait := s.appended
		fail := s.failAfter
		s.mu.Unlock()
		for _, c := range next {
			if fail > 0 && emitted == fail {
				s.mu.Lock()
				s.failAfter = 0
				s.mu.Unlock()
				return errors.New("connection lost")
			}
			if err := emit(c); err != nil {
				return err
			}
			after = c.Position
			emitted++
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
	}
}

func (s *memSource) Head(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return "", nil
	}
	return s.log[len(s.log)-1].Position, nil
}

func (s *memSource) Confirm(_ context.Context, p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirms = append(s.confirms, p)
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	for k, saved := range s.store.m {
		if p > saved {
			s.confirmedPast = append(s.confirmedPast, fmt.Sprintf("confirmed %s while %s=%s", p, k, saved))
		}
	}
	return nil
}

func (s *memSource) Checkpoints() watcher.CheckpointStore { return s.store }
func (s *memSource) Close() error                         { return nil }

type memStore struct {
	mu sync.Mutex
	m  map[string]string
	// saved gets "key=pos" for every save; nil sends nothing (a source of
	// many tenants saves more than any buffer a test would drain).
	saved chan string
	bad   map[string]bool
	// batches records every SaveAll, singles counts direct Saves.
	batches []map[string]string
	singles int
	// changed fires after every save.
	changed signal
}

func (m *memStore) Load(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bad[key] {
		return "", false, errors.New("corrupted")
	}
	p, ok := m.m[key]
	return p, ok, nil
}

func (m *memStore) List(_ context.Context, prefix string) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string)
	for k, p := range m.m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if m.bad[k] {
			return nil, errors.New("corrupted")
		}
		out[k] = p
	}
	for k := range m.bad {
		if strings.HasPrefix(k, prefix) {
			return nil, errors.New("corrupted")
		}
	}
	return out, nil
}

func (m *memStore) SaveAll(_ context.Context, positions map[string]string) error {
	m.mu.Lock()
	m.batches = append(m.batches, maps.Clone(positions))
	m.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(positions)) {
		m.save(k, positions[k])
	}
	return nil
}

func (m *memStore) Save(_ context.Context, key, p string) error {
	m.mu.Lock()
	m.singles++
	m.mu.Unlock()
	m.save(key, p)
	return nil
}

func (m *memStore) save(key, p string) {
	m.mu.Lock()
	m.m[key] = p
	m.mu.Unlock()
	if m.saved != nil {
		m.saved <- key + "=" + p
	}
	m.changed.fire()
}

// snapshot returns a copy of every stored checkpoint.
func (m *memStore) snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.m)
}

// set stores a checkpoint as an operator would, outside the watcher.
func (m *memStore) set(key, p string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[key] = p
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
}

func (m *memStore) get(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[key]
}

// signal is a broadcast: changed returns a channel that the next fire
// closes.
type signal struct {
	mu sync.Mutex
	c  chan struct{}
}

func (s *signal) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		s.c = make(chan struct{})
	}
	return s.c
}

func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		close(s.c)
		s.c = nil
	}
}

// confirmCall is one TenantConfirmer call.
type confirmCall struct {
	pos     string
	tenants []string
}

// tenantConfirmSource is a memSource keeping history per tenant: it
// implements watcher.TenantConfirmer and records its calls. Each call is
// checked against the checkpoints of the tenants it names, not against
// those of other tenants, which keep their history.
type tenantConfirmSource struct {
	*memSource
	mu    sync.Mutex
	calls []confirmCall
	// past lists calls beyond a saved checkpoint of a tenant they name.
	past      []string
	confirmed signal
}

var _ watcher.TenantConfirmer = (*tenantConfirmSource)(nil)

func (s *tenantConfirmSource) ConfirmTenants(_ context.Context, p string, tenants []string) error {
	s.store.mu.Lock()
	var past []string
	for _, t := range tenants {
		for k, saved := range s.store.m {
			if (k == watcher.CheckpointPrefix+t || strings.HasPrefix(k, watcher.CheckpointPrefix+t+"/")) && p > saved {
				past = append(past, fmt.Sprintf("confirmed %s for %v while %s=%s", p, tenants, k, saved))
			}
		}
	}
	s.store.mu.Unlock()
	s.mu.Lock()
	s.calls = append(s.calls, confirmCall{pos: p, tenants: slices.Clone(tenants)})
	s.past = append(s.past, past...)
	s.mu.Unlock()
	s.confirmed.fire()
	return nil
}

func (s *tenantConfirmSource) confirmCalls() []confirmCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

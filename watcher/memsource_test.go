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

	"github.com/triggerflow/triggerflow/audit"
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
	mu    sync.Mutex
	m     map[string]string
	saved chan string // "key=pos" for every save
	bad   map[string]bool
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

func (m *memStore) SaveAll(ctx context.Context, positions map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(positions)) {
		if err := m.Save(ctx, k, positions[k]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Save(_ context.Context, key, p string) error {
	m.mu.Lock()
	m.m[key] = p
	m.mu.Unlock()
	m.saved <- key + "=" + p
	return nil
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

type memAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
	fail error // returned by every Write when set
}

func (a *memAuditor) Write(_ context.Context, r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.recs = append(a.recs, r)
	return nil
}

func (a *memAuditor) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

package testenv

import (
	"context"
	"sync"
)

// Records is an in-memory sink that keeps what it is given, in order: a
// dead-letter sink (Publish) or an audit writer (Write) for unit tests.
// With Err set (at construction, or later by Fail), every call fails with
// it and keeps nothing.
type Records[T any] struct {
	Err error

	mu   sync.Mutex
	recs []T
}

// Publish keeps rec unless Err is set.
func (r *Records[T]) Publish(_ context.Context, rec T) error { return r.add(rec) }

// Write keeps rec unless Err is set.
func (r *Records[T]) Write(_ context.Context, rec T) error { return r.add(rec) }

func (r *Records[T]) add(rec T) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return r.Err
	}
	r.recs = append(r.recs, rec)
	return nil
}

// Fail makes every later call fail with err (nil: succeed again).
func (r *Records[T]) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Err = err
}

// All returns a copy of the records kept so far.
func (r *Records[T]) All() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.recs...)
}

// Package backoff spaces the attempts of the retry loops that wait out an
// unreachable dependency (a source, NATS, Temporal) for as long as it
// takes: each wait doubles the one before, up to a cap.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exponential is one retry loop's waits. Set Initial and Max; the zero
// state hands out Initial first.
type Exponential struct {
	// Initial is the first wait, and the one after a Reset.
	Initial time.Duration
	// Max caps the doubling. A first wait above it is still waited once.
	Max time.Duration
	// Jitter draws each wait from [d/2, d] instead of waiting d, so that the
	// many tasks one outage failed together do not retry in lockstep.
	Jitter bool

	next    time.Duration
	started bool
}

// Next returns the wait before the next attempt and doubles the one after
// it, up to Max.
func (e *Exponential) Next() time.Duration {
	if !e.started {
		e.next, e.started = e.Initial, true
	}
	d := e.next
	e.next = min(2*d, e.Max)
	if e.Jitter {
		return d/2 + rand.N(d/2+1)
	}
	return d
}

// Reset makes the next wait Initial again, once an attempt has made
// progress: the dependency is back, and the next failure is a new outage.
func (e *Exponential) Reset() { e.started = false }

// Sleep waits Next, and reports false as soon as ctx ends.
func (e *Exponential) Sleep(ctx context.Context) bool { return Sleep(ctx, e.Next()) }

// Sleep waits d, and reports false as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

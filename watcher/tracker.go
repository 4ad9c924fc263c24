package watcher

import (
	"context"
	"sync"
)

// tracker hands out sequence numbers to emitted changes and reports the
// position of the longest prefix of them that is finished. Its window is
// bounded: acquire blocks while MaxInFlight changes are unfinished or
// waiting behind an unfinished one.
type tracker struct {
	start string

	mu       sync.Mutex
	next     uint64  // sequence of the next added change
	head     uint64  // sequence of window[0]
	window   []entry // changes not yet part of the finished prefix
	last     string  // position of the finished prefix
	since    int     // changes finished since the last progressed() signal
	progress chan struct{}
	slots    chan struct{}
	idleC    chan struct{} // closed when the window empties; nil until asked
}

type entry struct {
	pos  string
	done bool
}

func newTracker(start string, max int) *tracker {
	return &tracker{
		start:    start,
		last:     start,
		progress: make(chan struct{}, 1),
		slots:    make(chan struct{}, max),
	}
}

// acquire reserves a window slot.
func (t *tracker) acquire(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add appends a change at pos and returns its sequence number.
func (t *tracker) add(pos string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.next
	t.next++
	t.window = append(t.window, entry{pos: pos})
	return seq
}

// done marks seq finished and advances the prefix over finished entries.
func (t *tracker) done(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.window[seq-t.head].done = true
	n := 0
	for n < len(t.window) && t.window[n].done {
		n++
	}
	if n == 0 {
		return
	}
	t.last = t.window[n-1].pos
	t.window = t.window[n:]
	t.head += uint64(n)
	t.since += n
	for range n {
		<-t.slots
	}
	if len(t.window) == 0 && t.idleC != nil {
		close(t.idleC)
		t.idleC = nil
	}
	select {
	case t.progress <- struct{}{}:
	default:
	}
}

// finished returns the position of the finished prefix.
func (t *tracker) finished() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// progress fires after changes finished; dueEvery then tells whether
// enough did to warrant a save.
func (t *tracker) progressC() <-chan struct{} { return t.progress }

// dueEvery reports, and resets, whether at least every changes finished
// since it last returned true.
func (t *tracker) dueEvery(every int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.since < every {
		return false
	}
	t.since = 0
	return true
}

// idle returns a channel closed once no emitted change is unfinished.
func (t *tracker) idle() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.window) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if t.idleC == nil {
		t.idleC = make(chan struct{})
	}
	return t.idleC
}

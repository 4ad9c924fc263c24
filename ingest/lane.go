package ingest

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lane is a FIFO of messages settled one at a time by one goroutine. The
// queue is unbounded, but JetStream's MaxAckPending bounds what ingest
// holds in all lanes together, so pushing never blocks the consumer.
type lane struct {
	depth prometheus.Gauge
	wake  chan struct{} // one slot: "the queue or closed changed"

	mu      sync.Mutex
	queue   []*item
	current *item // being settled; still counted in depth
	closed  bool  // nothing more is expected; exit when empty
	gone    bool  // the goroutine exited; push refuses
}

func newLane(depth prometheus.Gauge) *lane {
	return &lane{depth: depth, wake: make(chan struct{}, 1)}
}

// push appends it, or returns false if the lane no longer runs.
func (l *lane) push(it *item) bool {
	l.mu.Lock()
	if l.gone {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, it)
	l.mu.Unlock()
	l.depth.Inc()
	l.signal()
	return true
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next makes the head of the queue current and returns it, waiting for one
// if the queue is empty. It returns false once the lane is closed and empty,
// or when abort fires.
func (l *lane) next(abort <-chan struct{}) (*item, bool) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			it := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.current = it
			l.mu.Unlock()
			return it, true
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-l.wake:
		case <-abort:
			return nil, false
		}
	}
}

// done marks the current item settled.
func (l *lane) done() {
	l.mu.Lock()
	l.current = nil
	l.mu.Unlock()
	l.depth.Dec()
}

// close tells the lane that nothing more is coming.
func (l *lane) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
}

// retire stops the lane taking items and returns those still queued, in
// order.
func (l *lane) retire() []*item {
	l.mu.Lock()
	rest := l.queue
	l.queue, l.gone = nil, true
	l.mu.Unlock()
	l.depth.Sub(float64(len(rest)))
	return rest
}

// stale returns the held items whose ack timer was last reset at least
// every ago, and marks them reset now.
func (l *lane) stale(now time.Time, every time.Duration) []*item {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*item
	mark := func(it *item) {
		if it != nil && now.Sub(it.touched) >= every {
			it.touched = now
			out = append(out, it)
		}
	}
	mark(l.current)
	for _, it := range l.queue {
		mark(it)
	}
	return out
}

package ingest

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lane is a FIFO of messages settled by one goroutine, a batch at a time:
// the head and the queued messages of the same key behind it. The queue is
// unbounded, but JetStream's MaxAckPending bounds what ingest holds in all
// lanes together, so pushing never blocks the consumer.
type lane struct {
	depth prometheus.Gauge
	wake  chan struct{} // one slot: "the queue or closed changed"

	mu      sync.Mutex
	queue   []*item
	current []*item // being settled; still counted in depth
	closed  bool    // nothing more is expected; exit when empty
	gone    bool    // the goroutine exited; push refuses
}

// batchLimit bounds what next takes at once.
type batchLimit struct {
	items int // at least 1
	bytes int // payload bytes; the head is taken whatever its size
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

// next makes a batch current and returns it, waiting for one if the queue
// is empty: the head and, up to lim, the queued items of the same key
// (item.key) behind it, in queue order. Items of other keys keep their
// places; taking a key's later items early reorders nothing that must stay
// ordered, since order holds per key. It returns false once the lane is
// closed and empty, or when abort fires.
func (l *lane) next(abort <-chan struct{}, lim batchLimit) ([]*item, bool) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			batch := l.take(lim)
			l.current = batch
			l.mu.Unlock()
			return batch, true
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

// take removes the batch from the queue; l.mu must be held. The first
// item of the head's key that does not fit ends the batch for that key, so
// a later, smaller one cannot overtake it.
func (l *lane) take(lim batchLimit) []*item {
	head := l.queue[0]
	batch := []*item{head}
	size := len(head.payload())
	full := head.key == ""
	rest := l.queue[:0]
	for i, it := range l.queue[1:] {
		if !full && it.key == head.key {
			if len(batch) < lim.items && size+len(it.payload()) <= lim.bytes {
				batch = append(batch, it)
				size += len(it.payload())
				continue
			}
			full = true
		}
		if full && len(batch) == lim.items {
			// Nothing more to take: the rest of the queue stays as it is.
			rest = append(rest, l.queue[1+i:]...)
			break
		}
		rest = append(rest, it)
	}
	clear(l.queue[len(rest):])
	l.queue = rest
	return batch
}

// done marks the current batch settled.
func (l *lane) done() {
	l.mu.Lock()
	n := len(l.current)
	l.current = nil
	l.mu.Unlock()
	l.depth.Sub(float64(n))
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
		if now.Sub(it.touched) >= every {
			it.touched = now
			out = append(out, it)
		}
	}
	for _, it := range l.current {
		mark(it)
	}
	for _, it := range l.queue {
		mark(it)
	}
	return out
}

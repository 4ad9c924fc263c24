// Package lograte keeps a repeating warning (a failing condition, a
// retrying publish) to one log line per interval while counting the rest,
// so a burst of failures stays visible without flooding the log.
package lograte

import (
	"sync/atomic"
	"time"
)

// Limiter lets one call through per Interval. The zero value lets every
// call through.
type Limiter struct {
	Interval   time.Duration
	next       atomic.Int64 // unix nanos before which calls are suppressed
	suppressed atomic.Int64
}

// Allow reports whether to log now and, if so, how many calls were
// suppressed since the last allowed one.
func (l *Limiter) Allow() (suppressed int64, ok bool) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(l.Interval)) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

package ingest

import (
	"sync"
	"time"
)

// recentKeys remembers which workflow IDs were handed off lately, to guess
// whether a key's run may still be open. A guess only picks the cheaper
// call: a key thought cold is started with its task as input, and if its
// run is open after all Temporal refuses the start and the task is
// signalled instead.
//
// Two generations of at most max keys each: a key stays known for at least
// window after its last hand-off and at most twice that. A full generation
// retires early, so memory stays bounded under any rate of new keys (the
// cost is a refused start for a key forgotten too soon).
type recentKeys struct {
	window time.Duration
	max    int

	mu        sync.Mutex
	cur, prev map[string]struct{}
	rotated   time.Time
}

// recentKeysMax bounds a generation of recentKeys: a few MiB of IDs.
const recentKeysMax = 1 << 16

func newRecentKeys(window time.Duration, maxKeys int) *recentKeys {
	return &recentKeys{window: window, max: maxKeys, cur: map[string]struct{}{}, prev: map[string]struct{}{}}
}

// touch records a hand-off of id at now and reports whether id had one in
// the window before it.
func (r *recentKeys) touch(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch since := now.Sub(r.rotated); {
	case since >= 2*r.window:
		clear(r.prev)
		clear(r.cur)
		r.rotated = now
	case since >= r.window || len(r.cur) >= r.max:
		r.prev, r.cur, r.rotated = r.cur, make(map[string]struct{}, len(r.cur)), now
	}
	_, inCur := r.cur[id]
	_, inPrev := r.prev[id]
	r.cur[id] = struct{}{}
	return inCur || inPrev
}

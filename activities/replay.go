package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/triggerflow/triggerflow/trigger"
)

// replayed remembers the results of recent local delivery activities, so
// one that Temporal makes the worker run again returns what the first run
// returned instead of posting again.
//
// A local activity's result reaches history only with the workflow task
// that ran it. A cold key's run completes in that same task; when a task
// for the key arrives meanwhile, the server refuses the completion, the
// result is lost with it, and the next workflow task replays the run and
// runs the activity again: the receiver would get the webhook twice.
// Replays of a run stay on its worker (the workflow is cached there, its
// task queue sticky), and a replayed local activity has the run id and
// activity id of the first, so this worker-local memory catches them. A
// replay on another worker still posts again, with the same webhook-id.
//
// The replayed activity may be handed more tasks than the first run (the
// signals that arrived meanwhile join the batch). The remembered result
// answers it only when the batch starts with the first run's tasks, in
// order, so the result covers a prefix of it, which is all the workflow
// reads; another batch (a task signal drained ahead of a redelivery) is
// delivered for real, a repeated POST rather than a task marked delivered
// that was never sent.
type replayed struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	byKey map[string]replayEntry
	order []string // keys, oldest first
}

type replayEntry struct {
	res  BatchResult
	keys []string // the batch's dedupe keys, in order
	at   time.Time
}

func newReplayed(ttl time.Duration, max int, now func() time.Time) *replayed {
	return &replayed{ttl: ttl, max: max, now: now, byKey: make(map[string]replayEntry)}
}

// replayKey identifies a local activity across replays of its run; "" for
// a regular activity, whose result Temporal records itself.
func replayKey(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	info := activity.GetInfo(ctx)
	if !info.IsLocalActivity {
		return ""
	}
	return info.WorkflowExecution.RunID + "/" + info.ActivityID
}

func (r *replayed) get(key string, tasks []trigger.DeliveryTask) (BatchResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byKey[key]
	if !ok || r.now().Sub(e.at) > r.ttl || len(tasks) < len(e.keys) {
		return BatchResult{}, false
	}
	for i, k := range e.keys {
		if tasks[i].DedupeKey() != k {
			return BatchResult{}, false
		}
	}
	return e.res, true
}

func (r *replayed) put(key string, tasks []trigger.DeliveryTask, res BatchResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if _, ok := r.byKey[key]; !ok {
		r.order = append(r.order, key)
	}
	keys := make([]string, len(tasks))
	for i := range tasks {
		keys[i] = tasks[i].DedupeKey()
	}
	r.byKey[key] = replayEntry{res: res, keys: keys, at: now}
	// Oldest first: drop what expired, and what is over the bound.
	n := 0
	for n < len(r.order) && (len(r.order)-n > r.max || now.Sub(r.byKey[r.order[n]].at) > r.ttl) {
		delete(r.byKey, r.order[n])
		n++
	}
	if n > 0 {
		r.order = append(r.order[:0:0], r.order[n:]...)
	}
}

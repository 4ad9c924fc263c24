package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/trigger"
)

// Options are the worker's settings for the delivery workflow. The zero
// value of each field takes its default.
//
// They are not recorded in history (a marker would cost every run an
// event), which splits them in two:
//
//   - QuietPeriod, Retry, HTTPTimeout and TimeoutMargin, the ones the
//     worker's file sets, may change across a worker restart while runs
//     are open: the workflow uses them only for timer durations and
//     activity options, which replay does not compare, and the one time
//     Retry decides something (whether a batch's failed task, whose
//     trigger set no maxAttempts, gets more attempts) it records the
//     retry policy that task then runs under.
//   - The others change which commands a run issues. They are part of the
//     workflow's code: change them the way you deploy a workflow change
//     (a new worker deployment version, or once no run is open), or open
//     runs fail to replay.
type Options struct {
	// QuietPeriod is how long a key's workflow waits without a new task
	// before it exits; ingest's next hand-off starts a fresh one.
	// Defaults to 1m.
	QuietPeriod time.Duration `json:"quietPeriod"`
	// Retry fills the fields a task's retry policy leaves zero. Defaults
	// to trigger.DefaultRetryPolicy (5 attempts, 1s, ×2, capped at 5m).
	Retry trigger.RetryPolicy `json:"retry"`
	// HTTPTimeout bounds one attempt of a task that sets no timeout. It
	// must match the activities' Config.Timeout. Defaults to 30s.
	HTTPTimeout time.Duration `json:"httpTimeout"`
	// TimeoutMargin is added to an attempt's HTTP timeout to form the
	// activity's StartToClose timeout, covering secret and token lookups,
	// so the HTTP timeout (a failure with the receiver's details) fires
	// before Temporal's (a bare timeout). Defaults to 5s.
	TimeoutMargin time.Duration `json:"timeoutMargin"`
	// MaxBatch is the most queued tasks one DeliverBatch activity POSTs.
	// 1 turns batching off. Defaults to 50.
	MaxBatch int `json:"maxBatch"`
	// ActivityFirstAttempt makes the first attempt of queued tasks a
	// regular activity, as every retry is. By default it is a local
	// activity run inside the workflow task: a success then costs one
	// marker event (holding each task's status and latency, shown in the
	// UI under the batch's summary) instead of an activity's three events
	// and the workflow task that follows it, and the delivery leaves one
	// round trip to the server sooner. A cold key's run is then 12 events
	// instead of 17, a busy key's delivery about 5 instead of 8. The price
	// of the default: the first attempt is a marker rather than an
	// activity in the UI, the workflow task stays open while it runs, and
	// a worker lost during it repeats the whole batch (same webhook-id).
	// Failed tasks are retried as regular Deliver activities either way,
	// so every retry shows as an attempt. Defaults to false.
	ActivityFirstAttempt bool `json:"activityFirstAttempt"`
	// MaxBatchBytes bounds a batch's estimated payload, well under
	// Temporal's 2 MiB payload limit. Defaults to 512 KiB.
	MaxBatchBytes int `json:"maxBatchBytes"`
	// DedupeSize is how many recent event ids a key remembers to drop
	// redelivered tasks. Defaults to 1000.
	DedupeSize int `json:"dedupeSize"`
	// MaxHistoryLength makes a run continue as new once its history has
	// this many events, in case the server never suggests it. Defaults to
	// 8000.
	MaxHistoryLength int `json:"maxHistoryLength"`
	// MaxCarryBytes bounds the estimated size of the pending tasks carried
	// into a new run; past it the run keeps delivering before it continues
	// as new, so the new run's input stays under Temporal's payload limit.
	// Defaults to 1 MiB.
	MaxCarryBytes int `json:"maxCarryBytes"`
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options { return Options{}.WithDefaults() }

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.QuietPeriod <= 0 {
		o.QuietPeriod = time.Minute
	}
	o.Retry = o.Retry.Merge(trigger.DefaultRetryPolicy())
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = 30 * time.Second
	}
	if o.TimeoutMargin <= 0 {
		o.TimeoutMargin = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 50
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 512 << 10
	}
	if o.DedupeSize <= 0 {
		o.DedupeSize = 1000
	}
	if o.MaxHistoryLength <= 0 {
		o.MaxHistoryLength = 8000
	}
	if o.MaxCarryBytes <= 0 {
		o.MaxCarryBytes = 1 << 20
	}
	return o
}

// EffectiveRetryPolicy is a task's retry policy with its zero fields taken
// from def, then made valid for Temporal: at least one attempt, a
// multiplier of at least 1, a maximum backoff no smaller than the initial.
func EffectiveRetryPolicy(p, def trigger.RetryPolicy) trigger.RetryPolicy {
	p = p.Merge(def)
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = trigger.Duration(time.Second)
	}
	if p.Multiplier < 1 {
		p.Multiplier = 1
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	return p
}

// TemporalRetryPolicy maps an effective retry policy onto Temporal's:
// maxAttempts → MaximumAttempts, initialBackoff → InitialInterval,
// maxBackoff → MaximumInterval, multiplier → BackoffCoefficient, and the
// failure types that never succeed on retry (HTTP_4XX, HTTP_3XX, …) as
// NonRetryableErrorTypes.
//
// prior is the number of attempts already made elsewhere (by a batch): the
// policy then covers the remaining attempts, and its first interval is the
// one that would have followed attempt prior+1, so the overall schedule is
// unchanged.
func TemporalRetryPolicy(p trigger.RetryPolicy, prior int) *temporal.RetryPolicy {
	initial := p.InitialBackoff.D()
	for range prior {
		initial = min(time.Duration(float64(initial)*p.Multiplier), p.MaxBackoff.D())
	}
	return &temporal.RetryPolicy{
		InitialInterval:        initial,
		BackoffCoefficient:     p.Multiplier,
		MaximumInterval:        p.MaxBackoff.D(),
		MaximumAttempts:        int32(max(p.MaxAttempts-prior, 1)),
		NonRetryableErrorTypes: activities.NonRetryableTypes(),
	}
}

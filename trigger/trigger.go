// Package trigger defines what a trigger is, how trigger files are loaded,
// and the rules a trigger must pass before an engine will run it.
//
// A Trigger says: when a document in a collection of a tenant changes in one
// of the given ways and the CEL condition holds, POST it to a URL. Triggers
// are loaded all-or-nothing: one call reports every problem it finds, and a
// set with any problem activates nothing.
package trigger

import (
	"cmp"
	"time"
)

// EventType is the kind of document change.
type EventType string

// The document changes a trigger can react to.
const (
	EventCreate EventType = "create"
	EventUpdate EventType = "update"
	EventDelete EventType = "delete"
)

// Valid reports whether t is one of the known event types.
func (t EventType) Valid() bool {
	switch t {
	case EventCreate, EventUpdate, EventDelete:
		return true
	}
	return false
}

// Trigger is one rule: which changes to match and where to deliver them.
type Trigger struct {
	// ID names the trigger uniquely within its tenant.
	ID string `json:"triggerId" yaml:"triggerId"`
	// Version changes whenever the definition does; it is part of the
	// delivery task so receivers can tell which rule fired.
	Version string `json:"version,omitempty" yaml:"version,omitempty"`
	// Tenant owns the trigger; it must equal the engine's tenant scope.
	Tenant string `json:"tenant" yaml:"tenant"`
	// Collection is a path.Match glob over '/'-separated segments, for
	// example "users" or "chats/*/members".
	Collection string `json:"collection" yaml:"collection"`
	// Events lists the change types to match; empty means all three.
	Events []EventType `json:"events,omitempty" yaml:"events,omitempty"`
	// Condition is a CEL expression over `event`; empty means true.
	Condition string `json:"condition,omitempty" yaml:"condition,omitempty"`
	// URL is the absolute http or https endpoint that receives the POST.
	URL string `json:"url" yaml:"url"`
	// Headers are sent with every delivery; they cannot replace the
	// signature, id, timestamp or authorization headers the worker sets.
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// SecretsRef names the signing secret in the tenant's secret namespace.
	SecretsRef string `json:"secretsRef,omitempty" yaml:"secretsRef,omitempty"`
	// RetryPolicy governs redelivery; unset fields come from the file's
	// default policy, then from the worker's defaults.
	RetryPolicy *RetryPolicy `json:"retryPolicy,omitempty" yaml:"retryPolicy,omitempty"`
	// Timeout bounds one delivery attempt; zero means the worker default.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// OnFailure says what happens to the key after a delivery fails for
	// good: "skip" (default) records it and moves on, "block" holds later
	// events of the same document until an operator intervenes.
	OnFailure FailureMode `json:"onFailure,omitempty" yaml:"onFailure,omitempty"`

	// Source is the file the trigger was loaded from, for error messages.
	Source string `json:"-" yaml:"-"`
}

// FailureMode is what a key does after a delivery fails for good.
type FailureMode string

// Failure modes.
const (
	FailureSkip  FailureMode = "skip"
	FailureBlock FailureMode = "block"
)

// RetryPolicy describes how a failed delivery is retried. Zero fields are
// unset and filled from defaults by Merge.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt; 1 means no retry.
	MaxAttempts int `json:"maxAttempts,omitempty" yaml:"maxAttempts,omitempty"`
	// InitialBackoff is the wait before the second attempt.
	InitialBackoff Duration `json:"initialBackoff,omitempty" yaml:"initialBackoff,omitempty"`
	// MaxBackoff caps the wait between attempts.
	MaxBackoff Duration `json:"maxBackoff,omitempty" yaml:"maxBackoff,omitempty"`
	// Multiplier grows the wait after each attempt; 1 means constant.
	Multiplier float64 `json:"multiplier,omitempty" yaml:"multiplier,omitempty"`
}

// DefaultRetryPolicy is used where neither the trigger, its file nor the
// worker configuration sets a value: 5 attempts, 1 s, doubling, capped at 5 min.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:    5,
		InitialBackoff: Duration(time.Second),
		MaxBackoff:     Duration(5 * time.Minute),
		Multiplier:     2,
	}
}

// Merge returns p with every unset field taken from def.
func (p *RetryPolicy) Merge(def RetryPolicy) RetryPolicy {
	if p == nil {
		return def
	}
	out := *p
	out.MaxAttempts = cmp.Or(out.MaxAttempts, def.MaxAttempts)
	out.InitialBackoff = cmp.Or(out.InitialBackoff, def.InitialBackoff)
	out.MaxBackoff = cmp.Or(out.MaxBackoff, def.MaxBackoff)
	out.Multiplier = cmp.Or(out.Multiplier, def.Multiplier)
	return out
}

// Matches reports whether the trigger listens for events of type t.
func (tr *Trigger) Matches(t EventType) bool {
	if len(tr.Events) == 0 {
		return true
	}
	for _, e := range tr.Events {
		if e == t {
			return true
		}
	}
	return false
}

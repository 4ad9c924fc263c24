package workflows

import "github.com/triggerflow/triggerflow/trigger"

// Operator interface of a delivery workflow: what `temporal workflow
// signal` and `temporal workflow query` can send to a key.
const (
	// UnblockSignal releases a key blocked by a task with onFailure
	// "block". Its payload is an Unblock:
	//
	//	temporal workflow signal --workflow-id <id> --name unblock --input '{"skip":false}'
	//
	// retries the failed task with its full retry policy (and blocks again
	// if it fails again);
	//
	//	temporal workflow signal --workflow-id <id> --name unblock --input '{"skip":true}'
	//
	// dead-letters the failed task and resumes with the next one. Tasks
	// that arrived meanwhile were queued and follow in order. The signal is
	// ignored (and logged) when the key is not blocked.
	UnblockSignal = "unblock"
	// RedeliverSignal sends one task again, although the key delivered it
	// already: `triggerflow redeliver` signals it (with SignalWithStart, so
	// it works after the run closed) with a Redelivery holding the task as
	// a task signal of the key's history carried it. The workflow queues it
	// behind the tasks already queued, like a new task, but without
	// consulting the dedupe set; the delivery goes out with the task's
	// event id as webhook-id, signed like any other. A redelivery for
	// another key is dead-lettered as an invalid task.
	RedeliverSignal = "redeliver"
	// StatusQuery returns a Status:
	//
	//	temporal workflow query --workflow-id <id> --type status
	StatusQuery = "status"
)

// Unblock is the payload of UnblockSignal.
type Unblock struct {
	// Skip dead-letters the failed task instead of retrying it.
	Skip bool `json:"skip"`
}

// Redelivery is the payload of RedeliverSignal. Actor and Reason repeat
// the audit record's, so the key's history says who asked and why.
type Redelivery struct {
	Task   trigger.DeliveryTask `json:"task"`
	Actor  string               `json:"actor,omitempty"`
	Reason string               `json:"reason,omitempty"`
	// Request identifies the command that sent it, as its audit record's
	// After does; the workflow does not use it.
	Request string `json:"request,omitempty"`
}

// BlockState describes a blocked key; the blocked task is the first of
// DeliveryParams.Pending.
type BlockState struct {
	EventID string `json:"eventId"`
	// Reason is the dead-letter reason the task would get if skipped.
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Status is what StatusQuery returns.
type Status struct {
	Pending int `json:"pending"`
	// PendingEventIDs lists the first queued event ids, oldest first.
	PendingEventIDs []string    `json:"pendingEventIds,omitempty"`
	Blocked         *BlockState `json:"blocked,omitempty"`
	Failed          int64       `json:"failed"`
	Remembered      int         `json:"remembered"`
}

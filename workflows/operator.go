package workflows

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

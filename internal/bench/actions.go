package bench

import (
	enums "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/proto"
)

// Usage is what a run's history costs: its events, the Temporal Cloud
// actions they stand for, and their size.
type Usage struct {
	Events, Actions int64
	// Bytes is the events' serialized size (see historyBytes).
	Bytes int64
}

// historyBytes is the size of events as the frontend serialized them
// (protobuf wire format, payloads included): what the history costs in
// Temporal's storage and on the wire, before the persistence layer's own
// encoding and compression.
func historyBytes(events []*historypb.HistoryEvent) int64 {
	var n int64
	for _, ev := range events {
		n += int64(proto.Size(ev))
	}
	return n
}

// cloudActions counts the billable Temporal Cloud actions a history shows,
// by the rules of https://docs.temporal.io/cloud/actions: a workflow start
// (a client start, Signal-With-Start's start, continue-as-new), every
// signal, every timer, every activity attempt, the local activities of one
// workflow task together, each side effect and search-attribute upsert.
// Queries and heartbeats leave no event and are not counted; a version
// marker is not an action.
func cloudActions(events []*historypb.HistoryEvent) int64 {
	var n int64
	localTask := int64(-1) // the workflow task whose local activities were counted
	for _, ev := range events {
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			enums.EVENT_TYPE_TIMER_STARTED,
			enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			n++
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			// The scheduled event counted the first attempt.
			if a := ev.GetActivityTaskStartedEventAttributes().GetAttempt(); a > 1 {
				n += int64(a - 1)
			}
		case enums.EVENT_TYPE_MARKER_RECORDED:
			a := ev.GetMarkerRecordedEventAttributes()
			switch a.GetMarkerName() {
			case "LocalActivity":
				if task := a.GetWorkflowTaskCompletedEventId(); task != localTask {
					localTask = task
					n++
				}
			case "SideEffect", "MutableSideEffect":
				n++
			}
		}
	}
	return n
}

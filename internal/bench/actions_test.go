package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enums "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/proto"
)

func TestCloudActions(t *testing.T) {
	t.Parallel()
	ev := func(typ enums.EventType) *historypb.HistoryEvent { return &historypb.HistoryEvent{EventType: typ} }
	marker := func(name string, task int64) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventType: enums.EVENT_TYPE_MARKER_RECORDED,
			Attributes: &historypb.HistoryEvent_MarkerRecordedEventAttributes{MarkerRecordedEventAttributes: &historypb.MarkerRecordedEventAttributes{
				MarkerName: name, WorkflowTaskCompletedEventId: task}}}
	}
	started := func(attempt int32) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventType: enums.EVENT_TYPE_ACTIVITY_TASK_STARTED,
			Attributes: &historypb.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &historypb.ActivityTaskStartedEventAttributes{Attempt: attempt}}}
	}
	// A cold Triggerflow run: start, signal, one local delivery.
	require.EqualValues(t, 3, cloudActions([]*historypb.HistoryEvent{
		ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED), ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
		ev(enums.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), ev(enums.EVENT_TYPE_WORKFLOW_TASK_STARTED), ev(enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
		marker("LocalActivity", 5), ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
	}))
	// Two local activities of one workflow task are one action; a version
	// marker is none; a timer and an activity retried twice are four.
	require.EqualValues(t, 5, cloudActions([]*historypb.HistoryEvent{
		marker("LocalActivity", 5), marker("LocalActivity", 5), marker("Version", 5),
		ev(enums.EVENT_TYPE_TIMER_STARTED), ev(enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), started(3),
	}))
}

func TestHistoryBytes(t *testing.T) {
	t.Parallel()
	require.Zero(t, historyBytes(nil))
	signal := func(n int) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventId: 2, EventType: enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionSignaledEventAttributes{WorkflowExecutionSignaledEventAttributes: &historypb.WorkflowExecutionSignaledEventAttributes{
				SignalName: "task", Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Data: make([]byte, n)}}}}}}
	}
	small, big := signal(10), signal(200<<10)
	require.EqualValues(t, proto.Size(small)+proto.Size(big), historyBytes([]*historypb.HistoryEvent{small, big}))
	require.Greater(t, historyBytes([]*historypb.HistoryEvent{big}), int64(200<<10), "payloads count")
}

package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

// recordedLog rebuilds the delivery log of the workflows package's
// recorded histories (real runs against a dev server).
func recordedLog(t *testing.T, only string, files ...string) []eventLog {
	t.Helper()
	b := newLogBuilder("wf", only)
	for _, name := range files {
		f, err := os.Open(filepath.Join("..", "..", "workflows", "testdata", name))
		require.NoError(t, err)
		hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
		require.NoError(t, f.Close())
		require.NoError(t, err)
		b.run(name, hist.GetEvents())
	}
	return b.result()
}

type attemptRow struct {
	kind     string
	attempt  int
	status   int
	failure  string
	response string
	timed    bool
}

func rows(e eventLog) []attemptRow {
	var out []attemptRow
	for _, en := range e.Entries {
		out = append(out, attemptRow{en.Kind, en.Attempt, en.Status, en.FailureType, en.Response, en.Time != nil})
	}
	return out
}

func TestDeliveryLogOfLocalFirstAttempts(t *testing.T) {
	t.Parallel()
	logs := recordedLog(t, "", "local-first-attempt-run1.json")
	byID := map[string]eventLog{}
	var order []string
	for _, e := range logs {
		byID[e.EventID] = e
		order = append(order, e.EventID)
	}
	require.Equal(t, []string{"evt_l0", "evt_l1", "evt_l2", "evt_l3"}, order)

	require.Equal(t, outcomeDelivered, byID["evt_l0"].Outcome)
	require.Equal(t, []attemptRow{{entryReceived, 0, 0, "", "", true}, {entryAttempt, 1, 200, "", "", true}}, rows(byID["evt_l0"]))

	// 500 on the local first attempt, 200 on the Deliver activity's first.
	require.Equal(t, outcomeDelivered, byID["evt_l1"].Outcome)
	require.Equal(t, []attemptRow{
		{entryReceived, 0, 0, "", "", true},
		{entryAttempt, 1, 500, "HTTP_5XX", `{"error":"scripted 500"}`, true},
		{entryAttempt, 2, 200, "", "", true},
	}, rows(byID["evt_l1"]))
	require.Equal(t, "local activity", byID["evt_l1"].Entries[1].Via)
	require.Equal(t, "activity", byID["evt_l1"].Entries[2].Via)
	require.NotNil(t, byID["evt_l1"].Entries[1].LatencyMS)

	require.Equal(t, outcomeDeadLettered, byID["evt_l3"].Outcome)
	l3 := rows(byID["evt_l3"])
	require.Equal(t, attemptRow{entryAttempt, 1, 404, "HTTP_4XX", `{"error":"scripted 404"}`, true}, l3[1])
	require.Equal(t, entryDeadLetter, l3[2].kind)
	require.Equal(t, "http-4xx", l3[2].failure)
	require.Equal(t, "acme", byID["evt_l3"].Tenant)
	require.Equal(t, "local", byID["evt_l3"].DocKey)
}

// With the first attempt a regular activity, 500 500 200 is one Deliver
// activity: Temporal keeps its final attempt and the failure before it,
// not the first attempt.
func TestDeliveryLogOfActivityRetries(t *testing.T) {
	t.Parallel()
	logs := recordedLog(t, "evt_retry", "retries-run1.json")
	require.Len(t, logs, 1)
	e := logs[0]
	require.Equal(t, outcomeDelivered, e.Outcome)
	require.Equal(t, []attemptRow{
		{entryReceived, 0, 0, "", "", true},
		{entryNotRecorded, 1, 0, "", "", false},
		{entryAttempt, 2, 500, "HTTP_5XX", `{"error":"scripted 500"}`, false},
		{entryAttempt, 3, 200, "", "", true},
	}, rows(e))
	require.Equal(t, 1, e.Entries[1].AttemptsNotRecorded)
}

func TestDeliveryLogFollowsContinueAsNew(t *testing.T) {
	t.Parallel()
	// The first two runs of a chain: the last event arrived in the second
	// run, and was delivered in a third one not recorded.
	logs := recordedLog(t, "", "continue-as-new-run1.json", "continue-as-new-run2.json")
	require.Len(t, logs, 12)
	runs := map[string]bool{}
	for _, e := range logs[:11] {
		require.Equal(t, outcomeDelivered, e.Outcome, e.EventID)
		for _, en := range e.Entries {
			runs[en.RunID] = true
		}
	}
	require.Len(t, runs, 2, "deliveries of both runs are in the log")
	require.Equal(t, "evt_c11", logs[11].EventID)
	require.Equal(t, outcomeQueued, logs[11].Outcome)
}

func TestDeliveryLogOfARedelivery(t *testing.T) {
	t.Parallel()
	logs := recordedLog(t, "", "redeliver-run1.json")
	require.Len(t, logs, 1)
	e := logs[0]
	require.Equal(t, outcomeDelivered, e.Outcome)
	require.Equal(t, entryRedeliver, e.Entries[0].Kind)
	require.Equal(t, "ada", e.Entries[0].Actor)
	require.Equal(t, "receiver lost it", e.Entries[0].Reason)
	require.Equal(t, []attemptRow{{entryRedeliver, 0, 0, "", "", true}, {entryAttempt, 1, 200, "", "", true}}, rows(e))
}

// A quiet document's run starts with its task as input: the task is
// received by the start, not by a signal.
func TestDeliveryLogOfARunStartedWithItsTask(t *testing.T) {
	t.Parallel()
	for file, id := range map[string]string{"cold-start-run1.json": "evt_cold", "cold-close-run1.json": "evt_cold_signalled"} {
		logs := recordedLog(t, "", file)
		require.Len(t, logs, 1, file)
		e := logs[0]
		require.Equal(t, id, e.EventID)
		require.Equal(t, outcomeDelivered, e.Outcome)
		require.Equal(t, []attemptRow{{entryReceived, 0, 0, "", "", true}, {entryAttempt, 1, 200, "", "", true}}, rows(e), file)
	}
}

func TestVisibilityQueryOfKeyFlags(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	kf := keyFlags{tenant: "acme", collection: "chats/1/members", doc: "it's", since: "2d", limit: 10}
	q, err := kf.query(now)
	require.NoError(t, err)
	require.Equal(t, `WorkflowType = 'triggerflow.Delivery' AND TenantId = 'acme' AND Collection = 'chats/1/members' AND DocKey = 'it\'s' AND `+
		`(StartTime >= '2026-04-29T12:00:00Z' OR CloseTime >= '2026-04-29T12:00:00Z' OR ExecutionStatus = 'Running')`, q)

	_, err = (&keyFlags{limit: 1}).query(now)
	require.ErrorContains(t, err, "--tenant is required")
	_, err = (&keyFlags{tenant: "a", limit: 1, since: "yesterday"}).query(now)
	require.ErrorContains(t, err, `--since "yesterday"`)
	got, err := parseSince("2026-04-30T00:00:00Z", now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC), got)
	got, err = parseSince("90m", now)
	require.NoError(t, err)
	require.Equal(t, now.Add(-90*time.Minute), got)
}

func TestFirstEventOfSummary(t *testing.T) {
	t.Parallel()
	require.Equal(t, "evt_a", firstEventOfSummary("deliver evt_a"))
	require.Equal(t, "evt_a", firstEventOfSummary("deliver 3 events evt_a…evt_c"))
	require.Empty(t, firstEventOfSummary("dead-letter evt_a"))
}

package trigger_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
)

func sampleTask() *trigger.DeliveryTask {
	return &trigger.DeliveryTask{
		V:          trigger.TaskVersion,
		EventID:    trigger.NewEventID("acme", "t1", "orders", "o.1", "pos-42"),
		Tenant:     "acme",
		TriggerID:  "t1",
		Collection: "orders",
		DocKey:     "o.1",
		Type:       trigger.EventUpdate,
		Before:     json.RawMessage(`{"status":"open"}`),
		After:      json.RawMessage(`{"status":"paid"}`),
		Position:   "pos-42",
		CommitTime: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		URL:        "https://hooks.example.com/o",
		RetryPolicy: trigger.RetryPolicy{
			MaxAttempts: 3, InitialBackoff: trigger.Duration(time.Second),
		},
		Timeout: trigger.Duration(10 * time.Second),
	}
}

func TestTaskRoundTrip(t *testing.T) {
	t.Parallel()
	in := sampleTask()
	b, err := in.Encode()
	require.NoError(t, err)
	require.Contains(t, string(b), `"initialBackoff":"1s"`, "durations are human-readable on the wire")
	out, err := trigger.DecodeTask(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

func TestDecodeTaskRejects(t *testing.T) {
	t.Parallel()
	good, err := sampleTask().Encode()
	require.NoError(t, err)
	for name, body := range map[string]string{
		"garbage":       "not json",
		"truncated":     string(good[:len(good)/2]),
		"array":         "[]",
		"empty object":  "{}",
		"future":        `{"v":2}`,
		"bad type":      `{"v":1,"eventId":"e","tenant":"a","triggerId":"t","collection":"c","docKey":"k","type":"upsert","position":"p","commitTime":"2026-01-01T00:00:00Z","url":"https://x"}`,
		"bad duration":  `{"v":1,"timeout":"soon"}`,
		"no commitTime": `{"v":1,"eventId":"e","tenant":"a","triggerId":"t","collection":"c","docKey":"k","type":"create","position":"p","url":"https://x"}`,
	} {
		_, err := trigger.DecodeTask([]byte(body))
		require.ErrorIs(t, err, trigger.ErrInvalidTask, name)
	}
}

func TestEventIDIsStableAndDistinct(t *testing.T) {
	t.Parallel()
	a := trigger.NewEventID("acme", "t1", "orders", "k", "p1")
	require.Equal(t, a, trigger.NewEventID("acme", "t1", "orders", "k", "p1"))
	require.NotEqual(t, a, trigger.NewEventID("acme", "t1", "orders", "k", "p2"))
	// Length prefixes keep shifted boundaries apart.
	require.NotEqual(t, trigger.NewEventID("ab", "c", "x", "k", "p"), trigger.NewEventID("a", "bc", "x", "k", "p"))
	require.NotContains(t, a, ".", "Standard Webhooks ids must not contain '.'")
}

func TestImageRefs(t *testing.T) {
	t.Parallel()
	canonical := trigger.CanonicalImage(json.RawMessage("{ \"a\" : \"<b>\" }"))
	require.Equal(t, `{"a":"\u003cb\u003e"}`, string(canonical), "compact, HTML-escaped: what encoding/json writes")
	require.Len(t, trigger.ImageDigest(canonical), 43)

	good := sampleTask()
	good.After = nil
	good.AfterRef = &trigger.ImageRef{Object: "acme/evt/after", Size: int64(len(canonical)), Digest: trigger.ImageDigest(canonical)}
	require.NoError(t, good.Validate())

	both := sampleTask()
	both.AfterRef = good.AfterRef
	require.ErrorContains(t, both.Validate(), "afterRef is set along with after")

	for name, ref := range map[string]trigger.ImageRef{
		"no object": {Size: 1, Digest: good.AfterRef.Digest},
		"no size":   {Object: "o", Digest: good.AfterRef.Digest},
		"no digest": {Object: "o", Size: 1},
	} {
		bad := sampleTask()
		bad.Before, bad.BeforeRef = nil, &ref
		require.ErrorIs(t, bad.Validate(), trigger.ErrInvalidTask, name)
	}
}

func FuzzDecodeTask(f *testing.F) {
	good, _ := sampleTask().Encode()
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"before":"x"}`))
	ref := sampleTask()
	ref.After = nil
	ref.AfterRef = &trigger.ImageRef{Object: "acme/evt/after", Size: 7, Digest: trigger.ImageDigest([]byte(`{"n":1}`))}
	withRef, _ := ref.Encode()
	f.Add(withRef)
	f.Add([]byte(`{"v":1,"afterRef":{"object":"","size":-1,"sha256":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		task, err := trigger.DecodeTask(b)
		if err != nil {
			require.ErrorIs(t, err, trigger.ErrInvalidTask)
			return
		}
		// Whatever decodes must re-encode and decode to the same task.
		again, err := task.Encode()
		require.NoError(t, err)
		back, err := trigger.DecodeTask(again)
		require.NoError(t, err)
		require.Equal(t, task.EventID, back.EventID)
		require.Equal(t, task.DocKey, back.DocKey)
		require.Equal(t, task.BeforeRef, back.BeforeRef)
		require.Equal(t, task.AfterRef, back.AfterRef)
		// A decoded task never carries an image both inline and by
		// reference.
		require.False(t, len(task.Before) > 0 && task.BeforeRef != nil)
		require.False(t, len(task.After) > 0 && task.AfterRef != nil)
	})
}

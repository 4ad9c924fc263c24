package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
)

// A remembered result answers only a batch that starts with the tasks it
// was made for.
func TestReplayedAnswersOnlyTheSameBatchPrefix(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	r := newReplayed(time.Minute, 10, func() time.Time { return now })
	task := func(id string) trigger.DeliveryTask { return trigger.DeliveryTask{EventID: id} }
	r.put("run/1", []trigger.DeliveryTask{task("r1")}, BatchResult{Delivered: 1})

	res, ok := r.get("run/1", []trigger.DeliveryTask{task("r1"), task("t2")})
	require.True(t, ok, "the same head with a task that arrived meanwhile")
	require.Equal(t, 1, res.Delivered)

	_, ok = r.get("run/1", []trigger.DeliveryTask{task("t2"), task("r1")})
	require.False(t, ok, "another head is delivered for real")

	now = now.Add(2 * time.Minute)
	_, ok = r.get("run/1", []trigger.DeliveryTask{task("r1")})
	require.False(t, ok, "expired")
}

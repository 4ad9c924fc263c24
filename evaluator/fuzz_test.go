package evaluator_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

// FuzzMatchArbitraryDocuments runs realistic conditions over arbitrary
// before/after bytes (not JSON, not objects, deeply nested, huge numbers,
// invalid UTF-8): matching must answer, never panic, and a trigger without
// a condition must match whatever the document holds.
func FuzzMatchArbitraryDocuments(f *testing.F) {
	f.Add([]byte(`{"status":"paid","total":12.5,"tags":["vip"]}`), []byte(`{"status":"new"}`))
	f.Add([]byte(`[1,2,3]`), []byte(`"x"`))
	f.Add([]byte(`{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}`), []byte(nil))
	f.Add([]byte("{\"s\":\"\xff\xfe\"}"), []byte(`{`))
	f.Add([]byte(`{"total":1e400,"items":[`+"1,2,3,4,5,6,7,8,9,10"+`]}`), []byte(`null`))
	e := newEnv(f)
	ix := e.compile(f,
		&trigger.Trigger{ID: "always", Tenant: "acme", Collection: "orders", URL: "https://x.example"},
		&trigger.Trigger{ID: "paid", Tenant: "acme", Collection: "orders", URL: "https://x.example",
			Condition: `event.document.status == "paid" && (!has(event.before.status) || event.before.status != "paid")`},
		&trigger.Trigger{ID: "big", Tenant: "acme", Collection: "orders", URL: "https://x.example",
			Condition: `event.document.total > 100 || "vip" in event.document.tags`},
		&trigger.Trigger{ID: "loop", Tenant: "acme", Collection: "orders", URL: "https://x.example",
			Condition: `event.document.items.all(i, event.document.items.all(j, i + j > 0))`},
	)
	f.Fuzz(func(t *testing.T, after, before []byte) {
		ms, err := ix.Match(context.Background(), &watcher.Change{
			Tenant: "acme", Collection: "orders", DocKey: "k", Type: trigger.EventUpdate,
			After: after, Before: before, Position: "1", CommitTime: commit,
		})
		require.NoError(t, err)
		require.NotEmpty(t, ms)
		require.Equal(t, "always", ms[0].Trigger.ID)
	})
}

package evaluator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/triggerflow/triggerflow/condition"
	"github.com/triggerflow/triggerflow/evaluator"
	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/watcher"
)

func ExampleIndex_Match() {
	triggers := []*trigger.Trigger{
		{ID: "new-member", Tenant: "acme", Collection: "chats/*/members", Events: []trigger.EventType{trigger.EventCreate},
			Condition: `event.document.role != "bot"`, URL: "https://hooks.example/members"},
		{ID: "all-orders", Tenant: "acme", Collection: "orders", URL: "https://hooks.example/orders"},
	}
	compiler, _ := condition.NewCompiler(0)
	validator, _ := trigger.NewValidator("acme", trigger.DefaultLimits(), compiler)
	progs, err := validator.Validate(triggers)
	if err != nil {
		panic(err)
	}

	ev, _ := evaluator.New(evaluator.Config{})
	ix, err := ev.Compile(triggers, progs)
	if err != nil {
		panic(err)
	}
	change := &watcher.Change{
		Tenant: "acme", Collection: "chats/42/members", DocKey: "u-7", Type: trigger.EventCreate,
		After: json.RawMessage(`{"role":"admin"}`), Position: "0000000001", CommitTime: time.Unix(0, 0),
	}
	matches, err := ix.Match(context.Background(), change)
	if err != nil {
		panic(err)
	}
	for _, m := range matches {
		task := m.Task(change)
		fmt.Println(m.Trigger.ID, task.URL, task.EventID == trigger.NewEventID("acme", "new-member", "chats/42/members", "u-7", "0000000001"))
	}
	// Output: new-member https://hooks.example/members true
}

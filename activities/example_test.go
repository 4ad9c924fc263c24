package activities_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/triggerflow/triggerflow/activities"
	"github.com/triggerflow/triggerflow/trigger"
)

// The body a receiver gets for an update, in the Standard Webhooks envelope.
func ExampleBody() {
	task := trigger.DeliveryTask{
		EventID: "evt_3f2a", Tenant: "acme", TriggerID: "orders-hook", TriggerVersion: "3",
		Collection: "orders", DocKey: "o-17", Type: trigger.EventUpdate,
		Before: json.RawMessage(`{"status":"open"}`), After: json.RawMessage(`{"status":"paid"}`),
		CommitTime: time.Date(2026, 4, 1, 9, 30, 0, 0, time.UTC),
	}
	body, _ := activities.Body(&task)
	fmt.Println(string(body))
	// Output:
	// {"type":"document.updated","timestamp":"2026-04-01T09:30:00Z","data":{"tenant":"acme","triggerId":"orders-hook","triggerVersion":"3","collection":"orders","docKey":"o-17","eventId":"evt_3f2a","before":{"status":"open"},"after":{"status":"paid"},"subjectHashed":false,"commitTime":"2026-04-01T09:30:00Z"}}
}

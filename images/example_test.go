package images_test

import (
	"encoding/json"
	"fmt"

	"github.com/triggerflow/triggerflow/images"
	"github.com/triggerflow/triggerflow/trigger"
)

// The publisher names a task's image after the task, and stores the
// image's canonical form; the reference carries the size and digest the
// worker checks the fetched object against.
func ExampleRef() {
	task := &trigger.DeliveryTask{Tenant: "acme", EventID: "evt_1"}
	name := images.ObjectName(task, "after")
	ref, canonical := images.Ref(name, json.RawMessage(`{ "status": "paid", "note": "<b>" }`))
	fmt.Println(ref.Object)
	fmt.Println(string(canonical))
	fmt.Println(ref.Size, ref.Digest == trigger.ImageDigest(canonical), len(ref.Digest))
	// Output:
	// acme/evt_1/after
	// {"status":"paid","note":"\u003cb\u003e"}
	// 40 true 43
}

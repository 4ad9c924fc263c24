package engine_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/triggerflow/triggerflow/engine"
	"github.com/triggerflow/triggerflow/trigger"
)

// Load the example trigger files and activate the demo tenant's. A failed
// load returns every problem at once and leaves the previous set active, so
// a service should exit at startup (or mark itself unready on reload) when
// it fails.
func ExampleNewFactory() {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))
	f, err := engine.NewFactory(engine.Deps{Logger: quiet}, engine.WithConfig(engine.Config{Tenant: "demo"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()

	// The files hold two tenants (demo and acme); this engine serves demo.
	res, err := trigger.LoadByTenant("../examples/triggers", nil)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	ts := res.Triggers["demo"]
	if err := f.Engine().LoadTriggers(ts); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("loaded", len(ts), "triggers")

	err = f.Engine().LoadTriggers([]*trigger.Trigger{{ID: "x", Tenant: "other", Collection: "orders", URL: "https://hooks.example.com"}})
	fmt.Println(errors.Is(err, trigger.ErrInvalidTriggers))
	fmt.Println(err)
	// Output:
	// loaded 4 triggers
	// true
	// 1 problem(s) in trigger definitions:
	//   trigger "x": tenant: "other" does not match the engine's tenant scope "demo"
}

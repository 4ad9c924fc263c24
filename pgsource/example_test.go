package pgsource_test

import (
	"context"
	"fmt"
	"log"

	"github.com/triggerflow/triggerflow/pgsource"
	"github.com/triggerflow/triggerflow/watcher"
)

// A source for tenant acme on a shared table whose tenant_id column tells
// the tenants apart.
func ExampleNew() {
	ctx := context.Background()
	src, err := pgsource.New(ctx, pgsource.Config{
		DSN:          "postgres://triggerflow@db.internal/app",
		Tenant:       "acme",
		TenantColumn: "tenant_id",
		Tables:       []string{"orders", "sales.invoices"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	const key = "sys/checkpoints/trigger_evaluator/acme"
	after, _, err := src.Checkpoints().Load(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	err = src.Watch(ctx, after, func(c watcher.Change) error {
		fmt.Println(c.Type, c.Collection, c.DocKey, c.Position)
		return nil
	})
	log.Fatal(err)
}

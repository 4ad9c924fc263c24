package pgsource

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/tenantlabel"
	"github.com/triggerflow/triggerflow/watcher"
)

// BenchmarkWatchInserts measures decoding throughput into a no-op emit:
// each iteration inserts a batch of rows (not timed) and streams it.
func BenchmarkWatchInserts(b *testing.B) {
	const batch = 10_000
	pg := testenv.Postgres(b)
	const table = `CREATE TABLE bench (id bigint PRIMARY KEY, name text, qty int, price numeric, at timestamptz)`
	for _, bc := range []struct {
		name   string
		table  string
		insert string
		config func(*Config)
	}{
		{"OneTransaction", table, `INSERT INTO bench SELECT g, 'name ' || g, g %% 100, g / 7.0, now() FROM generate_series(%d, %d) g`, nil},
		{"TenRowTransactions", table, `DO $$ BEGIN FOR i IN 0..%[2]d-%[1]d BY 10 LOOP
			INSERT INTO bench SELECT g, 'name ' || g, g %% 100, g / 7.0, now() FROM generate_series(%[1]d + i, %[1]d + i + 9) g;
			COMMIT; END LOOP; END $$`, nil},
		// One multi-tenant slot, rows spread over a thousand tenants.
		{"ThousandTenants",
			`CREATE TABLE bench (id bigint PRIMARY KEY, tenant text NOT NULL, name text, qty int, price numeric, at timestamptz)`,
			`DO $$ BEGIN FOR i IN 0..%[2]d-%[1]d BY 10 LOOP
			INSERT INTO bench SELECT g, 'tenant-' || (g %% 1000), 'name ' || g, g %% 100, g / 7.0, now() FROM generate_series(%[1]d + i, %[1]d + i + 9) g;
			COMMIT; END LOOP; END $$`,
			func(c *Config) {
				c.Tenant = ""
				c.TenantColumn = "tenant"
				c.TenantLabels = tenantlabel.New(0)
			}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := newDB(b, pg)
			d.exec(b, bc.table)
			src := d.open(b, bc.config)
			pos := ""
			next := 1
			for b.Loop() {
				b.StopTimer()
				d.exec(b, fmt.Sprintf(bc.insert, next, next+batch-1))
				next += batch
				b.StartTimer()

				ctx, cancel := context.WithCancel(context.Background())
				n := 0
				err := src.Watch(ctx, pos, func(c watcher.Change) error {
					n++
					if n == batch {
						pos = c.Position
						cancel()
					}
					return nil
				})
				cancel()
				require.ErrorIs(b, err, context.Canceled)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

package docstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/docstore"
)

// fillSpread commits n documents round robin over tenants t0…t<tenants-1>
// in one statement, so their changes interleave as live traffic's would;
// filling again updates them. (WHERE true tells SQLite's parser that ON
// CONFLICT belongs to the INSERT, not to a join.)
func fillSpread(t testing.TB, db *sql.DB, tenants, n, size int) {
	t.Helper()
	_, err := db.Exec(`
WITH RECURSIVE i(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM i WHERE v + 1 < ?)
INSERT INTO documents (tenant, collection, id, data)
SELECT 't' || (v % ?), 'bulk', 'doc-' || v, json_object('i', v, 'pad', ?) FROM i WHERE true
ON CONFLICT DO UPDATE SET data = excluded.data`, n, tenants, strings.Repeat("x", size))
	require.NoError(t, err)
}

func tenantNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("t%d", i)
	}
	return names
}

// BenchmarkWatchAllTenants reads a backlog spread over 1,000 tenants
// through one all-tenant source and reports events/s.
func BenchmarkWatchAllTenants(b *testing.B) {
	const tenants, backlog = 1000, 20_000
	st := openStore(b, docstore.Config{})
	fillSpread(b, rawDB(b, st.Path()), tenants, backlog, 256)
	benchWatch(b, source(b, st, docstore.AllTenants), backlog)
}

// BenchmarkConfirmTenants confirms 1,000 tenants at once, as a watcher
// serving them does every CheckpointInterval: with ten changes due per
// tenant (10,000 changes/s at the default 1s interval), and with nothing
// due (a repeated confirmation).
func BenchmarkConfirmTenants(b *testing.B) {
	const tenants, perTenant = 1000, 10
	names := tenantNames(tenants)
	for _, due := range []bool{true, false} {
		for _, retention := range []time.Duration{0, time.Nanosecond} {
			b.Run(fmt.Sprintf("due=%v/retention=%v", due, retention > 0), func(b *testing.B) {
				ctx := context.Background()
				st := openStore(b, docstore.Config{Retention: retention})
				db := rawDB(b, st.Path())
				src := source(b, st, docstore.AllTenants)
				fillSpread(b, db, tenants, tenants*perTenant, 64)
				head, err := src.Head(ctx)
				require.NoError(b, err)
				require.NoError(b, src.ConfirmTenants(ctx, head, names))
				b.ResetTimer()
				for range b.N {
					if due {
						b.StopTimer()
						fillSpread(b, db, tenants, tenants*perTenant, 64)
						head, err = src.Head(ctx)
						require.NoError(b, err)
						b.StartTimer()
					}
					if err := src.ConfirmTenants(ctx, head, names); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				var left int
				require.NoError(b, db.QueryRow(`SELECT count(*) FROM changes`).Scan(&left))
				require.Zero(b, left, "every confirmed change is pruned")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/confirm")
			})
		}
	}
}

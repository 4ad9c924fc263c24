package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/triggerflow/triggerflow/config"
	"github.com/triggerflow/triggerflow/internal/daemon/daemontest"
	"github.com/triggerflow/triggerflow/internal/service"
	"github.com/triggerflow/triggerflow/internal/testenv"
	"github.com/triggerflow/triggerflow/secrets"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// TestTenantsShareOnePostgresStream is the multi-tenant promise as a user
// meets it: one watcher over a database whose orders table holds rows of
// three tenants, each tenant with its own trigger file, secret and
// receiver. Each receiver gets exactly its tenant's changes, signed with
// its tenant's secret, and the database holds one replication slot.
func TestTenantsShareOnePostgresStream(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.CreateDatabase(t, "tenants")
	ctx := context.Background()
	db := pg.PoolFor(t, dsn)
	_, err := db.Exec(ctx, `CREATE TABLE orders (id text PRIMARY KEY, tenant text NOT NULL, status text);
ALTER TABLE orders REPLICA IDENTITY FULL`)
	require.NoError(t, err)

	ns := testenv.NATS(t)
	ts := testenv.Temporal(t)
	dir := t.TempDir()
	trigDir, secretsDir := filepath.Join(dir, "triggers"), filepath.Join(dir, "secrets")
	require.NoError(t, os.MkdirAll(trigDir, 0o755))
	tenants := []string{"acme", "globex", "initech"}
	recs := map[string]*testenv.WebhookRecorder{}
	keys := map[string]signature.Secret{}
	for _, tenant := range tenants {
		recs[tenant] = testenv.Recorder(t)
		require.NoError(t, os.WriteFile(filepath.Join(trigDir, tenant+".yaml"), fmt.Appendf(nil, `
tenant: %s
triggers:
  - triggerId: order-changed
    collection: orders
    url: %s/hooks/orders
    secretsRef: default
`, tenant, recs[tenant].URL()), 0o600))
		sec, err := secrets.Ensure(secretsDir, tenant, "default")
		require.NoError(t, err)
		keys[tenant] = sec[0]
	}

	logCfg := config.Log{Format: config.LogText, Level: config.LevelWarn, TemporalLevel: config.LevelError}
	natsCfg := config.NATS{URL: ns.URL()}
	temporalCfg := config.Temporal{HostPort: ts.HostPort()}
	wf := config.WatcherFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg,
		Watcher: config.Watcher{Tenants: []string{trigger.AllTenants}, Source: config.SourcePostgres, Triggers: trigDir,
			Postgres:     config.PostgresSource{DSN: dsn, TenantColumn: "tenant"},
			StartFromNow: true, CheckpointInterval: trigger.Duration(10 * time.Millisecond)}}.WithDefaults()
	inf := config.IngestFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg}.WithDefaults()
	wkf := config.WorkerFile{Log: logCfg, HTTP: config.HTTP{Addr: "127.0.0.1:0"}, NATS: natsCfg, Temporal: temporalCfg,
		Worker: config.Worker{AllowLoopback: new(true), QuietPeriod: trigger.Duration(time.Second),
			Secrets: config.Secrets{Dir: secretsDir}, Tokens: config.Tokens{KeyFile: filepath.Join(dir, "keys", "token.pem")}}}.WithDefaults()
	daemontest.Start(t, service.NewLogger(logCfg, io.Discard), &wf, &inf, &wkf, nil)

	// Interleaved: every transaction touches all three tenants.
	const perTenant = 4
	for i := range perTenant {
		for _, tenant := range tenants {
			_, err := db.Exec(ctx, `INSERT INTO orders (id, tenant, status) VALUES ($1, $2, 'new')
ON CONFLICT (id) DO UPDATE SET status = 'paid'`, fmt.Sprintf("%s-%d", tenant, i%2), tenant)
			require.NoError(t, err)
		}
	}

	for _, tenant := range tenants {
		reqs := recs[tenant].WaitFor(t, perTenant, 90*time.Second)
		for _, r := range reqs {
			for other, key := range keys {
				err := signature.Verify(r.Headers, r.Body, []signature.Secret{key}, 0, time.Now())
				if other == tenant {
					require.NoError(t, err, "%s's delivery verifies with its own secret", tenant)
				} else {
					require.Error(t, err, "%s's delivery must not verify with %s's secret", tenant, other)
				}
			}
			var body struct {
				Data struct {
					Tenant string
					After  struct{ Tenant string }
				}
			}
			require.NoError(t, json.Unmarshal(r.Body, &body))
			require.Equal(t, tenant, body.Data.Tenant)
			require.Equal(t, tenant, body.Data.After.Tenant, "the row is the tenant's own")
		}
	}
	for _, tenant := range tenants {
		require.Len(t, recs[tenant].Requests(), perTenant, "%s got exactly its own changes", tenant)
	}

	var slots int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = 'tenants'`).Scan(&slots))
	require.Equal(t, 1, slots, "one slot serves every tenant")
}

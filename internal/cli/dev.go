package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/triggerflow/triggerflow/internal/daemon"
	"github.com/triggerflow/triggerflow/internal/toolpath"
)

func newDevCmd() *cobra.Command {
	var cfg daemon.DevConfig
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system in one process on embedded defaults (make dev)",
		Long: `Starts NATS with JetStream, the Temporal dev server with its UI, the embedded
SQLite document store, the watcher, ingest and worker, and a demo webhook
receiver that verifies signatures and tokens and prints every delivery.

The watcher serves every tenant named by the files under --triggers (--tenant
narrows it to one); each tenant gets a signing secret of its own under
<data>/secrets/<tenant>/, and the receiver checks each delivery with its
tenant's secret. Saving a trigger file reloads the triggers without a
restart; a tenant whose files have a problem keeps its previous triggers.

Everything is kept under --data; Ctrl-C stops cleanly and the next run
resumes from the saved checkpoint. Point at external servers with --nats,
--temporal or --postgres.`,
		Example: `  triggerflow dev
  triggerflow dev --tenant demo --triggers examples/triggers/orders.yaml
  triggerflow dev --postgres 'postgres://app@127.0.0.1/app?sslmode=disable' --postgres-tenant-column tenant`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Out = cmd.OutOrStdout()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Dev(ctx, cfg, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", daemon.DevDataDir, "directory for everything the stack keeps between runs")
	f.StringVar(&cfg.Tenant, "tenant", "", "serve only this tenant (the trigger files must hold only its triggers); empty = every tenant in the trigger files")
	f.StringVar(&cfg.Triggers, "triggers", daemon.DevTriggers, "trigger file or directory, reloaded when a file in it changes")
	f.StringVar(&cfg.NATSURL, "nats", "", "use this NATS server instead of an embedded one")
	f.StringVar(&cfg.TemporalHostPort, "temporal", "", "use this Temporal frontend (host:port) instead of the dev server; register Triggerflow's search attributes there first")
	f.StringVar(&cfg.PostgresDSN, "postgres", "", "watch this PostgreSQL database (wal_level=logical) instead of the SQLite store")
	f.StringVar(&cfg.PostgresTenantColumn, "postgres-tenant-column", "", "with --postgres, the column naming a row's tenant; needed to serve several tenants")
	f.StringVar(&cfg.TemporalCLI, "temporal-cli", toolpath.TemporalCLI(), "Temporal CLI binary used to run the dev server")
	f.StringVar(&cfg.ReceiverAddr, "receiver", daemon.DevReceiverAddr, "demo receiver address (the example triggers deliver there)")
	return cmd
}
